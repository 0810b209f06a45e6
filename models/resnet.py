"""The CIFAR ResNet-20 of He et al. 2016 (section 4.2): a 3x3 stem, 3 stages of 3 basic blocks at the widths of
conv_ch (16/32/64), parameter-free shortcuts (option A), global average pool, Linear. 269,722 parameters.

A variant changes the 3x3 convolutions of the stages `deformable_layers` selects (default: the last stage, its
stride-2 convolution included; models/registry.py), never the stem. The convolutions have no bias (BatchNorm
follows each, as in the paper); the `bias` argument concerns the offset/mask predictors, which have one as in
the DCN papers unless it is false.
"""
import functools

import torch.nn.functional as F
from torch import nn

from models.deformable_conv import DeformableConv
from models.network import NUM_CLASSES, CifarModel, make_conv

BLOCKS_PER_STAGE = 3  # ResNet-20: 6n + 2 layers with n = 3


class BasicBlock(nn.Module):
    """conv -> BN -> ReLU -> conv -> BN, plus the shortcut, then ReLU. Option A shortcut: where the block halves the
    resolution and widens, the input is subsampled (every other pixel) and padded with zero channels; no parameters."""

    def __init__(self, conv1, conv2, in_ch, out_ch, stride):
        super().__init__()
        self.conv1, self.bn1 = conv1, nn.BatchNorm2d(out_ch)
        self.conv2, self.bn2 = conv2, nn.BatchNorm2d(out_ch)
        self.stride, self.extra_channels = stride, out_ch - in_ch

    def shortcut(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels)) if self.extra_channels else x

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(CifarModel):
    """Images in [0, 1] -> (standardized) -> stem (conv 3x3 -> BN -> ReLU) -> 3 stages x 3 BasicBlocks (the first
    block of stages 2 and 3 at stride 2) -> global average pool -> Linear. Built by models/factory.py; the
    arguments are ConvNet's (models/convnet.py), with conv_ch the three stages' widths."""

    network = "resnet20"

    def __init__(self, variant, conv_ch, deformable_layers=None, bias=True, inputs="standardized", num_classes=NUM_CLASSES, backend="gather",
                 widths=None, zero_predictors=True):
        super().__init__(variant, conv_ch, deformable_layers, bias, inputs, widths)
        first = self.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(3, first, 3, padding=1, bias=False), nn.BatchNorm2d(first), nn.ReLU(inplace=True))
        stages, in_ch = [], first
        for s, ch in enumerate(self.widths, start=1):
            conv = functools.partial(make_conv, variant, out_ch=ch, backend=backend, changed=s in self.changed, bias=bias, zero_predictors=zero_predictors,
                                     conv_bias=False)
            blocks = []
            for b in range(BLOCKS_PER_STAGE):
                stride = 2 if s > 1 and b == 0 else 1
                blocks.append(BasicBlock(conv(in_ch, stride=stride), conv(ch), in_ch, ch, stride))
                in_ch = ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(in_ch, num_classes)
        # He et al.'s initialisation of the convolutions (plain or deformable; the predictors keep theirs: zero).
        for m in [self.stem[0]] + [conv for block in self.blocks() for conv in (block.conv1, block.conv2)]:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def sampling_chain(self):
        """The deformable layers whose sampling points compose (utils/experiments/offsets.py), and the image pixels per
        step of their grid: those of the last block that has any (at stride 1 within it), at its stage's resolution."""
        for s, stage in reversed(list(enumerate(self.stages, start=1))):
            convs = [conv for conv in (stage[-1].conv1, stage[-1].conv2) if isinstance(conv, DeformableConv)]
            if convs:
                return convs, 2 ** (s - 1)
        return [], 1

    @staticmethod
    def last_conv_shape(conv_ch):
        """(input channels, output channels, resolution) of the last 3x3 convolution: the last stage's, at 32 / 2^(stages - 1)."""
        return conv_ch[-1], conv_ch[-1], 32 // 2 ** (len(conv_ch) - 1)

    def blocks(self):
        return [block for stage in self.stages for block in stage]

    @property
    def feature_stride(self):
        """Image pixels per step of the feature map: its unit (y, x) is centred on pixel (stride * y, stride * x) (a
        stride-2 3x3 convolution with padding 1 centres output p on input 2p, as the option-A shortcut samples)."""
        return 2 ** (len(self.widths) - 1)

    def fixed_receptive_field(self):
        """The side of the square of image pixels a feature-map unit of the plain network sees (81 for ResNet-20:
        larger than the image)."""
        side, step = 3, 1  # the stem
        for s in range(1, len(self.widths) + 1):
            for conv in range(2 * BLOCKS_PER_STAGE):
                side += 2 * step
                step *= 2 if s > 1 and conv == 0 else 1
        return side

    def feature_map(self, x):
        """The last stage's output, before pooling: [N, C, 32 / stride, 32 / stride]."""
        return self.stages(self.stem(self.standardize(x)))

    def forward(self, x):
        return self.classifier(self.feature_map(x).mean(dim=(2, 3)))
