"""Evaluation of a model on a set of images (loss, exact accuracy, confusion matrix), and the precise BatchNorm
statistics a test evaluates with."""
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import update_bn

from utils.engine.data import Batches


@dataclass
class Evaluation:
    loss: float  # mean cross-entropy per image
    accuracy: float  # correct / number of images (exact, whatever the last batch size)
    confusion: np.ndarray  # [true, predicted] counts
    images: int
    seconds: float

    def per_class_accuracy(self):
        return (np.diag(self.confusion) / np.maximum(self.confusion.sum(1), 1)).tolist()


@torch.no_grad()
def evaluate(model, batches, num_classes=10, train_mode=False):
    """`train_mode`: BatchNorm uses each batch's statistics and moves its running statistics towards them, as
    the reference repository's evaluation phase does (it never calls model.eval())."""
    model.train(train_mode)
    loss_sum, n = 0.0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    start = time.perf_counter()
    for images, labels in batches:
        logits = model(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        pred = logits.argmax(1)
        confusion += torch.bincount((labels * num_classes + pred).cpu(), minlength=num_classes**2).view(num_classes, num_classes)
        n += labels.numel()
    correct = int(confusion.diag().sum())
    return Evaluation(loss_sum / max(n, 1), correct / max(n, 1), confusion.numpy(), n, time.perf_counter() - start)


@dataclass
class PreciseBN:
    images: int  # training images the statistics were averaged over
    batches: int
    batch_size: int
    seconds: float


@torch.no_grad()
def precise_bn(model, data, batch_size, device, augmentation="none", seed=0):
    """Re-estimate every BatchNorm layer's running mean and variance for the model's current (fixed) weights: a
    plain average of the batch statistics over `data` in its own order, in batches of `batch_size` (a last,
    smaller batch is left out: every batch counts the same); with `augmentation` "crop-flip", over one draw of
    crops and flips seeded by `seed` (Batches' epoch 0, which training never uses): the kind of images it normalised.
    EMA running statistics describe the weights of the last few hundred steps, which still move at every step
    without a learning-rate decay (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021). torch.optim.swa_utils.update_bn does the work: it resets the
    statistics and sets momentum None (a cumulative average) for the pass; no_grad here: it builds no graphs."""
    whole = len(data) // batch_size * batch_size
    if whole == 0:
        raise ValueError(f"precise_bn: {len(data)} images make no whole batch of {batch_size}")
    start = time.perf_counter()
    update_bn(Batches(data.subset(torch.arange(whole)), batch_size, device, seed=seed, augmentation=augmentation), model)
    model.eval()
    return PreciseBN(whole, whole // batch_size, batch_size, time.perf_counter() - start)
