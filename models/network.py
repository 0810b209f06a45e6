"""The small CNN shared by every variant; only the convolution layer differs (models/registry.py)."""
import torch
from torch import nn

from models.deformable_conv import DeformableConv
from models.registry import deformable_blocks
from models.registry import variant as get_variant

NUM_CLASSES = 10


def make_conv(variant, in_ch, out_ch, backend, deformable=None):
    """The 3x3 convolution of one block, as the variant builds it (`deformable`: override whether this
    block is deformable; default: the variant's)."""
    spec = get_variant(variant)
    if spec.deformable if deformable is None else deformable:
        return DeformableConv(in_ch, out_ch, 3, padding=1, modulated=spec.modulated, learn_offsets=spec.offsets, backend=backend)
    return nn.Conv2d(in_ch, out_ch, 3, padding=spec.dilation, dilation=spec.dilation)


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
    """[conv 3x3 -> BatchNorm] per entry of conv_ch, ReLU between blocks -> global average pool -> Linear.

    Rebuilt from a checkpoint by `ConvNet(**state["model_args"], backend=...)`: `model_args` holds exactly
    the constructor arguments that shape the parameters. `deformable_layers` ("all", "last" or 1-based
    block indices) overrides which blocks a deformable variant makes deformable.
    """

    def __init__(self, variant, conv_ch, deformable_layers=None, num_classes=NUM_CLASSES, backend="gather", widths_as_given=False):
        super().__init__()
        self.variant, self.conv_ch, self.deformable_layers = get_variant(variant).name, list(conv_ch), deformable_layers
        widths = list(conv_ch) if widths_as_given else matched_widths(variant, conv_ch)
        deformable = deformable_blocks(variant, len(widths), deformable_layers)
        layers, in_ch = [], 3
        for i, ch in enumerate(widths, start=1):
            if i > 1:
                layers.append(nn.ReLU(inplace=True))
            layers += [make_conv(variant, in_ch, ch, backend, deformable=i in deformable), nn.BatchNorm2d(ch)]
            in_ch = ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_ch, num_classes)

    @property
    def model_args(self):
        return {"variant": self.variant, "conv_ch": list(self.conv_ch), "deformable_layers": self.deformable_layers}

    def deformable_convs(self):
        return [m for m in self.features if isinstance(m, DeformableConv)]

    def predictor_parameters(self):
        """The offset/mask predictors' parameters (the `offset_lr_mult` group)."""
        return [p for layer in self.deformable_convs() for p in layer.predictor_parameters()]

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
