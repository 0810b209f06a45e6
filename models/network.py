"""What every network here shares: its model arguments (the one owner of what a checkpoint's `model_args` hold), the
3x3 convolution a variant builds (make_conv), and a base class (input standardization, the deformable layers).

The networks themselves are models/convnet.py and models/resnet.py; models/factory.py builds either from its
arguments, and is the only place that does.
"""
import torch
from torch import nn

from models.deformable_conv import DeformableConv
from models.registry import DEFAULT_NETWORK, changed_units
from models.registry import variant as get_variant

NUM_CLASSES = 10
# Per-channel mean/std of the CIFAR-10 training images (0..1 scale): what a "standardized" network subtracts and divides by.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
INPUTS = ("standardized", "unit")  # the network standardizes its [0, 1] images, or takes them as they are (the reference)

# The constructor arguments that shape a network's parameters or its function: what a checkpoint stores as
# `model_args` and a config or a model is asked for. Defaults: what checkpoints written before an argument existed hold.
MODEL_ARG_DEFAULTS = {"deformable_layers": None, "bias": True, "inputs": "standardized", "network": DEFAULT_NETWORK}
MODEL_ARGS = ("variant", "conv_ch", *MODEL_ARG_DEFAULTS)
# Arguments added after models were published: a stored `model_args` leaves them out while they hold their default, so
# that every file written before them is written again byte for byte (and reads back the same).
LATER_MODEL_ARGS = {"network": DEFAULT_NETWORK}


def model_args(source):
    """The model arguments of a config, a model or a checkpoint's dict, complete (missing ones: their defaults)."""
    get = source.get if isinstance(source, dict) else lambda key, default=None: getattr(source, key, default)
    args = {key: get(key, MODEL_ARG_DEFAULTS.get(key)) for key in MODEL_ARGS}
    return {**args, "conv_ch": list(args["conv_ch"])}


def stored_model_args(args):
    """`model_args` as files keep them: complete, less the later arguments that hold their defaults."""
    return {key: value for key, value in model_args(args).items() if key not in LATER_MODEL_ARGS or value != LATER_MODEL_ARGS[key]}


def make_conv(variant, in_ch, out_ch, backend, changed=True, bias=True, zero_predictors=True, stride=1, conv_bias=None):
    """The 3x3 convolution of one layer as the variant builds it: deformable or dilated where `changed` (the units
    the config selects), plain elsewhere. `bias`: of every convolution and predictor; `conv_bias` (default: `bias`)
    sets the convolution's own apart."""
    spec = get_variant(variant)
    conv_bias = bias if conv_bias is None else conv_bias
    if changed and spec.deformable:
        return DeformableConv(in_ch, out_ch, 3, stride=stride, padding=1, modulated=spec.modulated, learn_offsets=spec.offsets, backend=backend,
                              bias=conv_bias, predictor_bias=bias, zero_predictors=zero_predictors)
    dilation = spec.dilation if changed else 1
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=conv_bias)


class CifarModel(nn.Module):
    """The base of every network: [0, 1] images in (standardized inside unless `inputs="unit"`), 10 logits out.

    Standardizing inside the network keeps one owner for what its input means: every caller (training, testing,
    robustness, ONNX export) feeds [0, 1] images. Each subclass names its `network` (models/registry.py NETWORKS) and
    builds its layers at `self.widths` (conv_ch, or a parameter-matched control's widths), changing the units
    `self.changed` lists."""

    network = DEFAULT_NETWORK

    def __init__(self, variant, conv_ch, deformable_layers=None, bias=True, inputs="standardized", widths=None):
        super().__init__()
        if inputs not in INPUTS:
            raise ValueError(f"{type(self).__name__}: inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
        self.variant, self.conv_ch, self.deformable_layers = get_variant(variant).name, list(conv_ch), deformable_layers
        self.bias, self.inputs = bias, inputs
        self.widths = list(widths or conv_ch)
        self.changed = changed_units(variant, len(self.widths), deformable_layers, self.network)
        # Not in the state_dict (persistent=False): constants of the function, and checkpoints keep their keys.
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @property
    def model_args(self):
        return stored_model_args(self)

    def deformable_convs(self):
        """The deformable layers, in the order the forward pass runs them."""
        return [m for m in self.modules() if isinstance(m, DeformableConv)]

    def predictor_parameters(self):
        """The offset/mask predictors' parameters (the `offset_lr_mult` group)."""
        return [p for layer in self.deformable_convs() for p in layer.predictor_parameters()]

    def standardize(self, x):
        """The [0, 1] images as the first layer sees them."""
        return (x - self.mean) / self.std if self.inputs == "standardized" else x


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
