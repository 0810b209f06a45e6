"""The deformable convolution op, `deform_conv2d`, with torchvision's signature and four backends:

- "torchvision": torchvision.ops.deform_conv2d (scalar loops on the CPU; its native kernel on CUDA);
- "gather": pure PyTorch, im2col + GEMM with the bilinear sampling as index gathers (gather.py);
- "cpp": a fused C++/OpenMP CPU kernel compiled on first use (cpp.py, csrc/);
- "triton": Triton kernels, an implicit GEMM with the sampling on chip (triton_op.py, triton_kernels.py): CUDA, or the
  CPU under TRITON_INTERPRET=1 for tests; not measured on a GPU yet, so `auto` never picks it.

All compute the same function (tests/test_deform_ops.py and tests/test_triton.py check values and every gradient against
torchvision). On CPU "cpp" is fastest, then "gather"; both beat torchvision's CPU kernel by an order of
magnitude (README, benchmark.py).
"""
import torch
import torchvision

from models.backends import BACKENDS
from models.deform_ops import triton_op
from models.deform_ops.arguments import FLOAT_TYPES, NonFiniteArgument, check_arguments, check_finite
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
    float_types = FLOAT_TYPES
    if backend == "triton":
        problem = triton_op.available(input.device) if isinstance(input, torch.Tensor) else None
        if problem:
            raise ValueError(f"deform_conv2d: the triton backend cannot run on {input.device}: {problem}; use another backend")
        input, offset, mask, weight, bias = _autocast(input, offset, mask, weight, bias)
        float_types = FLOAT_TYPES + triton_op.HALF
    stride, padding, dilation, (ho, wo) = check_arguments(input, offset, weight, bias, stride, padding, dilation, mask, float_types)
    if backend == "cpp" and input.device.type != "cpu":
        raise ValueError(f"deform_conv2d: the cpp backend runs on the CPU only, got tensors on {input.device}")
    if input.shape[0] == 0 or weight.shape[0] == 0:
        # Nothing to compute; zero-size sums keep every argument in the graph, so each gets a zero gradient.
        linked = sum(t.sum() for t in (input, offset, weight, bias, mask) if t is not None) * 0
        return input.new_zeros(input.shape[0], weight.shape[0], ho, wo) + linked
    if backend == "triton":
        return triton_op.triton_deform_conv2d(input, offset, mask, weight, bias, stride, padding, dilation)
    if backend == "cpp":
        # Channels-last memory for the kernel, made here where autograd sees it (see cpp.py), not inside the op.
        return fused_deform_conv2d(input.contiguous(memory_format=torch.channels_last), offset, mask, weight, bias, stride, padding, dilation)
    check_finite(offset, mask)
    if backend == "torchvision":
        return torchvision.ops.deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
    return deform_conv2d_gather(input, offset, weight, bias, stride, padding, dilation, mask)


def _autocast(*tensors):
    """Under autocast, the triton backend computes in the autocast dtype (float16 or bfloat16, accumulating in float32),
    so every tensor is cast to it, as autocast casts a convolution's; outside autocast they stay as they are."""
    device = next(t.device.type for t in tensors if t is not None)
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors)
