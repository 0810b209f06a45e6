"""Geometric robustness: accuracy on deterministic rotated, scaled and shifted copies of the test images.

Training uses no augmentation, so these measure what each layer generalises to. The copies are made by
torchvision's transform functions (bilinear, black fill outside the image), from the uint8 images, with
no randomness at all: on one machine every model and run sees byte-identical images. Not always across
machines (the rotations round differently on some CPUs), so each copy's SHA-256 is stored next to its
accuracy, and a comparison reports only the copies every run measured on the same bytes (report.py).
"""
import hashlib

import torch
from torchvision.transforms.v2 import functional as TF

from utils.engine import data as data_mod
from utils.engine.evaluate import evaluate

BILINEAR = TF.InterpolationMode.BILINEAR

# name -> (family, strength, transform of a uint8 batch [N, 3, H, W]). Strength 0 (or scale 1) is the clean image.
TRANSFORMS = {
    **{f"rotate{a:+d}": ("rotation (degrees)", a, lambda x, a=a: TF.rotate(x, float(a), interpolation=BILINEAR)) for a in (-30, -15, 15, 30)},
    **{f"scale{s:.1f}": ("scale", s, lambda x, s=s: TF.affine(x, angle=0.0, translate=[0, 0], scale=s, shear=[0.0, 0.0], interpolation=BILINEAR))
       for s in (0.8, 1.2)},
    **{f"shift_x{d:+d}": ("horizontal shift (px)", d, lambda x, d=d: TF.affine(x, angle=0.0, translate=[d, 0], scale=1.0, shear=[0.0, 0.0]))
       for d in (-4, 4)},
    **{f"shift_y{d:+d}": ("vertical shift (px)", d, lambda x, d=d: TF.affine(x, angle=0.0, translate=[0, d], scale=1.0, shear=[0.0, 0.0]))
       for d in (-4, 4)},
}
CLEAN = {"rotation (degrees)": 0, "scale": 1.0, "horizontal shift (px)": 0, "vertical shift (px)": 0}
COPIES = ("clean", *TRANSFORMS)  # every copy a robustness report names, in its order


def images_for_robustness(test_set, images=None):
    """All test images, or a stratified subset of `images` of them (the same subset every time: seed 0)."""
    return data_mod.stratified_subset(test_set, images, seed=0)


def transformed(images_uint8):
    """name -> transformed copy (uint8) of the images, in TRANSFORMS order."""
    return {name: fn(images_uint8) for name, (_, _, fn) in TRANSFORMS.items()}


def checksum(images_uint8):
    return hashlib.sha256(images_uint8.contiguous().numpy().tobytes()).hexdigest()[:16]


@torch.no_grad()
def robustness(model, test_set, batch_size, device, images=None):
    """Accuracy on the clean and on every transformed copy of the (subset of the) test images."""
    chosen = images_for_robustness(test_set, images)
    sets = {"clean": chosen.images, **transformed(chosen.images)}
    accuracy = {name: evaluate(model, data_mod.Batches(data_mod.ImageSet(x, chosen.labels), batch_size, device)).accuracy
                for name, x in sets.items()}
    return {"subset": images, "images": len(chosen), "accuracy": accuracy, "checksums": {name: checksum(x) for name, x in sets.items()}}
