"""CIFAR-10 held in memory as uint8 tensors, the stratified train/validation split, and a batch iterator.

No per-image PIL transforms: images are normalised a whole batch at a time, on the training device.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from utils.plumbing.errors import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean/std of the CIFAR-10 training images (0..1 scale).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


@dataclass
class ImageSet:
    images: torch.Tensor  # [N, 3, 32, 32] uint8
    labels: torch.Tensor  # [N] int64

    def __len__(self):
        return len(self.labels)

    def subset(self, indices):
        indices = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(self.images[indices], self.labels[indices])


def load_cifar10(data_dir, train, download):
    """The official training (50,000) or test (10,000) images, via torchvision (which checks the md5 sums)."""
    import torchvision

    try:
        ds = torchvision.datasets.CIFAR10(root=data_dir, train=train, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        raise UserError(
            f"CIFAR-10 not found or corrupted under {Path(data_dir).resolve()}/cifar-10-batches-py ({e}); "
            f'set "data_dir" to the folder that holds cifar-10-batches-py (here: "../shared/data") or set "download": true'
        )
    except OSError as e:  # no network while downloading
        raise UserError(
            f"could not download CIFAR-10 into {Path(data_dir).resolve()} ({e.__class__.__name__}: {e}); "
            f'copy cifar-10-batches-py there by hand or set "data_dir" to a folder that has it'
        )
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.long))


def stratified_subset(data, size, seed):
    """`size` images with the class proportions of `data` (for quick runs)."""
    if size is None or size >= len(data):
        return data
    keep, _ = train_test_split(np.arange(len(data)), train_size=size, random_state=seed, stratify=data.labels.numpy())
    return data.subset(np.sort(keep))


def split_train_val(data, test_size, seed):
    """Stratified split: the same seed always gives the same split."""
    labels = data.labels.numpy()
    try:
        train_idx, val_idx = train_test_split(np.arange(len(data)), test_size=test_size, random_state=seed, stratify=labels)
    except ValueError as e:
        raise UserError(f"cannot split {len(data)} images with test_size={test_size} ({e}); use more images or another test_size")
    return data.subset(train_idx), data.subset(val_idx)


def normalize(images_uint8, device):
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (images_uint8.to(device, non_blocking=True).float() / 255.0 - mean) / std


class Batches:
    """Iterates (images, labels) batches of an ImageSet on `device`; shuffled with its own seeded generator,
    so the order of epoch e depends only on (seed, e), which also makes resumed runs reproduce exactly."""

    def __init__(self, data, batch_size, device, shuffle=False, seed=0):
        self.data, self.batch_size, self.device, self.shuffle, self.seed = data, batch_size, device, shuffle, seed
        self.epoch = 0

    def __len__(self):
        return (len(self.data) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.data)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield normalize(self.data.images[idx], self.device), self.data.labels[idx].to(self.device, non_blocking=True)
