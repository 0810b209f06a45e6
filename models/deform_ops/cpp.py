"""The "cpp" backend: the fused C++ kernel of csrc/deform_conv_cpu.cpp, compiled on first use.

torch.utils.cpp_extension compiles it with the machine's C++ compiler and ninja (a PyPI package, in
requirements.txt) into ~/.cache/torch_extensions (or $TORCH_EXTENSIONS_DIR), once per machine and source
version: about 30 s the first time (2 cores), about a second afterwards. There is no manual build step.
`-march=native`: the kernel is built for the CPU it runs on (the cache is per machine).
When it cannot be built (no compiler, say), `kernel()` returns None, `build_error()` says why, and
`auto` falls back to the pure-PyTorch `gather` op (gather.py).
"""
import threading
from pathlib import Path

import torch

from models.deform_ops.arguments import refuse_second_order

SOURCE = Path(__file__).with_name("csrc") / "deform_conv_cpu.cpp"
_state = {}  # "module" or "error", filled by the first kernel() call of the process


def kernel():
    """The compiled extension module, or None when it cannot be built on this machine."""
    if not _state:
        # Loading a built kernel takes about a second (measured 0.3-1.2 s); a compile outlives this timer.
        message = "building the C++ deformable-convolution kernel (once per machine and source version, about 30 s) ..."
        notice = threading.Timer(5.0, print, [message], {"flush": True})
        notice.start()
        try:
            from torch.utils import cpp_extension

            _state["module"] = cpp_extension.load(
                "dcn_cpu_fused", [str(SOURCE)], extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"]
            )
        except Exception as e:  # noqa: BLE001 -- a compiler, ninja or build error of any kind means: fall back
            _state["error"] = _first_error_line(str(e)) or type(e).__name__
        finally:
            notice.cancel()
    return _state.get("module")


def _first_error_line(message):
    """The compiler's first 'error:' line if there is one (the full message is pages of build commands)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    return ((errors or lines or [""])[0])[:300]


def build_error():
    """Why the kernel is unavailable (None when it is available or was never asked for)."""
    return _state.get("error")


class FusedDeformConv(torch.autograd.Function):
    """Autograd wrapper: input NCHW, offset/mask in torchvision's layout, weight [O, C/groups, kh, kw]."""

    @staticmethod
    def forward(ctx, input, offset, mask, weight, bias, stride, padding, dilation):
        # The kernel reads channels-last: each bilinear corner is then one contiguous channel vector.
        input_cl = input.permute(0, 2, 3, 1).contiguous()
        offset, weight = offset.contiguous(), weight.contiguous()
        mask = mask.contiguous() if mask is not None else None
        bias = bias.contiguous() if bias is not None else None
        out = kernel().forward(input_cl, offset, mask, weight, bias, *stride, *padding, *dilation)
        ctx.save_for_backward(input_cl, offset, mask, weight)
        ctx.geometry = (*stride, *padding, *dilation)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        refuse_second_order("cpp")
        input_cl, offset, mask, weight = ctx.saved_tensors
        need_input = ctx.needs_input_grad[0]  # False for the first layer: the images need no gradient
        g_in, g_off, g_mask, g_w = kernel().backward(grad_out.contiguous(), input_cl, offset, mask, weight, *ctx.geometry, need_input)
        # Back to contiguous NCHW: BatchNorm's backward on a channels-last view was measured 4x slower.
        g_in = g_in.permute(0, 3, 1, 2).contiguous() if need_input else None
        g_bias = grad_out.sum((0, 2, 3)) if ctx.has_bias else None
        return g_in, g_off, g_mask, g_w, g_bias, None, None, None
