"""The small CNN shared by all three variants; only the convolution layer differs."""
from torch import nn

from models.deformable_conv import DeformableConv

MODEL_NAMES = {1: "Conv2d", 2: "DeformConv2d", 3: "DeformConv2dv2"}
NUM_CLASSES = 10


def make_conv(model_type, in_ch, out_ch, backend):
    if model_type == 1:
        return nn.Conv2d(in_ch, out_ch, 3, padding=1)
    return DeformableConv(in_ch, out_ch, 3, padding=1, modulated=(model_type == 3), backend=backend)


class ConvNet(nn.Module):
    """[conv 3x3 -> BatchNorm] per entry of conv_ch, ReLU between blocks -> global average pool -> Linear."""

    def __init__(self, model_type, conv_ch, num_classes=NUM_CLASSES, backend="gather"):
        super().__init__()
        self.model_type, self.conv_ch = model_type, list(conv_ch)
        layers, in_ch = [], 3
        for i, ch in enumerate(conv_ch):
            if i > 0:
                layers.append(nn.ReLU(inplace=True))
            layers += [make_conv(model_type, in_ch, ch, backend), nn.BatchNorm2d(ch)]
            in_ch = ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
