"""The small CNN of the question: [conv 3x3 -> BatchNorm] per entry of conv_ch, ReLU between blocks, global
average pool, Linear. Every variant is this network with another convolution in the blocks it changes."""
from torch import nn

from models.network import NUM_CLASSES, CifarModel, make_conv


class ConvNet(CifarModel):
    """Images in [0, 1] -> (standardized) -> [conv 3x3 -> BatchNorm] per entry of conv_ch, ReLU between blocks
    -> global average pool -> Linear.

    Built by models/factory.py from a checkpoint's or a config's model arguments. `deformable_layers` ("all", "last"
    or 1-based block indices) overrides which blocks a variant changes; `bias=False` builds every convolution and
    predictor without a bias and `inputs="unit"` feeds the [0, 1] images unstandardized, both as the reference
    repository does; `zero_predictors=False` initialises the offset/mask predictors as PyTorch initialises any
    convolution (the reference) instead of at zero (the DCN papers). `widths`: the blocks' widths when they are not
    conv_ch (a parameter-matched control's).
    """

    network = "convnet"

    def __init__(self, variant, conv_ch, deformable_layers=None, bias=True, inputs="standardized", num_classes=NUM_CLASSES, backend="gather",
                 widths=None, zero_predictors=True):
        super().__init__(variant, conv_ch, deformable_layers, bias, inputs, widths)
        layers, in_ch = [], 3
        for i, ch in enumerate(self.widths, start=1):
            if i > 1:
                layers.append(nn.ReLU(inplace=True))
            layers += [make_conv(variant, in_ch, ch, backend, changed=i in self.changed, bias=bias, zero_predictors=zero_predictors), nn.BatchNorm2d(ch)]
            in_ch = ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_ch, num_classes)

    def sampling_chain(self):
        """The deformable layers whose sampling points compose (utils/experiments/offsets.py), and the image pixels per
        step of their grid: every deformable block, at full resolution."""
        return self.deformable_convs(), 1

    @staticmethod
    def last_conv_shape(conv_ch):
        """(input channels, output channels, resolution) of the last 3x3 convolution (the cost study times it alone)."""
        return (conv_ch[-2] if len(conv_ch) > 1 else 3), conv_ch[-1], 32

    feature_stride = 1  # image pixels per step of the feature map (its unit (y, x) is centred on pixel (y, x))

    def fixed_receptive_field(self):
        """The side of the square of image pixels a feature-map unit of the plain network sees: 3x3 per block."""
        return 1 + 2 * len(self.widths)

    def feature_map(self, x):
        """The last block's output, before pooling: [N, C, 32, 32]."""
        return self.features(self.standardize(x))

    def forward(self, x):
        return self.classifier(self.feature_map(x).mean(dim=(2, 3)))
