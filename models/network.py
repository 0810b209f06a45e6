"""The small CNN shared by every variant; only the convolution layer differs (models/registry.py)."""
from torch import nn

from models.deformable_conv import DeformableConv
from models.registry import variant as get_variant

NUM_CLASSES = 10


def make_conv(variant, in_ch, out_ch, backend):
    """The 3x3 convolution (padding 1) of one block, as the variant builds it."""
    spec = get_variant(variant)
    if spec.deformable:
        return DeformableConv(in_ch, out_ch, 3, padding=1, modulated=spec.modulated, backend=backend)
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class ConvNet(nn.Module):
    """[conv 3x3 -> BatchNorm] per entry of conv_ch, ReLU between blocks -> global average pool -> Linear.

    Rebuilt from a checkpoint by `ConvNet(**state["model_args"], backend=...)`: `model_args` holds exactly
    the constructor arguments that shape the parameters.
    """

    def __init__(self, variant, conv_ch, num_classes=NUM_CLASSES, backend="gather"):
        super().__init__()
        self.variant, self.conv_ch = get_variant(variant).name, list(conv_ch)
        layers, in_ch = [], 3
        for i, ch in enumerate(conv_ch):
            if i > 0:
                layers.append(nn.ReLU(inplace=True))
            layers += [make_conv(variant, in_ch, ch, backend), nn.BatchNorm2d(ch)]
            in_ch = ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_ch, num_classes)

    @property
    def model_args(self):
        return {"variant": self.variant, "conv_ch": list(self.conv_ch)}

    def deformable_layers(self):
        return [m for m in self.features if isinstance(m, DeformableConv)]

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
