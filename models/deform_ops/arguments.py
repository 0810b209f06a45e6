"""The argument rules of deform_conv2d, checked once, before any backend runs.

Every backend gets the same arguments and every caller the same message: a Python exception that names
the argument, its shape or value, and the rule (TypeError for a wrong kind of value, ValueError for a
wrong shape or value). The C++ kernel keeps checks of its own as a second line of defence.

The rules (torchvision's, made explicit):
- input [N, C, H, W], weight [O, C/groups, kh, kw], offset [N, 2*G*kh*kw, Ho, Wo], mask [N, G*kh*kw, Ho, Wo]
  (optional), bias [O] (optional); C, H, W, kh, kw >= 1; N = 0 or O = 0 give an empty output;
- groups = C / weight.shape[1] must be whole and divide O; offset groups G must be whole and divide C;
- stride >= 1, dilation >= 1, padding >= 0 (an int or a pair of ints), and the output size
  Ho = (H + 2*ph - dh*(kh-1) - 1) // sh + 1 (likewise Wo) must be >= 1 and match offset and mask;
- one floating dtype (float32 or float64) and one device for every tensor;
- offset and mask finite: a NaN or infinite sampling position or mask has no meaningful result, and the
  backends would each hide or spread it differently, so it is refused (counted in the message).
"""
import torch

FLOAT_TYPES = (torch.float32, torch.float64)


class NonFiniteArgument(ValueError):
    """offset or mask holds NaN or infinity (the training loop turns this into a stop with advice)."""


