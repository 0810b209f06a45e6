"""The deformable convolution op, `deform_conv2d`, with torchvision's signature and three backends:

- "torchvision": torchvision.ops.deform_conv2d (scalar loops on the CPU; its native kernel on CUDA);
- "gather": pure PyTorch, im2col + GEMM with the bilinear sampling as index gathers (gather.py);
- "cpp": a fused C++/OpenMP CPU kernel compiled on first use (cpp.py, csrc/).

All three compute the same function (tests/test_deform_ops.py checks values and every gradient against
torchvision). On CPU "cpp" is fastest, then "gather"; both beat torchvision's CPU kernel by an order of
magnitude (README, benchmark.py).
"""
import torch
import torchvision

from models.backends import BACKENDS
from models.deform_ops.arguments import NonFiniteArgument, check_arguments, check_finite
from models.deform_ops.cpp import fused_deform_conv2d
from models.deform_ops.gather import deform_conv2d_gather

__all__ = ["BACKENDS", "NonFiniteArgument", "deform_conv2d"]


def deform_conv2d(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None, backend="gather"):
    """torchvision.ops.deform_conv2d's arguments and result, computed by `backend`.

    The arguments are checked first, the same way for every backend (arguments.py): a bad one raises
    TypeError or ValueError naming it; NaN or infinite offsets or masks raise NonFiniteArgument. An empty
    batch or zero output channels give an empty output (and zero gradients) whatever the backend.
    Gradients are first-order only (create_graph=True through gather or cpp raises, see arguments.py).
    """
    if backend not in BACKENDS:
        raise ValueError(f"deform_conv2d: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    stride, padding, dilation, (ho, wo) = check_arguments(input, offset, weight, bias, stride, padding, dilation, mask)
    if backend == "cpp" and input.device.type != "cpu":
        raise ValueError(f"deform_conv2d: the cpp backend runs on the CPU only, got tensors on {input.device}")
    if input.shape[0] == 0 or weight.shape[0] == 0:
        # Nothing to compute; zero-size sums keep every argument in the graph, so each gets a zero gradient.
        linked = sum(t.sum() for t in (input, offset, weight, bias, mask) if t is not None) * 0
        return input.new_zeros(input.shape[0], weight.shape[0], ho, wo) + linked
    if backend == "cpp":
        # Channels-last memory for the kernel, made here where autograd sees it (see cpp.py), not inside the op.
        return fused_deform_conv2d(input.contiguous(memory_format=torch.channels_last), offset, mask, weight, bias, stride, padding, dilation)
    check_finite(offset, mask)
    if backend == "torchvision":
        return torchvision.ops.deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
    return deform_conv2d_gather(input, offset, weight, bias, stride, padding, dilation, mask)
