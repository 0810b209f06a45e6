import numpy as np
import torch
from conftest import synthetic_set
from torch import nn

from utils.engine.data import Batches, split_train_val, stratified_subset
from utils.engine.evaluate import evaluate


def test_split_is_deterministic_and_stratified():
    data = synthetic_set(500, seed=0)
    a_train, a_val = split_train_val(data, 0.2, seed=7)
    b_train, b_val = split_train_val(data, 0.2, seed=7)
    c_train, _ = split_train_val(data, 0.2, seed=8)
    assert torch.equal(a_val.labels, b_val.labels) and torch.equal(a_train.images, b_train.images)
    assert not torch.equal(a_train.images, c_train.images)
    assert len(a_val) == 100 and len(a_train) == 400
    assert np.bincount(a_val.labels.numpy()).tolist() == [10] * 10  # exactly the class proportions


def test_subset_is_stratified():
    sub = stratified_subset(synthetic_set(1000, seed=0), 300, seed=0)
    assert len(sub) == 300 and np.bincount(sub.labels.numpy()).tolist() == [30] * 10
    assert len(stratified_subset(synthetic_set(100, seed=0), None, seed=0)) == 100


class PredictsZero(nn.Module):
    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        logits[:, 0] = 5.0
        return logits


def test_accuracy_is_exact_with_a_partial_last_batch():
    data = synthetic_set(23, seed=0)  # labels 0..9,0..9,0,1,2: three zeros
    result = evaluate(PredictsZero(), Batches(data, 10, "cpu"))  # batches of 10, 10, 3
    assert result.images == 23
    assert result.accuracy == 3 / 23
    assert result.confusion.sum() == 23 and result.confusion[:, 0].sum() == 23


def test_batches_cover_every_image_once_and_shuffle_per_epoch():
    data = synthetic_set(50, seed=0)
    batches = Batches(data, 16, "cpu", shuffle=True, seed=3)
    first = torch.cat([y for _, y in batches])
    batches.epoch = 1
    second = torch.cat([y for _, y in batches])
    assert len(first) == 50 and sorted(first.tolist()) == sorted(data.labels.tolist())
    assert not torch.equal(first, second)
    x, _ = next(iter(batches))
    assert x.dtype == torch.float32 and x.shape == (16, 3, 32, 32) and abs(float(x.mean())) < 2
