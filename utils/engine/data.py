"""CIFAR-10 held in memory as uint8 tensors, a run's train/validation split, and a batch iterator.

No per-image PIL transforms: a whole batch is scaled to [0, 1] at a time, on the training device (the network
standardizes it itself, models/network.py).
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from utils.plumbing.errors import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class ImageSet:
    images: torch.Tensor  # [N, 3, 32, 32] uint8
    labels: torch.Tensor  # [N] int64

    def __len__(self):
        return len(self.labels)

    def subset(self, indices):
        indices = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(self.images[indices], self.labels[indices])


# One setting points every command at an existing copy of CIFAR-10 (a machine without internet): checked before
# any config's data_dir, never downloaded into. Tests and CI read the real data through it too.
DATA_ENV = "CIFAR10_DIR"


def data_location(data_dir, download):
    """(folder, download, how it was chosen): $CIFAR10_DIR when set, else the config's data_dir."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env), False, f"the environment variable {DATA_ENV}"
    return Path(data_dir), download, '"data_dir"'


def load_cifar10(data_dir, train, download):
    """The official training (50,000) or test (10,000) images, via torchvision (which checks the md5 sums and,
    when it downloads, shows a progress bar)."""
    import torchvision

    root, download, chosen_by = data_location(data_dir, download)
    fix = (f"point {DATA_ENV} at the folder that holds cifar-10-batches-py, or unset it to use data_dir" if chosen_by != '"data_dir"' else
           f'set {DATA_ENV}=<the folder that holds cifar-10-batches-py> (an existing copy), or "download": true to download it into {root}')
    if not download and not (root / "cifar-10-batches-py").is_dir():  # before torchvision: its message names neither setting
        raise UserError(f"CIFAR-10 not found: no cifar-10-batches-py under {root.resolve()} (chosen by {chosen_by}); {fix}")
    try:
        ds = torchvision.datasets.CIFAR10(root=str(root), train=train, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        raise UserError(f"CIFAR-10 not found or corrupted under {root.resolve()}/cifar-10-batches-py (chosen by {chosen_by}; {e}); {fix}")
    except OSError as e:  # no network while downloading
        raise UserError(
            f"could not download CIFAR-10 into {root.resolve()} ({e.__class__.__name__}: {e}); without internet, set "
            f"{DATA_ENV}=<a folder that holds cifar-10-batches-py>"
        )
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.long))


def stratified_subset(data, size, seed):
    """`size` images with the class proportions of `data` (for quick runs)."""
    if size is None or size >= len(data):
        return data
    keep, _ = train_test_split(np.arange(len(data)), train_size=size, random_state=seed, stratify=data.labels.numpy())
    return data.subset(np.sort(keep))


def split_train_val(data, test_size, seed, stratified=True):
    """The same seed always gives the same split; stratified (every class in proportion) or, as the reference
    repository, a plain random draw (seeded here, unlike there)."""
    try:
        train_idx, val_idx = train_test_split(np.arange(len(data)), test_size=test_size, random_state=seed,
                                              stratify=data.labels.numpy() if stratified else None)
    except ValueError as e:
        raise UserError(f"cannot split {len(data)} images with test_size={test_size} ({e}); use more images or another test_size")
    return data.subset(train_idx), data.subset(val_idx)


@dataclass(frozen=True)
class Split:
    """Which images a run trains and validates on: everything its config says about the data, and the one place
    that draws them (training, and the precise BatchNorm statistics of its test, use the same images)."""
    test_size: float
    seed: int
    train_subset: Optional[int] = None
    stratified: bool = True

    @classmethod
    def of(cls, cfg):
        """A TrainConfig's split."""
        return cls(cfg.test_size, cfg.random_seed, cfg.train_subset, cfg.stratified_split)

    @classmethod
    def recorded(cls, config):
        """The split of a checkpoint's stored config (a dict); None when it does not say (weights from elsewhere)."""
        if not isinstance(config, dict) or "random_seed" not in config or "test_size" not in config:
            return None
        return cls(config["test_size"], config["random_seed"], config.get("train_subset"), config.get("stratified_split", True))

    def draw(self, full):
        """(train, validation) ImageSets of the 50,000 official training images `full`."""
        return split_train_val(stratified_subset(full, self.train_subset, self.seed), self.test_size, self.seed, self.stratified)


def to_unit(images_uint8, device):
    """uint8 images -> float32 in [0, 1] on `device`, what the network takes (torchvision's ToTensor scale)."""
    return images_uint8.to(device, non_blocking=True).float() / 255.0


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
            yield to_unit(self.data.images[idx], self.device), self.data.labels[idx].to(self.device, non_blocking=True)
