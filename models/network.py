"""The small CNN shared by every variant; only the convolution layer differs (models/registry.py)."""
import torch
from torch import nn

from models.deformable_conv import DeformableConv
from models.registry import deformable_blocks
from models.registry import variant as get_variant

NUM_CLASSES = 10
# Per-channel mean/std of the CIFAR-10 training images (0..1 scale): what a "standardized" network subtracts and divides by.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
INPUTS = ("standardized", "unit")  # the network standardizes its [0, 1] images, or takes them as they are (the reference)

# The constructor arguments that shape a network's parameters or its function: what a checkpoint stores as
# `model_args` and a config or a model is asked for. Defaults: what checkpoints written before an argument existed hold.
MODEL_ARG_DEFAULTS = {"deformable_layers": None, "bias": True, "inputs": "standardized"}
MODEL_ARGS = ("variant", "conv_ch", *MODEL_ARG_DEFAULTS)


def model_args(source):
    """The model arguments of a config, a model or a checkpoint's dict, complete (missing ones: their defaults)."""
    get = source.get if isinstance(source, dict) else lambda key, default=None: getattr(source, key, default)
    args = {key: get(key, MODEL_ARG_DEFAULTS.get(key)) for key in MODEL_ARGS}
    return {**args, "conv_ch": list(args["conv_ch"])}


def make_conv(variant, in_ch, out_ch, backend, deformable=None, bias=True, zero_predictors=True):
    """The 3x3 convolution of one block, as the variant builds it (`deformable`: override whether this
    block is deformable; default: the variant's)."""
    spec = get_variant(variant)
    if spec.deformable if deformable is None else deformable:
        return DeformableConv(in_ch, out_ch, 3, padding=1, modulated=spec.modulated, learn_offsets=spec.offsets, backend=backend, bias=bias,
                              zero_predictors=zero_predictors)
    return nn.Conv2d(in_ch, out_ch, 3, padding=spec.dilation, dilation=spec.dilation, bias=bias)


def matched_widths(variant, conv_ch):
    """The block widths a parameter-matched variant uses: every width of conv_ch scaled by one common factor
    1 + i/200 (i = 0..1000), the one whose parameter count comes closest to the target variant's with the
    same conv_ch (found by bisection: the count grows with the factor)."""
    spec = get_variant(variant)
    if spec.match_params is None:
        return list(conv_ch)
    widths = lambda i: [max(1, round(c * (1 + i / 200))) for c in conv_ch]  # noqa: E731
    with torch.device("meta"):  # counting only: no memory, no random draws
        count = lambda i: count_parameters(ConvNet(spec.name, widths(i), widths_as_given=True))  # noqa: E731
        target = count_parameters(ConvNet(spec.match_params, conv_ch))
        low, high = 0, 1000  # the first i whose count reaches the target lies in [low, high]
        while low < high:
            mid = (low + high) // 2
            low, high = (mid + 1, high) if count(mid) < target else (low, mid)
        best = min({max(low - 1, 0), low}, key=lambda i: abs(count(i) - target))
    return widths(best)


class ConvNet(nn.Module):
    """Images in [0, 1] -> (standardized) -> [conv 3x3 -> BatchNorm] per entry of conv_ch, ReLU between blocks
    -> global average pool -> Linear.

    Rebuilt from a checkpoint by `ConvNet(**state["model_args"], backend=...)`: `model_args` holds exactly
    the constructor arguments that shape the parameters or the function (MODEL_ARGS). `deformable_layers`
    ("all", "last" or 1-based block indices) overrides which blocks a deformable variant makes deformable;
    `bias=False` builds every convolution and predictor without a bias and `inputs="unit"` feeds the [0, 1]
    images unstandardized, both as the reference repository does; `zero_predictors=False` initialises the
    offset/mask predictors as PyTorch initialises any convolution (the reference) instead of at zero (the
    DCN papers). Standardizing inside the network keeps one owner for what its input means: every caller
    (training, testing, robustness, ONNX export) feeds [0, 1] images.
    """

    def __init__(self, variant, conv_ch, deformable_layers=None, bias=True, inputs="standardized", num_classes=NUM_CLASSES, backend="gather",
                 widths_as_given=False, zero_predictors=True):
        super().__init__()
        if inputs not in INPUTS:
            raise ValueError(f"ConvNet: inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
        self.variant, self.conv_ch, self.deformable_layers = get_variant(variant).name, list(conv_ch), deformable_layers
        self.bias, self.inputs = bias, inputs
        # Not in the state_dict (persistent=False): constants of the function, and checkpoints keep their keys.
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        widths = list(conv_ch) if widths_as_given else matched_widths(variant, conv_ch)
        deformable = deformable_blocks(variant, len(widths), deformable_layers)
        layers, in_ch = [], 3
        for i, ch in enumerate(widths, start=1):
            if i > 1:
                layers.append(nn.ReLU(inplace=True))
            layers += [make_conv(variant, in_ch, ch, backend, deformable=i in deformable, bias=bias, zero_predictors=zero_predictors),
                       nn.BatchNorm2d(ch)]
            in_ch = ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_ch, num_classes)

    @property
    def model_args(self):
        return model_args(self)

    def deformable_convs(self):
        return [m for m in self.features if isinstance(m, DeformableConv)]

    def predictor_parameters(self):
        """The offset/mask predictors' parameters (the `offset_lr_mult` group)."""
        return [p for layer in self.deformable_convs() for p in layer.predictor_parameters()]

    def standardize(self, x):
        """The [0, 1] images as the first block sees them (anything that walks `features` itself starts here)."""
        return (x - self.mean) / self.std if self.inputs == "standardized" else x

    def forward(self, x):
        return self.classifier(self.features(self.standardize(x)).mean(dim=(2, 3)))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
