"""The deformable convolution op, `deform_conv2d`, with torchvision's signature and three backends:

- "torchvision": torchvision.ops.deform_conv2d (scalar loops on the CPU; its native kernel on CUDA);
- "gather": pure PyTorch, im2col + GEMM with the bilinear sampling as index gathers (gather.py);
- "cpp": a fused C++/OpenMP CPU kernel compiled on first use (cpp.py, csrc/).

All three compute the same function (tests/test_deform_ops.py checks values and every gradient against
torchvision). On CPU "cpp" is fastest, then "gather"; both beat torchvision's CPU kernel by an order of
magnitude (README, benchmark.py).
"""
import torchvision
from torch.nn.modules.utils import _pair

from models.deform_ops.cpp import FusedDeformConv
from models.deform_ops.gather import deform_conv2d_gather
from models.registry import BACKENDS

__all__ = ["BACKENDS", "deform_conv2d"]


def deform_conv2d(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None, backend="gather"):
    """torchvision.ops.deform_conv2d's arguments and result, computed by `backend`."""
    if backend == "torchvision":
        return torchvision.ops.deform_conv2d(input, offset, weight, bias, _pair(stride), _pair(padding), _pair(dilation), mask)
    if backend == "gather":
        return deform_conv2d_gather(input, offset, weight, bias, stride, padding, dilation, mask)
    if backend == "cpp":
        if input.device.type != "cpu":
            raise ValueError(f"the cpp deformable-convolution backend runs on the CPU only, got a tensor on {input.device}")
        return FusedDeformConv.apply(input, offset, mask, weight, bias, _pair(stride), _pair(padding), _pair(dilation))
    raise ValueError(f"unknown deformable-convolution backend {backend!r}; choose one of {BACKENDS}")
