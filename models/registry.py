"""The model variants by name, and the deformable-op backends: the names configs, checkpoints, logs,
tables and file names use.

Adding a variant is one entry in VARIANTS (plus its tests); nothing else checks for a particular variant.
This module imports no torch, so a config is parsed and refused before torch loads.
"""
import difflib
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Variant:
    name: str
    deformable: bool  # the convolutions are deformable (learned offsets); False: plain nn.Conv2d
    modulated: bool  # deformable with a learned modulation mask (DCNv2)
    script: str  # the model whose train_/test_ scripts run this variant
    description: str
    legacy_id: Optional[int] = None  # the integer `model_type` older configs and checkpoints use


VARIANTS = {v.name: v for v in (
    Variant("Conv2d", deformable=False, modulated=False, script="Conv2d", legacy_id=1,
            description="nn.Conv2d(3x3, padding 1)"),
    Variant("DeformConv2d", deformable=True, modulated=False, script="DeformConv2d", legacy_id=2,
            description="deformable 3x3 conv fed by a learned offset predictor (3x3 conv -> 18 channels), DCNv1"),
    Variant("DeformConv2dv2", deformable=True, modulated=True, script="DeformConv2dv2", legacy_id=3,
            description="as DeformConv2d plus a learned modulation mask predictor (3x3 conv -> 9 channels, sigmoid), DCNv2"),
)}

# The deformable-convolution ops (models/deform_ops): all compute the same function on the same parameters.
BACKENDS = ("torchvision", "gather", "cpp")

_BY_LEGACY_ID = {v.legacy_id: v.name for v in VARIANTS.values() if v.legacy_id is not None}


def variant_name(value):
    """The variant's name for a name or a legacy integer model_type; ValueError (with the closest name) otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value in _BY_LEGACY_ID:
        return _BY_LEGACY_ID[value]
    if isinstance(value, str) and value in VARIANTS:
        return value
    close = difflib.get_close_matches(str(value), VARIANTS, n=1, cutoff=0.5)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    legacy = ", ".join(f"{i} ({n})" for i, n in _BY_LEGACY_ID.items())
    raise ValueError(f"unknown model variant {value!r}; {hint}variants: {', '.join(VARIANTS)} (older configs: {legacy})")


def variant(value):
    return VARIANTS[variant_name(value)]
