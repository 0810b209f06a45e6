"""The model variants by name: the names configs, checkpoints, logs, tables and file names use.

Adding a variant is one entry in VARIANTS (plus its tests); nothing else checks for a particular variant.
This module imports no torch, so a config is parsed and refused before torch loads.
"""
import difflib
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Variant:
    name: str
    deformable: bool = False  # its convolutions are DeformableConv layers (in the blocks `layers` names)
    offsets: bool = False  # learns sampling offsets (False with deformable: offsets fixed at zero, mask only)
    modulated: bool = False  # learns a modulation mask (DCNv2)
    dilation: int = 1  # of the plain convolutions (padding = dilation: same output size)
    layers: str = "all"  # which units it changes unless the config's deformable_layers (or the network) says: "all" or "last"
    match_params: Optional[str] = None  # widen this plain network to that variant's parameter count (within 3 %)
    legacy_id: Optional[int] = None  # the integer `model_type` older configs and checkpoints use

    @property
    def takes_layers(self):
        """`deformable_layers` concerns it: it changes the selected layers (deformable or dilated), or matches the
        parameter count of a variant that deforms them."""
        return self.deformable or self.dilation > 1 or self.match_params is not None

    @property
    def learns_predictors(self):
        """It has offset or mask predictors, so the keys about them (offset_lr_mult, predictor_init) shape its result."""
        return self.offsets or self.modulated

    @property
    def family(self):
        """Which of the three models of the question this variant is (itself, or the one it is a control of)."""
        return "DeformConv2dv2" if self.modulated else "DeformConv2d" if self.deformable else "Conv2d"


VARIANTS = {v.name: v for v in (
    Variant("Conv2d", legacy_id=1),  # nn.Conv2d(3x3, padding 1)
    Variant("DeformConv2d", deformable=True, offsets=True, legacy_id=2),  # DCNv1: a learned offset predictor (3x3 conv -> 18 channels)
    Variant("DeformConv2dv2", deformable=True, offsets=True, modulated=True, legacy_id=3),  # DCNv2: plus a mask predictor (-> 9, sigmoid)
    # Controls: what a deformable layer adds besides learned sampling positions.
    Variant("Conv2d-params", match_params="DeformConv2dv2"),  # every block widened to DeformConv2dv2's parameter count
    Variant("Conv2d-dilated", dilation=2),  # a larger receptive field, fixed
    Variant("DeformConv2dv2-mask-only", deformable=True, modulated=True),  # offsets fixed at zero: the mask alone
    # Deformable only in the last conv block (the DCN papers put them in later stages).
    Variant("DeformConv2d-last", deformable=True, offsets=True, layers="last"),
    Variant("DeformConv2dv2-last", deformable=True, offsets=True, modulated=True, layers="last"),
)}
BASE = ("Conv2d", "DeformConv2d", "DeformConv2dv2")  # the three models of the question; the others are controls

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


@dataclass(frozen=True)
class Network:
    """A network every variant can be built in: `conv_ch` lists the widths of its units, and `deformable_layers`
    names units by number from 1 (the stem, where a network has one, is never changed)."""
    name: str
    widths: tuple  # conv_ch when a config names the network and no widths
    unit: str  # what one entry of conv_ch is: a conv "block" or a residual "stage"
    units: Optional[int] = None  # the number of units it must have (None: any)
    layers: Optional[str] = None  # which units a variant changes when deformable_layers is null; None: the variant's own


NETWORKS = {n.name: n for n in (
    # The small CNN of the question: conv 3x3 -> BatchNorm per entry of conv_ch (models/convnet.py).
    Network("convnet", (64, 128), "block"),
    # He et al. 2016's CIFAR ResNet-20: a stem, then 3 stages of 3 basic blocks (models/resnet.py); the DCN papers put
    # deformable layers in the later stages, so a variant changes the last stage unless deformable_layers says.
    Network("resnet20", (16, 32, 64), "stage", units=3, layers="last"),
)}
DEFAULT_NETWORK = "convnet"


def network_problem(network, conv_ch):
    """The rule between network and conv_ch; the problem, or None."""
    spec = NETWORKS[network]
    if spec.units is not None and len(conv_ch) != spec.units:
        return (f'"conv_ch" {conv_ch} has {len(conv_ch)} entries, but {network} has {spec.units} {spec.unit}s: give {spec.units} widths, '
                f"e.g. {list(spec.widths)}, or leave conv_ch out")
    return None


def changed_units(name, units, deformable_layers=None, network=DEFAULT_NETWORK):
    """1-based indices of the units (conv blocks or stages, of `units`) that variant `name` changes: none for the plain
    and the parameter-matched variants, else `deformable_layers` ("all", "last" or a list of indices), or the network's
    choice, or the variant's own."""
    spec = variant(name)
    if not (spec.deformable or spec.dilation > 1):
        return []
    which = deformable_layers if deformable_layers is not None else NETWORKS[network].layers or spec.layers
    return list(range(1, units + 1)) if which == "all" else [units] if which == "last" else sorted(which)
