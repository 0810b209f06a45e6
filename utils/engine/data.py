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
import torch.nn.functional as F
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


PAD = 4  # "crop-flip": a 32x32 crop of the image padded by 4 zero pixels a side (He et al. 2016, section 4.2)


def crop_flip(images, shifts, flips, pad=PAD):
    """Random crop with `pad`-pixel zero padding, then horizontal flip, for a whole uint8 batch in one gather:
    output pixel (y, x) of image i is its input pixel (y + dy_i, x + dx_i), zero outside the image, with x mirrored
    (x -> W-1-x) where flips_i. `shifts` [N, 2] holds (dy, dx) in -pad..pad, `flips` [N] bools."""
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(h) + pad + shifts[:, :1]  # [N, H]: the padded image's rows each output row reads
    cols = torch.arange(w) + pad + shifts[:, 1:]  # [N, W]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


class Batches:
    """Iterates (images, labels) batches of an ImageSet on `device`. Shuffled (and, with augmentation "crop-flip",
    cropped and flipped) with a generator of its own seeded from (seed, epoch), so epoch e depends on nothing else:
    resumed runs reproduce exactly, and no global random state is touched. The order is drawn first, so it is the
    same with and without augmentation."""

    def __init__(self, data, batch_size, device, shuffle=False, seed=0, augmentation="none"):
        self.data, self.batch_size, self.device, self.shuffle, self.seed = data, batch_size, device, shuffle, seed
        self.augmentation = augmentation
        self.epoch = 0

    def __len__(self):
        return (len(self.data) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.data)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if self.augmentation == "crop-flip":  # one draw per image position of this epoch
            shifts = torch.randint(-PAD, PAD + 1, (n, 2), generator=generator)
            flips = torch.rand(n, generator=generator) < 0.5
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            images = self.data.images[idx]
            if self.augmentation == "crop-flip":
                images = crop_flip(images, shifts[start : start + self.batch_size], flips[start : start + self.batch_size])
            yield to_unit(images, self.device), self.data.labels[idx].to(self.device, non_blocking=True)
