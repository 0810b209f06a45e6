"""Which device, and which deformable-convolution op on it, a run uses."""
import torch

from models.deform_ops import triton_op
from models.deform_ops.cpp import build_error, kernel
from models.registry import VARIANTS
from utils.plumbing.errors import UserError


def resolve_device(name):
    """"auto" -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f'device "{name}" was asked for but CUDA is not available here; set "device": "auto" or "cpu"')
    return device


def resolve_backend(name, device, variant=None):
    """"auto" -> the fastest op for the device, by measurement (benchmark.py, README): on CPU the fused C++
    kernel ("cpp"), or the pure-PyTorch "gather" op when the kernel cannot be built here; on CUDA
    torchvision's native kernel ("triton" is not chosen: unmeasured on a GPU so far). An explicit "cpp" must be usable:
    CPU, and a kernel that builds; an explicit "triton" needs CUDA and Triton.
    None for a variant without deformable layers: nothing is chosen or built."""
    if variant is not None and not VARIANTS[variant].deformable:
        return None
    on_cuda = torch.device(device).type == "cuda"
    if name == "auto":
        return "torchvision" if on_cuda else ("cpp" if kernel() is not None else "gather")
    if name == "cpp" and on_cuda:
        raise UserError('"dcn_backend": "cpp" runs on the CPU only; on CUDA use "auto" or "torchvision"')
    if name == "triton":
        # Not on the CPU even under TRITON_INTERPRET=1: the interpreter is for the op's tests, far too slow for a model.
        why = triton_op.available(device) if on_cuda else "its kernels run on a CUDA GPU only"
        if why:
            raise UserError(f'"dcn_backend": "triton" cannot run here ({why}); use "auto"')
    if name == "cpp" and kernel() is None:
        raise UserError(f'"dcn_backend": "cpp" could not be built here ({build_error()}); use "auto" or "gather"')
    return name


def usable_backends(names, device):
    """The backends of `names` that run here, resolved; each one that cannot (cpp on a GPU, or without a C++
    compiler) is skipped with a line saying why, so a benchmark measures the others."""
    usable = []
    for name in names:
        try:
            usable.append(resolve_backend(name, device))
        except UserError as e:
            print(f"skipping dcn_backend {name}: {e}")
    return usable


def backend_note(backend):
    """For log lines: the deformable op in use (and why, when the C++ kernel was skipped), nothing for Conv2d."""
    if backend is None:
        return ""
    why = f" (the cpp kernel could not be built: {build_error()})" if backend == "gather" and build_error() else ""
    return f", dcn_backend={backend}{why}"