def _pair(value, name, minimum):
    """An int or a pair of ints, each >= minimum -> (a, b)."""
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    pair = (value, value) if is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(is_int(v) for v in pair):
        raise TypeError(f"deform_conv2d: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"deform_conv2d: {name} must be >= {minimum}, got {value!r}")
    return pair


def _shape(t):
    return list(t.shape)


def check_arguments(input, offset, weight, bias, stride, padding, dilation, mask, float_types=FLOAT_TYPES):
    """Raise TypeError/ValueError on any rule above; returns ((sh, sw), (ph, pw), (dh, dw), out_size). `float_types`:
    the dtypes the backend takes (the triton backend also float16 and bfloat16)."""
    named = [("input", input), ("offset", offset), ("weight", weight), ("bias", bias), ("mask", mask)]
    tensors = [(name, t) for name, t in named if t is not None]
    for name, t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"deform_conv2d: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in float_types:
            names = " or ".join(str(d).replace("torch.", "") for d in float_types)
            raise TypeError(f"deform_conv2d: {name} has dtype {t.dtype}; every tensor must be {names}")
    dtypes = {t.dtype for _, t in tensors}
    if len(dtypes) > 1:
        kinds = ", ".join(f"{name} {t.dtype}" for name, t in tensors)
        raise TypeError(f"deform_conv2d: the tensors mix dtypes ({kinds}); convert them to one (float32 or float64)")
    devices = {t.device for _, t in tensors}
    if len(devices) > 1:
        where = ", ".join(f"{name} on {t.device}" for name, t in tensors)
        raise ValueError(f"deform_conv2d: the tensors are on different devices ({where}); move them to one")
    for name, t, dims in (("input", input, 4), ("offset", offset, 4), ("weight", weight, 4), ("bias", bias, 1), ("mask", mask, 4)):
        if t is not None and t.dim() != dims:
            raise ValueError(f"deform_conv2d: {name} must have {dims} dimensions, got shape {_shape(t)}")

    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    n, c, h, w = input.shape
    out_ch, c_per_group, kh, kw = weight.shape
    if c == 0 or h == 0 or w == 0:
        raise ValueError(f"deform_conv2d: input has shape {_shape(input)}; channels, height and width must each be at least 1")
    if kh == 0 or kw == 0 or c_per_group == 0:
        raise ValueError(f"deform_conv2d: weight shape {_shape(weight)} is empty; it must be [out_channels, in_channels/groups >= 1, kh >= 1, kw >= 1]")
    if c % c_per_group:
        raise ValueError(f"deform_conv2d: weight shape {_shape(weight)} does not fit input shape {_shape(input)}: "
                         f"weight.shape[1] ({c_per_group}) must divide the input channels ({c}) (groups = {c} / {c_per_group})")
    groups = c // c_per_group
    if out_ch % groups:
        raise ValueError(f"deform_conv2d: groups ({groups} = input channels {c} / weight.shape[1] {c_per_group}) must divide "
                         f"the output channels (weight.shape[0] = {out_ch})")
    if bias is not None and _shape(bias) != [out_ch]:
        raise ValueError(f"deform_conv2d: bias has shape {_shape(bias)}; it must be [{out_ch}] (one per output channel, weight.shape[0])")

    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"deform_conv2d: input {h}x{w} with kernel {kh}x{kw}, stride ({sh}, {sw}), padding ({ph}, {pw}) and dilation "
                         f"({dh}, {dw}) leaves an output of {ho}x{wo}; it must be at least 1x1")
    taps = kh * kw
    if offset.shape[1] == 0 or offset.shape[1] % (2 * taps):
        raise ValueError(f"deform_conv2d: offset has {offset.shape[1]} channels (shape {_shape(offset)}); it needs 2 * offset_groups * "
                         f"kh * kw = a positive multiple of {2 * taps}")
    offset_groups = offset.shape[1] // (2 * taps)
    if c % offset_groups:
        raise ValueError(f"deform_conv2d: offset's {offset.shape[1]} channels mean {offset_groups} offset groups, which must divide "
                         f"the input channels ({c})")
    if _shape(offset) != [n, 2 * offset_groups * taps, ho, wo]:
        raise ValueError(f"deform_conv2d: offset has shape {_shape(offset)}; it must be [{n}, {2 * offset_groups * taps}, {ho}, {wo}] "
                         f"(batch, 2 * offset_groups * kh * kw, output height, output width)")
    if mask is not None and _shape(mask) != [n, offset_groups * taps, ho, wo]:
        raise ValueError(f"deform_conv2d: mask has shape {_shape(mask)}; it must be [{n}, {offset_groups * taps}, {ho}, {wo}] "
                         f"(batch, offset_groups * kh * kw, output height, output width)")
    return (sh, sw), (ph, pw), (dh, dw), (ho, wo)


def check_finite(offset, mask):
    """Raise NonFiniteArgument if offset or mask holds NaN or infinity. Kept apart from check_arguments because it
    reads the data: the cpp operator runs it inside itself, where a compiled graph does not see it; in a compiled
    graph of another backend it is an assertion (a RuntimeError with the same words)."""
    for name, t in (("offset", offset), ("mask", mask)):
        if t is not None and torch.compiler.is_compiling():  # a compiled graph cannot branch on data: assert instead
            torch._assert_async(torch.isfinite(t).all(), f"deform_conv2d: {name} holds NaN or infinite values; they must be finite")
        elif t is not None and t.numel() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise NonFiniteArgument(f"deform_conv2d: {name} holds {bad} NaN or infinite value(s) (shape {_shape(t)}); "
                                    f"sampling positions and masks must be finite")


def refuse_second_order(backend):
    """Called first in a backend's backward. Autograd runs backward with grad mode on exactly when the caller
    asked for a graph of the gradient (create_graph=True); the gather and cpp backwards are not themselves
    differentiable, so that request is refused here rather than answered with a gradient whose graph is
    silently wrong."""
    if torch.is_grad_enabled():
        raise RuntimeError(f"deform_conv2d (backend {backend!r}) gives first-order gradients only: a graph of its gradient "
                           "(create_graph=True, e.g. for a gradient penalty) is not supported by any backend; compute the gradient "
                           "without create_graph")
