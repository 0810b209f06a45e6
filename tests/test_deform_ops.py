"""The "gather" and "cpp" ops against torchvision's deform_conv2d: values and every gradient, many shapes;
the `auto` rule and the fall-back when the C++ kernel cannot be built."""
import os
import subprocess
import sys

import pytest
import torch
import torchvision
from conftest import ROOT

from models.deform_ops import cpp, deform_conv2d
from models.factory import build_model
from utils.engine.device import backend_note, resolve_backend
from utils.plumbing.errors import UserError

# Both fast ops (the fast_backend fixture), everywhere below: the cpp cases skip only on a machine without
# a C++ compiler, and fail where one exists but the kernel does not build (conftest.cpp_kernel).

CASES = [
    # N, C, H, W, O, k, stride, pad, dil, offset_groups, weight_groups
    (2, 4, 7, 6, 5, 3, 1, 1, 1, 1, 1),
    (1, 6, 9, 8, 4, 3, 2, 1, 2, 3, 1),
    (2, 4, 5, 5, 6, 1, 1, 0, 1, 2, 1),
    (1, 8, 6, 7, 4, 3, 1, 2, 1, 2, 2),
    (3, 3, 8, 8, 4, 2, 2, 0, 1, 1, 1),
    (2, 4, 10, 9, 3, 3, 3, 1, 3, 4, 1),
]


def random_inputs(case, mask, dtype, scale, seed=0):
    n, c, h, w, o, k, s, p, d, og, wg = case
    g = torch.Generator().manual_seed(seed)
    ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    # Large offsets push many sampling points outside the image (and some far outside).
    off = torch.randn(n, 2 * og * k * k, ho, wo, generator=g, dtype=dtype) * scale
    weight = torch.randn(o, c // wg, k, k, generator=g, dtype=dtype)
    bias = torch.randn(o, generator=g, dtype=dtype)
    m = torch.rand(n, og * k * k, ho, wo, generator=g, dtype=dtype) if mask else None
    tensors = [t.requires_grad_() for t in (x, off, weight, bias, m) if t is not None]
    return tensors, dict(stride=(s, s), padding=(p, p), dilation=(d, d))


def both(tensors, opts, backend):
    x, off, weight, bias, *m = tensors
    m = m[0] if m else None
    ref = torchvision.ops.deform_conv2d(x, off, weight, bias, mask=m, **opts)
    ours = deform_conv2d(x, off, weight, bias, mask=m, backend=backend, **opts)
    return ref, ours


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("scale", [0.0, 0.7, 4.0])
def test_matches_torchvision_float64(fast_backend, case, mask, scale):
    backend = fast_backend
    tensors, opts = random_inputs(case, mask, torch.float64, scale)
    ref, ours = both(tensors, opts, backend)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref)
    for g_ref, g_ours in zip(torch.autograd.grad(ref, tensors, grad), torch.autograd.grad(ours, tensors, grad)):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mask", [False, True])
def test_matches_torchvision_float32_relative(fast_backend, mask):
    backend = fast_backend
    tensors, opts = random_inputs((4, 16, 12, 12, 24, 3, 1, 1, 1, 1, 1), mask, torch.float32, 1.5)
    ref, ours = both(tensors, opts, backend)
    rel = (ours - ref).abs().max() / ref.abs().max()
    assert rel < 1e-4
    grad = torch.randn_like(ref)
    for g_ref, g_ours in zip(torch.autograd.grad(ref, tensors, grad), torch.autograd.grad(ours, tensors, grad)):
        assert (g_ours - g_ref).abs().max() / g_ref.abs().max().clamp_min(1e-12) < 1e-4


@pytest.mark.parametrize("batch", [1, 3])
def test_cpp_forward_splits_few_images_between_threads(cpp_kernel, batch):
    """With fewer images than threads the kernel cuts an image into blocks (one per thread). The output is
    torchvision's at 1 and at 2 threads, and bitwise the same on a repeat at the same thread count (what
    --resume needs); across thread counts it may differ in the last bits (another GEMM split)."""
    tensors, opts = random_inputs((batch, 8, 11, 9, 6, 3, 1, 1, 1, 1, 1), True, torch.float64, 1.5)
    saved = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ref, ours = both(tensors, opts, "cpp")
            torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
            assert torch.equal(ours, both(tensors, opts, "cpp")[1])
    finally:
        torch.set_num_threads(saved)


