"""The triton backend against torchvision: values and every gradient, in float64 and float32, over the geometry
torchvision's op takes; float16 under autocast; the empty cases; where it may run. On a GPU the kernels are compiled and
checked there; without one they run on the CPU in Triton's interpreter (TRITON_INTERPRET=1, which tests/conftest.py sets
before triton loads), each program in NumPy: hence the small shapes (the file takes about 12 s on 2 idle Xeon cores)."""
import pytest
import torch
import torchvision

from models.deform_ops import deform_conv2d, triton_op
from utils.engine.device import resolve_backend
from utils.plumbing.errors import UserError

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [pytest.mark.slow,  # 12 s in the interpreter: kept out of the one-minute fast lane
              pytest.mark.skipif(triton_op.available(DEVICE) is not None, reason=f"triton cannot run here: {triton_op.available(DEVICE)}")]


def case(n=2, c=4, h=6, w=5, o=6, groups=1, offset_groups=1, k=3, stride=1, padding=1, dilation=1, scale=2.0, masked=True,
         bias=True, dtype=torch.float64, offsets=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    weight = torch.randn(o, c // groups, k, k, generator=g, dtype=dtype)
    off = (torch.randn(n, 2 * offset_groups * k * k, ho, wo, generator=g, dtype=dtype) * scale if offsets is None
           else offsets(g, n, offset_groups, k, ho, wo, dtype))
    mask = torch.rand(n, offset_groups * k * k, ho, wo, generator=g, dtype=dtype) if masked else None
    b = torch.randn(o, generator=g, dtype=dtype) if bias else None
    return [t.to(DEVICE) if t is not None else None for t in (x, off, weight, b, mask)], dict(stride=stride, padding=padding, dilation=dilation)


def compare(tensors, geometry, tol):
    x, off, weight, b, mask = [t.clone().requires_grad_() if t is not None else None for t in tensors]
    ours = deform_conv2d(x, off, weight, b, mask=mask, backend="triton", **geometry)
    theirs = torchvision.ops.deform_conv2d(x, off, weight, b, mask=mask, **geometry)
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    grad = torch.randn_like(theirs)
    inputs = [t for t in (x, off, weight, b, mask) if t is not None]
    for name, a, r in zip(("input", "offset", "weight", "bias", "mask"), torch.autograd.grad(ours, inputs, grad),
                          torch.autograd.grad(theirs, inputs, grad)):
        torch.testing.assert_close(a, r, rtol=tol, atol=tol, msg=lambda m, name=name: f"grad {name}: {m}")


def integer_offsets(g, n, og, k, ho, wo, dtype):
    return torch.randint(-2, 3, (n, 2 * og * k * k, ho, wo), generator=g).to(dtype)


def half_integer_offsets(g, n, og, k, ho, wo, dtype):
    return torch.randint(-4, 5, (n, 2 * og * k * k, ho, wo), generator=g).to(dtype) + 0.5


def far_outside(g, n, og, k, ho, wo, dtype):
    return torch.randn(n, 2 * og * k * k, ho, wo, generator=g, dtype=dtype) * 30  # most samples far outside the image: zero, no gradient


@pytest.mark.parametrize("kwargs", [
    {},
    {"masked": False, "bias": False},
    {"groups": 2, "offset_groups": 2, "o": 4},
    {"stride": 2, "padding": 0, "dilation": 2, "h": 9, "w": 8},
    {"offsets": integer_offsets},
    {"offsets": half_integer_offsets},
    {"offsets": far_outside},
    {"k": 1, "padding": 0, "c": 3, "o": 5, "n": 3},
], ids=["dcnv2", "dcnv1-no-bias", "groups", "stride-dilation", "integer-offsets", "half-integer-offsets", "far-outside", "1x1"])
def test_values_and_every_gradient_match_torchvision_in_float64(kwargs):
    compare(*case(**kwargs), tol=1e-9)


def test_weight_gradient_summed_over_several_programs(monkeypatch):
    """The weight gradient is split over positions (SPAN each, atomics); here 60 positions over 2 programs."""
    monkeypatch.setattr(triton_op, "SPAN", 32)
    compare(*case(seed=6), tol=1e-9)


def test_float32_within_1e4():
    compare(*case(dtype=torch.float32, c=8, o=20, h=7, w=7, seed=3), tol=1e-4)


@pytest.mark.parametrize("dtype, tol", [
    (torch.float16, 5e-3),
    pytest.param(torch.bfloat16, 3e-2, marks=pytest.mark.skipif(
        DEVICE == "cpu", reason="Triton's interpreter multiplies bfloat16 tiles wrongly (its own fault): GPU only")),
], ids=["float16", "bfloat16"])
def test_half_types_under_autocast_are_computed_in_them_and_accumulated_in_float32(dtype, tol):
    (x, off, weight, b, mask), geometry = case(dtype=torch.float32, c=8, o=20, h=7, w=7, seed=4)
    with torch.autocast(DEVICE, dtype=dtype):
        ours = deform_conv2d(x, off, weight, b, mask=mask, backend="triton", **geometry)
    assert ours.dtype == dtype
    theirs = torchvision.ops.deform_conv2d(x, off, weight, b, mask=mask, **geometry)
    assert ((ours.float() - theirs).abs().max() / theirs.abs().max()) < tol


@pytest.mark.parametrize("n, o", [(0, 6), (2, 0)])
def test_empty_batch_or_no_output_channels(n, o):
    (x, off, weight, b, mask), geometry = case(n=n, o=o)
    tensors = [t.requires_grad_() for t in (x, off, weight, b, mask)]
    out = deform_conv2d(*tensors[:4], mask=tensors[4], backend="triton", **geometry)
    assert out.shape[0] == n and out.shape[1] == o
    out.sum().backward()
    assert all(t.grad is not None and not t.grad.any() for t in tensors)


def test_where_it_runs(monkeypatch):
    assert resolve_backend("auto", torch.device("cpu"), "DeformConv2dv2") != "triton"  # unmeasured on a GPU: never chosen
    with pytest.raises(UserError, match='"dcn_backend": "triton" cannot run here .its kernels run on a CUDA GPU only'):
        resolve_backend("triton", torch.device("cpu"), "DeformConv2dv2")  # a model never runs in the interpreter
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "CUDA GPU" in triton_op.available("cpu")
    (x, off, weight, b, mask), geometry = case()
    with pytest.raises(ValueError, match="the triton backend cannot run on cpu"):
        deform_conv2d(x, off, weight, b, mask=mask, backend="triton", **geometry)


def test_the_argument_rules_hold_and_half_types_are_taken():
    (x, off, weight, b, mask), geometry = case(dtype=torch.float32)
    with pytest.raises(ValueError, match="offset has shape"):
        deform_conv2d(x, off[:, :, :-1], weight, b, mask=mask, backend="triton", **geometry)
    with pytest.raises(TypeError, match="float32 or float64 or float16 or bfloat16"):
        deform_conv2d(x.int(), off, weight, b, mask=mask, backend="triton", **geometry)
    with pytest.raises(TypeError, match="must be float32 or float64$"):
        deform_conv2d(x.half(), off.half(), weight.half(), b.half(), mask=mask.half(), backend="gather", **geometry)
