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
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from models.deform_ops.arguments import check_finite
from models.deform_ops.autograd import register_autograd

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


# The kernel as a real PyTorch operator (torch.library): torch.compile traces through it with no graph break
# (the fake implementations below give output shapes without running it), torch.export keeps it as one node
# `dcn::deform_conv2d` (which export_onnx turns into ONNX DeformConv), and autograd is registered with it.
# The input arrives NCHW-shaped; the kernel reads it channels-last, where each bilinear corner is one
# contiguous channel vector. The caller (deform_conv2d) passes it in channels-last memory already, so the
# permutes below are free views, and backward does not pay for a second copy.


def _nhwc(input):
    return input.permute(0, 2, 3, 1).contiguous()


def _contiguous(t):
    return t.contiguous() if t is not None else None


def _loaded_kernel():
    module = kernel()
    if module is None:
        raise RuntimeError(f"deform_conv2d: the cpp backend's kernel could not be built on this machine ({build_error()}); "
                           "use backend 'gather'")
    return module


@torch.library.custom_op("dcn::deform_conv2d", mutates_args=())
def fused_deform_conv2d(input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
                        stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """deform_conv2d by the fused kernel: input [N, C, H, W], offset/mask in torchvision's layout."""
    check_finite(offset, mask)  # here, not in the caller: a data-dependent check would break a compiled graph
    return _loaded_kernel().forward(_nhwc(input), offset.contiguous(), _contiguous(mask), weight.contiguous(), _contiguous(bias),
                                    *stride, *padding, *dilation)


@fused_deform_conv2d.register_fake
def _(input, offset, mask, weight, bias, stride, padding, dilation):
    return input.new_empty(offset.shape[0], weight.shape[0], offset.shape[2], offset.shape[3])


@torch.library.custom_op("dcn::deform_conv2d_backward", mutates_args=())
def fused_deform_conv2d_backward(grad_out: Tensor, input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
                                 stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                                 need_input: bool) -> List[Tensor]:
    """[grad input (NCHW, contiguous), grad offset, grad mask, grad weight]; a gradient not asked for (the input's
    when need_input is False, the mask's without a mask) is an empty tensor, as an operator cannot return None."""
    g_in, g_off, g_mask, g_w = _loaded_kernel().backward(grad_out.contiguous(), _nhwc(input), offset.contiguous(), _contiguous(mask),
                                                          weight.contiguous(), *stride, *padding, *dilation, need_input)
    # Contiguous NCHW: BatchNorm's backward on a channels-last gradient was measured 4x slower.
    g_in = g_in.permute(0, 3, 1, 2).contiguous() if need_input else input.new_empty(0)
    return [g_in, g_off, g_mask if mask is not None else offset.new_empty(0), g_w]


@fused_deform_conv2d_backward.register_fake
def _(grad_out, input, offset, mask, weight, stride, padding, dilation, need_input):
    return [torch.empty_like(input, memory_format=torch.contiguous_format) if need_input else input.new_empty(0),
            torch.empty_like(offset), torch.empty_like(mask) if mask is not None else offset.new_empty(0), torch.empty_like(weight)]


register_autograd(fused_deform_conv2d, fused_deform_conv2d_backward, "cpp")
