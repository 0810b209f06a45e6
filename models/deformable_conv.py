"""The deformable convolution layers: DCNv1 (learned offsets) and DCNv2 (learned offsets + modulation mask)."""
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import DeformConv2d

from models.deform_ops import deform_conv2d


class DeformableConv(DeformConv2d):
    """torchvision's DeformConv2d (its weight, bias and initialisation) fed by its own offset predictor and,
    when `modulated` (DCNv2), a modulation-mask predictor.

    Both predictors are 3x3 convolutions with the layer's stride/padding/dilation, initialised to zero
    (weights and bias) as in the DCN papers: training starts from the regular sampling grid, and in DCNv2
    from a mask of sigmoid(0) = 0.5 everywhere. `backend` picks the op ("torchvision", "gather" or "cpp", see
    models/deform_ops.py); all compute the same function on the same parameters, so checkpoints move freely.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1, modulated=False, backend="gather"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.modulated = modulated
        self.backend = backend
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.offset = nn.Conv2d(in_channels, 2 * taps, kernel_size, stride, padding, dilation)
        self.mask = nn.Conv2d(in_channels, taps, kernel_size, stride, padding, dilation) if modulated else None
        for predictor in (self.offset, self.mask):
            if predictor is not None:
                nn.init.zeros_(predictor.weight)
                nn.init.zeros_(predictor.bias)

    def forward(self, x):
        if self.modulated:
            # One convolution for both predictors: measured 1.5x faster (forward+backward) than two, whose
            # 18 and 9 output channels use the CPU's vector units poorly. Parameters stay separate.
            weight = torch.cat((self.offset.weight, self.mask.weight))
            bias = torch.cat((self.offset.bias, self.mask.bias))
            both = F.conv2d(x, weight, bias, self.offset.stride, self.offset.padding, self.offset.dilation)
            offset, mask = both.split((self.offset.out_channels, self.mask.out_channels), dim=1)
            mask = torch.sigmoid(mask)
        else:
            offset, mask = self.offset(x), None
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask, self.backend)

    def extra_repr(self):
        return super().extra_repr() + f", modulated={self.modulated}, backend={self.backend}"
