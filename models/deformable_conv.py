"""The deformable convolution layer: DCNv1 (learned offsets) and DCNv2 (learned offsets + modulation mask)."""
import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.utils import _pair

from models.deform_ops import deform_conv2d


class DeformableConv(nn.Module):
    """A k x k deformable convolution whose offsets (and, when `modulated`, mask) come from its own input.

    `predict(x)` gives the offsets [N, 2*k*k, H, W] (dy, dx per tap, torchvision's layout) and the mask
    [N, k*k, H, W] (after the sigmoid) or None; `forward(x)` samples the input there and convolves.
    With `learn_offsets=False` (a control) there is no offset predictor: the offsets are exactly zero, the
    regular grid, and only the mask is learned.

    The weight and bias have torchvision's DeformConv2d shapes and initialisation (same random draws), so
    checkpoints from before this class existed load unchanged. Both predictors are k x k convolutions with
    the layer's stride/padding/dilation, initialised to zero as in the DCN papers: training starts from the
    regular sampling grid, and in DCNv2 from a mask of sigmoid(0) = 0.5 everywhere (`zero_predictors=False`:
    PyTorch's default initialisation, as the reference repository). `bias=False`: no bias anywhere in the layer;
`predictor_bias` (default: `bias`) sets the predictors' apart (a residual network's convolutions have none, its
predictors do, as in the DCN papers).
    `backend` picks the op
    ("torchvision", "gather" or "cpp", see models/deform_ops); all compute the same function on the same
    parameters, so checkpoints move freely between them.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1, modulated=False, learn_offsets=True,
                 backend="gather", bias=True, zero_predictors=True, predictor_bias=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = map(_pair, (kernel_size, stride, padding, dilation))
        self.modulated, self.backend = modulated, backend
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.register_parameter("bias", nn.Parameter(torch.empty(out_channels)) if bias else None)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # torchvision's DeformConv2d.reset_parameters
        if bias:
            bound = 1 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
            nn.init.uniform_(self.bias, -bound, bound)

        taps = self.kernel_size[0] * self.kernel_size[1]
        predictor_bias = bias if predictor_bias is None else predictor_bias
        self.offset = nn.Conv2d(in_channels, 2 * taps, kernel_size, stride, padding, dilation, bias=predictor_bias) if learn_offsets else None
        self.mask = nn.Conv2d(in_channels, taps, kernel_size, stride, padding, dilation, bias=predictor_bias) if modulated else None
        for predictor in (self.offset, self.mask):
            if predictor is not None and zero_predictors:
                nn.init.zeros_(predictor.weight)
                if predictor_bias:
                    nn.init.zeros_(predictor.bias)

    def predictor_parameters(self):
        return [p for m in (self.offset, self.mask) if m is not None for p in m.parameters()]

    def predict(self, x):
        """(offset, mask): where each tap samples, and (DCNv2) how much it counts; mask None for DCNv1."""
        if self.offset is None:  # offsets fixed at zero: the regular grid
            mask = torch.sigmoid(self.mask(x))
            return mask.new_zeros(mask.shape[0], 2 * mask.shape[1], *mask.shape[2:]), mask
        if not self.modulated:
            return self.offset(x), None
        # One convolution for both predictors: measured 1.5x faster (forward+backward) than two, whose 18
        # and 9 output channels use the CPU's vector units poorly. The parameters stay separate modules.
        weight = torch.cat((self.offset.weight, self.mask.weight))
        bias = torch.cat((self.offset.bias, self.mask.bias)) if self.offset.bias is not None else None
        both = F.conv2d(x, weight, bias, self.offset.stride, self.offset.padding, self.offset.dilation)
        offset, mask = both.split((self.offset.out_channels, self.mask.out_channels), dim=1)
        return offset, torch.sigmoid(mask)

    def forward(self, x):
        offset, mask = self.predict(x)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask, self.backend)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, modulated={self.modulated}, learn_offsets={self.offset is not None}, "
                f"backend={self.backend}")