def test_cpp_images_larger_than_one_block_match(cpp_kernel):
    """An image whose columns exceed the kernel's block (2^22 entries: here 96x96 pixels x 64 channels x 9
    taps = 5.3 M) is done in several blocks, forward and backward: still torchvision's values and gradients."""
    tensors, opts = random_inputs((1, 64, 96, 96, 4, 3, 1, 1, 1, 1, 1), True, torch.float64, 1.5)
    ref, ours = both(tensors, opts, "cpp")
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref)
    for g_ref, g_ours in zip(torch.autograd.grad(ref, tensors, grad), torch.autograd.grad(ours, tensors, grad)):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-9)


def test_integer_sampling_points_on_the_border_match(fast_backend):
    backend = fast_backend
    # Zero offsets put taps exactly on -1 and H: the border rule must agree there too (gradients included).
    tensors, opts = random_inputs((2, 3, 5, 5, 2, 3, 1, 1, 1, 1, 1), True, torch.float64, 0.0)
    tensors[1].data.round_()
    ref, ours = both(tensors, opts, backend)
    for g_ref, g_ours in zip(torch.autograd.grad(ref.sum(), tensors), torch.autograd.grad(ours.sum(), tensors)):
        torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("mask", [False, True])
def test_gradcheck_float64(fast_backend, mask):
    backend = fast_backend
    tensors, opts = random_inputs((1, 2, 4, 4, 2, 3, 1, 1, 1, 1, 1), mask, torch.float64, 0.6, seed=3)
    x, off, weight, bias, *m = tensors

    def fn(x, off, weight, bias, *m):
        return deform_conv2d(x, off, weight, bias, mask=m[0] if m else None, backend=backend, **opts)

    assert torch.autograd.gradcheck(fn, tuple(tensors), eps=1e-6, atol=1e-5)


def test_auto_backend_rule():
    assert resolve_backend("auto", "cpu") == ("cpp" if cpp.kernel() is not None else "gather")
    assert resolve_backend("auto", "cuda") == "torchvision"
    assert resolve_backend("torchvision", "cpu") == "torchvision"
    with pytest.raises(UserError, match="CPU only"):
        resolve_backend("cpp", "cuda")


def test_a_kernel_that_cannot_be_built_falls_back_to_gather(monkeypatch):
    monkeypatch.setattr(cpp, "_state", {"error": "c++: command not found"})
    assert resolve_backend("auto", "cpu") == "gather"
    assert "could not be built: c++: command not found" in backend_note("gather")
    assert resolve_backend("auto", "cpu", "Conv2d") is None and backend_note(None) == ""  # Conv2d: nothing to build
    with pytest.raises(UserError, match='"cpp" could not be built here .*use "auto" or "gather"'):
        resolve_backend("cpp", "cpu")


@pytest.mark.slow
def test_a_failing_compiler_is_caught_not_raised(tmp_path):
    # A real build attempt with a compiler that always fails, in a fresh extension directory.
    env = dict(os.environ, CXX="false", TORCH_EXTENSIONS_DIR=str(tmp_path))
    code = ("from models.deform_ops import cpp; from utils.engine.device import resolve_backend; "
            "k = cpp.kernel(); print(k is None, resolve_backend('auto', 'cpu'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "gather"]


@pytest.mark.parametrize("variant", ["DeformConv2d", "DeformConv2dv2"])
def test_checkpoint_moves_between_backends(variant, any_backend):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    model = build_model(variant, [4, 8], backend="gather")
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    for _ in range(3):  # a few steps so that offsets (and masks) are no longer zero
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert model.features[0].offset.weight.abs().sum() > 0
    model.eval()
    other = build_model(variant, [4, 8], backend=any_backend)
    other.load_state_dict(model.state_dict())
    other.eval()
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), rtol=1e-4, atol=1e-5)
