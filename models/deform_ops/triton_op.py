"""The "triton" backend: triton_kernels.py as a PyTorch operator `dcn::deform_conv2d_triton` (torch.library, like
the cpp backend: torch.compile and torch.export see one node, autograd is registered with it).

It runs on a CUDA GPU, or on the CPU under TRITON_INTERPRET=1 (Triton's interpreter: slow, for tests only).
Unmeasured on a GPU so far: `auto` never picks it (models/deform_ops/__init__.py, utils/engine/device.py).
float32 and float64, and float16/bfloat16 (under autocast: the caller casts), accumulated in float32.
Indices are 32-bit: a tensor of more than 2**31 elements is refused.
"""
import os
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from models.deform_ops.arguments import check_finite
from models.deform_ops.autograd import register_autograd

HALF = (torch.float16, torch.bfloat16)
BLOCKS = {"BP": 32, "BO": 32, "BR": 32}  # tile sizes: positions x output channels x columns (tl.dot wants >= 16)
SPAN = 2048  # positions one weight-gradient program sums (a multiple of BP); the rest is split across programs


def available(device):
    """None when the backend runs on `device`, else why not (a phrase)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    if torch.device(device).type == "cuda":
        return None
    if os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return "Triton kernels run on a CUDA GPU (on the CPU only under TRITON_INTERPRET=1, for tests)"


def _kernels():
    from models.deform_ops import triton_kernels  # imported on first use: the interpreter setting is read then

    return triton_kernels


def _types(dtype):
    """(accumulator, multiply) Triton types for a tensor dtype."""
    import triton.language as tl

    if dtype == torch.float64:
        return tl.float64, tl.float64
    if dtype in HALF:
        return tl.float32, (tl.float16 if dtype == torch.float16 else tl.bfloat16)
    return tl.float32, tl.float32


def _geometry(input, offset, weight, stride, padding, dilation):
    n, c, h, w = input.shape
    o, c_per_group, kh, kw = weight.shape
    for t in (input, offset, weight):
        if t.numel() >= 2**31:
            raise ValueError(f"deform_conv2d (backend 'triton'): a tensor of shape {list(t.shape)} has 2**31 elements or more; "
                             "the kernels index in 32 bits: use backend 'torchvision' or a smaller batch")
    groups, offset_groups = c // c_per_group, offset.shape[1] // (2 * kh * kw)
    return (n, c, h, w, o, offset.shape[2], offset.shape[3], groups, offset_groups, kh, kw, *stride, *padding, *dilation)


def _grid(*sizes):
    import triton

    return tuple(triton.cdiv(size, block) if block else size for size, block in sizes)


@torch.library.custom_op("dcn::deform_conv2d_triton", mutates_args=())
def triton_deform_conv2d(input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
                         stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """deform_conv2d by the Triton kernels: input [N, C, H, W], offset/mask in torchvision's layout."""
    check_finite(offset, mask)
    input, offset, weight = input.contiguous(), offset.contiguous(), weight.contiguous()
    mask = mask.contiguous() if mask is not None else None
    geo = _geometry(input, offset, weight, stride, padding, dilation)
    n, _, _, _, o, ho, wo, groups = geo[:8]
    out = input.new_empty(n, o, ho, wo)
    acc, dot = _types(input.dtype)
    grid = _grid((n * ho * wo, BLOCKS["BP"]), (o // groups, BLOCKS["BO"]), (groups, 0))
    _kernels().forward_kernel[grid](input, offset, mask if mask is not None else offset, weight, bias if bias is not None else weight, out,
                                    *geo, HAS_MASK=mask is not None, HAS_BIAS=bias is not None, ACC=acc, DOT=dot, **BLOCKS)
    return out


@triton_deform_conv2d.register_fake
def _(input, offset, mask, weight, bias, stride, padding, dilation):
    return input.new_empty(offset.shape[0], weight.shape[0], offset.shape[2], offset.shape[3])


@torch.library.custom_op("dcn::deform_conv2d_triton_backward", mutates_args=())
def triton_deform_conv2d_backward(grad_out: Tensor, input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
                                  stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], need_input: bool) -> List[Tensor]:
    """[grad input, grad offset, grad mask, grad weight], each in its tensor's dtype (accumulated in float32 or float64);
    a gradient not asked for (the input's when need_input is False, the mask's without a mask) is an empty tensor."""
    grad_out, input, offset, weight = grad_out.contiguous(), input.contiguous(), offset.contiguous(), weight.contiguous()
    mask = mask.contiguous() if mask is not None else None
    geo = _geometry(input, offset, weight, stride, padding, dilation)
    n, c, _, _, o, ho, wo, groups, _, kh, kw = geo[:11]
    acc, dot = _types(input.dtype)
    wide = torch.float64 if input.dtype == torch.float64 else torch.float32  # atomics add up in this type
    g_in = torch.zeros(input.shape, dtype=wide, device=input.device) if need_input else input.new_empty(0)
    g_off = torch.zeros(offset.shape, dtype=wide, device=input.device)
    g_mask = torch.zeros(mask.shape, dtype=wide, device=input.device) if mask is not None else offset.new_empty(0)
    g_w = torch.zeros(weight.shape, dtype=wide, device=input.device)
    columns = (c // groups) * kh * kw
    kernels, masked = _kernels(), mask if mask is not None else offset
    grid = _grid((n * ho * wo, BLOCKS["BP"]), (columns, BLOCKS["BR"]), (groups, 0))
    kernels.backward_columns_kernel[grid](grad_out, input, offset, masked, weight, g_in if need_input else g_off, g_off,
                                          g_mask if mask is not None else g_off, *geo, HAS_MASK=mask is not None,
                                          NEED_INPUT=need_input, ACC=acc, DOT=dot, **BLOCKS)
    blocks = _grid((o // groups, BLOCKS["BO"]))[0] * _grid((columns, BLOCKS["BR"]))[0]
    grid = (blocks, _grid((n * ho * wo, SPAN))[0], groups)
    kernels.backward_weight_kernel[grid](grad_out, input, offset, masked, g_w, *geo, HAS_MASK=mask is not None, ACC=acc, DOT=dot,
                                         SPAN=SPAN, **BLOCKS)
    return [g_in.to(input.dtype) if need_input else g_in, g_off.to(offset.dtype),
            g_mask.to(mask.dtype) if mask is not None else g_mask, g_w.to(weight.dtype)]


@triton_deform_conv2d_backward.register_fake
def _(grad_out, input, offset, mask, weight, stride, padding, dilation, need_input):
    return [torch.empty_like(input) if need_input else input.new_empty(0), torch.empty_like(offset),
            torch.empty_like(mask) if mask is not None else offset.new_empty(0), torch.empty_like(weight)]


register_autograd(triton_deform_conv2d, triton_deform_conv2d_backward, "triton")
