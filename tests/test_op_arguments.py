"""deform_conv2d as a library: every bad argument raises a Python exception naming it (the same message for
every backend), nothing kills the process, empty inputs give empty outputs, NaN is refused, double
backward is refused, and a randomized sweep of valid shapes matches torchvision."""
import random
import subprocess
import sys

import pytest
import torch
import torchvision
from conftest import ROOT

from models.deform_ops import NonFiniteArgument, deform_conv2d


def args(n=2, c=4, h=6, w=7, o=5, cpg=None, k=3, og=1, pad=1, dtype=torch.float64, mask=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    weight = torch.randn(o, cpg or c, k, k, generator=g, dtype=dtype)
    ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    offset = torch.randn(n, 2 * og * k * k, ho, wo, generator=g, dtype=dtype)
    m = torch.rand(n, og * k * k, ho, wo, generator=g, dtype=dtype) if mask else None
    return dict(input=x, offset=offset, weight=weight, bias=None, padding=pad, mask=m)


# (what is wrong, changes to the valid arguments of args(), exception, the message's start after "deform_conv2d: ")
BAD = [
    ("groups do not divide out channels", dict(weight=torch.randn(5, 2, 3, 3, dtype=torch.float64)), ValueError,
     "groups (2 = input channels 4 / weight.shape[1] 2) must divide the output channels (weight.shape[0] = 5)"),
    ("weight channels do not divide input", dict(weight=torch.randn(5, 3, 3, 3, dtype=torch.float64)), ValueError,
     "weight shape [5, 3, 3, 3] does not fit input shape [2, 4, 6, 7]"),
    ("offset height", dict(offset=torch.randn(2, 18, 5, 7, dtype=torch.float64)), ValueError,
     "offset has shape [2, 18, 5, 7]; it must be [2, 18, 6, 7]"),
    ("offset channels", dict(offset=torch.randn(2, 17, 6, 7, dtype=torch.float64)), ValueError,
     "offset has 17 channels (shape [2, 17, 6, 7]); it needs 2 * offset_groups * kh * kw = a positive multiple of 18"),
    ("offset batch", dict(offset=torch.randn(3, 18, 6, 7, dtype=torch.float64)), ValueError, "offset has shape [3, 18, 6, 7]"),
    ("offset groups do not divide channels", dict(offset=torch.randn(2, 54, 6, 7, dtype=torch.float64)), ValueError,
     "offset's 54 channels mean 3 offset groups, which must divide the input channels (4)"),
    ("mask transposed", dict(mask=torch.rand(2, 9, 7, 6, dtype=torch.float64)), ValueError,
     "mask has shape [2, 9, 7, 6]; it must be [2, 9, 6, 7]"),
    ("bias length 1", dict(bias=torch.randn(1, dtype=torch.float64)), ValueError, "bias has shape [1]; it must be [5]"),
    ("stride 0", dict(stride=0), ValueError, "stride must be >= 1, got 0"),
    ("stride -1", dict(stride=-1), ValueError, "stride must be >= 1, got -1"),
    ("dilation 0", dict(dilation=0), ValueError, "dilation must be >= 1, got 0"),
    ("dilation -1", dict(dilation=(1, -1)), ValueError, "dilation must be >= 1, got (1, -1)"),
    ("padding -1", dict(padding=-1), ValueError, "padding must be >= 0, got -1"),
    ("padding of three", dict(padding=(1, 1, 1)), TypeError, "padding must be an int or a pair of ints, got (1, 1, 1)"),
    ("stride a float", dict(stride=1.0), TypeError, "stride must be an int or a pair of ints, got 1.0"),
    ("zero input channels", dict(input=torch.randn(2, 0, 6, 7, dtype=torch.float64)), ValueError,
     "input has shape [2, 0, 6, 7]; channels, height and width must each be at least 1"),
    ("0x0 kernel", dict(weight=torch.randn(5, 4, 0, 0, dtype=torch.float64)), ValueError, "weight shape [5, 4, 0, 0] is empty"),
    ("input height 0", dict(input=torch.randn(2, 4, 0, 7, dtype=torch.float64)), ValueError, "input has shape [2, 4, 0, 7]"),
    ("output smaller than 1x1", dict(input=torch.randn(2, 4, 1, 7, dtype=torch.float64), padding=0), ValueError,
     "input 1x7 with kernel 3x3, stride (1, 1), padding (0, 0) and dilation (1, 1) leaves an output of -1x5; it must be at least 1x1"),
    ("3-d input", dict(input=torch.randn(4, 6, 7, dtype=torch.float64)), ValueError, "input must have 4 dimensions, got shape [4, 6, 7]"),
    ("mixed dtypes", dict(weight=torch.randn(5, 4, 3, 3, dtype=torch.float32)), TypeError,
     "the tensors mix dtypes (input torch.float64, offset torch.float64, weight torch.float32)"),
    ("bfloat16", dict(input=torch.randn(2, 4, 6, 7).bfloat16()), TypeError, "input has dtype torch.bfloat16; every tensor must be float32"),
    ("int64", dict(offset=torch.zeros(2, 18, 6, 7, dtype=torch.int64)), TypeError, "offset has dtype torch.int64"),
    ("not a tensor", dict(weight=[[1.0]]), TypeError, "weight must be a torch.Tensor, got list"),
    ("NaN offset", dict(offset=torch.full((2, 18, 6, 7), float("nan"), dtype=torch.float64)), NonFiniteArgument,
     "offset holds 1512 NaN or infinite value(s) (shape [2, 18, 6, 7]); sampling positions and masks must be finite"),
    ("inf mask", dict(mask=torch.full((2, 9, 6, 7), float("inf"), dtype=torch.float64)), NonFiniteArgument, "mask holds 756 NaN"),
]


@pytest.mark.parametrize("what, change, error, message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_argument_raises_the_same_error_in_every_backend(any_backend, what, change, error, message):
    kwargs = {**args(), **change}
    with pytest.raises(error) as raised:
        deform_conv2d(**kwargs, backend=any_backend)
    assert str(raised.value).startswith("deform_conv2d: " + message), str(raised.value)


def test_an_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'fast'; choose one of torchvision, gather, cpp"):
        deform_conv2d(**args(), backend="fast")


@pytest.mark.slow
@pytest.mark.usefixtures("cpp_kernel")
def test_the_cpp_kernel_itself_refuses_what_would_crash_it():
    """The second line of defence, called directly (bypassing the Python check) in a child process: every
    case must raise a RuntimeError there, never kill the process (SIGFPE, SIGSEGV)."""
    code = """
import torch
from models.deform_ops.cpp import kernel
k = kernel()
x = lambda *s: torch.randn(*s)
cases = {
    "stride 0": (x(1, 6, 7, 4), x(1, 18, 6, 7), None, x(5, 4, 3, 3), None, 0, 1, 1, 1, 1, 1),
    "zero channels": (x(1, 6, 7, 0), x(1, 18, 6, 7), None, x(5, 0, 3, 3), None, 1, 1, 1, 1, 1, 1),
    "0x0 kernel": (x(1, 6, 7, 4), x(1, 18, 6, 7), None, x(5, 4, 0, 0), None, 1, 1, 1, 1, 1, 1),
    "offset channels": (x(1, 6, 7, 4), x(1, 17, 6, 7), None, x(5, 4, 3, 3), None, 1, 1, 1, 1, 1, 1),
    "offset size": (x(1, 6, 7, 4), x(1, 18, 9, 9), None, x(5, 4, 3, 3), None, 1, 1, 1, 1, 1, 1),
    "mask size": (x(1, 6, 7, 4), x(1, 18, 6, 7), x(1, 8, 6, 7), x(5, 4, 3, 3), None, 1, 1, 1, 1, 1, 1),
    "dtype": (x(1, 6, 7, 4), x(1, 18, 6, 7).double(), None, x(5, 4, 3, 3), None, 1, 1, 1, 1, 1, 1),
    "bias": (x(1, 6, 7, 4), x(1, 18, 6, 7), None, x(5, 4, 3, 3), x(1), 1, 1, 1, 1, 1, 1),
}
for name, a in cases.items():
    try:
        k.forward(*a)
        print(name, "ACCEPTED")
    except RuntimeError as e:
        print(name, "refused" if "deform_conv_cpu" in str(e) else "OTHER " + str(e)[:80])
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line.rsplit(" ", 1)[1] for line in proc.stdout.splitlines()] == ["refused"] * 8, proc.stdout


@pytest.mark.parametrize("n, o", [(0, 5), (2, 0)], ids=["empty batch", "zero output channels"])
def test_empty_inputs_give_an_empty_output_and_zero_gradients(any_backend, n, o):
    kwargs = args(n=n, o=o, mask=True)
    tensors = [kwargs[k].requires_grad_() for k in ("input", "offset", "weight", "mask")]
    out = deform_conv2d(**kwargs, backend=any_backend)
    assert out.shape == (n, o, 6, 7)
    grads = torch.autograd.grad(out.sum(), tensors)
    assert [list(g.shape) for g in grads] == [list(t.shape) for t in tensors]
    assert all(not g.any() for g in grads)


@pytest.mark.parametrize("backend", ["gather", "cpp"])
def test_a_graph_of_the_gradient_is_refused_not_wrong(backend, request):
    if backend == "cpp":
        request.getfixturevalue("cpp_kernel")
    kwargs = args()
    x = kwargs["input"].requires_grad_()
    out = deform_conv2d(**kwargs, backend=backend)
    with pytest.raises(RuntimeError, match=f"backend '{backend}'. gives first-order gradients only"):
        torch.autograd.grad(out.square().sum(), x, create_graph=True)
    (g,) = torch.autograd.grad(deform_conv2d(**kwargs, backend=backend).square().sum(), x)  # first order still works
    assert g.shape == x.shape and g.grad_fn is None


def test_torchvision_refuses_double_backward_too():
    kwargs = args()
    x = kwargs["input"].requires_grad_()
    (g,) = torch.autograd.grad(deform_conv2d(**kwargs, backend="torchvision").square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backwards on deform_conv2d not supported"):
        g.sum().backward()


def random_case(rng):
    groups, og = rng.choice([1, 1, 2]), rng.choice([1, 1, 2])
    c = groups * og * rng.randint(1, 3)
    kh, kw = rng.randint(1, 3), rng.randint(1, 3)
    sh, sw, dh, dw = rng.randint(1, 2), rng.randint(1, 2), rng.randint(1, 2), rng.randint(1, 2)
    ph, pw = rng.randint(0, 2), rng.randint(0, 2)
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + rng.randint(0, 5)
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + rng.randint(0, 5)
    return dict(n=rng.randint(1, 3), c=c, h=h, w=w, o=groups * rng.randint(1, 3), groups=groups, og=og, kh=kh, kw=kw,
                stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), mask=rng.random() < 0.5, scale=rng.choice([0.5, 2.0, 6.0]))


def check_against_torchvision(seed, case, backend):
    g = torch.Generator().manual_seed(seed)
    (sh, sw), (ph, pw), (dh, dw) = case["stride"], case["padding"], case["dilation"]
    ho = (case["h"] + 2 * ph - dh * (case["kh"] - 1) - 1) // sh + 1
    wo = (case["w"] + 2 * pw - dw * (case["kw"] - 1) - 1) // sw + 1
    taps = case["kh"] * case["kw"]
    x = torch.randn(case["n"], case["c"], case["h"], case["w"], generator=g, dtype=torch.float64).requires_grad_()
    w = torch.randn(case["o"], case["c"] // case["groups"], case["kh"], case["kw"], generator=g, dtype=torch.float64).requires_grad_()
    off = (torch.randn(case["n"], 2 * case["og"] * taps, ho, wo, generator=g, dtype=torch.float64) * case["scale"]).requires_grad_()
    b = torch.randn(case["o"], generator=g, dtype=torch.float64).requires_grad_()
    m = torch.rand(case["n"], case["og"] * taps, ho, wo, generator=g, dtype=torch.float64).requires_grad_() if case["mask"] else None
    opts = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], mask=m)
    ref = torchvision.ops.deform_conv2d(x, off, w, b, **opts)
    ours = deform_conv2d(x, off, w, b, backend=backend, **opts)
    where = f"case {seed} {case}"
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10, msg=lambda e: f"{where}: {e}")
    inputs = [x, off, w, b] + ([m] if m is not None else [])
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for name, a, r in zip(("input", "offset", "weight", "bias", "mask"), torch.autograd.grad(ours, inputs, grad),
                          torch.autograd.grad(ref, inputs, grad)):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9, msg=lambda e, name=name: f"{where}, d/d{name}: {e}")


@pytest.mark.slow
def test_randomized_shapes_match_torchvision(fast_backend):
    """300 seeded random configurations (groups, offset groups, kernel, stride, padding, dilation, mask,
    points far outside): values and all five gradients equal torchvision's in float64."""
    rng = random.Random(1234)
    for seed in range(300):
        check_against_torchvision(seed, random_case(rng), fast_backend)


def test_the_same_call_gives_bitwise_the_same_result(fast_backend):
    """Determinism at a fixed thread count (README: across thread counts only cpp's weight gradient moves)."""
    def once():
        kwargs = args(n=3, c=8, o=6, mask=True, dtype=torch.float32)
        tensors = [kwargs[k].requires_grad_() for k in ("input", "offset", "weight", "mask")]
        out = deform_conv2d(**kwargs, backend=fast_backend)
        return [out, *torch.autograd.grad(out.sum(), tensors)]

    assert all(torch.equal(a, b) for a, b in zip(once(), once()))
