"""On a CUDA machine: the op's backends agree there (values and every gradient), its argument rules hold for
GPU tensors, the models compute on the GPU what they compute on the CPU, and train -> test runs end to end
with device "cuda" and its checkpoint tests the same on the CPU. Skipped where no GPU is present (CI);
run by hand on a GPU machine: `python -m pytest tests/test_cuda.py -q`."""
import json

import pytest
import torch
import torchvision
from conftest import make_test_config, make_train_config, run_script, write_config
from test_deform_ops import CASES, both, random_inputs

from models.deform_ops import NonFiniteArgument, deform_conv2d
from models.factory import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def on_cuda(tensors):
    return [t.detach().cuda().requires_grad_() for t in tensors]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("scale", [0.0, 0.7, 4.0])
def test_gather_matches_torchvision_cuda_float64(case, mask, scale):
    """gather on the GPU against torchvision's native CUDA kernel, and that kernel against its CPU one."""
    cpu_tensors, opts = random_inputs(case, mask, torch.float64, scale)
    tensors = on_cuda(cpu_tensors)
    ref, ours = both(tensors, opts, "gather")
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref)
    g_refs = torch.autograd.grad(ref, tensors, grad)
    for g_ref, g_ours in zip(g_refs, torch.autograd.grad(ours, tensors, grad)):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-9)
    x, off, weight, bias, *m = cpu_tensors
    ref_cpu = torchvision.ops.deform_conv2d(x, off, weight, bias, mask=m[0] if m else None, **opts)
    torch.testing.assert_close(ref.cpu(), ref_cpu, rtol=1e-10, atol=1e-10)
    for g_gpu, g_cpu in zip(g_refs, torch.autograd.grad(ref_cpu, cpu_tensors, grad.cpu())):
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mask", [False, True])
def test_float32_on_cuda_is_close_to_float64(mask):
    """float32 on the GPU (TF32 may be used by the GEMM) stays within 1e-2 relative of the float64 result."""
    tensors, opts = random_inputs((8, 64, 16, 16, 128, 3, 1, 1, 1, 1, 1), mask, torch.float64, 1.5)
    x, off, weight, bias, *m = tensors
    exact = torchvision.ops.deform_conv2d(x, off, weight, bias, mask=m[0] if m else None, **opts).cuda()
    x, off, weight, bias, *m = on_cuda([t.float() for t in tensors])
    for backend in ("gather", "torchvision"):
        out = deform_conv2d(x, off, weight, bias, mask=m[0] if m else None, backend=backend, **opts)
        assert ((out.double() - exact).abs().max() / exact.abs().max()).item() < 1e-2, backend


def test_argument_rules_hold_for_gpu_tensors():
    tensors, opts = random_inputs(CASES[0], True, torch.float32, 0.7)
    x, off, w, b, m = on_cuda(tensors)
    with pytest.raises(ValueError, match="different devices"):
        deform_conv2d(x, off, w.detach().cpu(), b, mask=m, **opts)
    with pytest.raises(ValueError, match="cpp backend runs on the CPU only"):
        deform_conv2d(x, off, w, b, mask=m, backend="cpp", **opts)
    for backend in ("gather", "torchvision"):
        bad = off.detach().clone()
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(NonFiniteArgument, match="offset holds 1 NaN"):
            deform_conv2d(x, bad, w, b, mask=m, backend=backend, **opts)
        empty = deform_conv2d(x[:0], off[:0], w, b, mask=m[:0], backend=backend, **opts)
        assert empty.shape[0] == 0 and empty.is_cuda


@pytest.mark.parametrize("variant", ["Conv2d", "DeformConv2d", "DeformConv2dv2"])
@pytest.mark.parametrize("backend", ["gather", "torchvision"])
def test_model_on_cuda_computes_what_it_computes_on_cpu(variant, backend):
    torch.manual_seed(0)
    model = build_model(variant, [8, 16], backend=backend).double()
    for p in model.parameters():  # predictors away from zero, so the sampling really moves
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    cpu_out = model.eval()(x)
    gpu_out = model.cuda()(x.cuda())
    torch.testing.assert_close(gpu_out.cpu(), cpu_out, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variant", ["Conv2d", "DeformConv2dv2"])
def test_train_on_cuda_then_test_on_cuda_and_cpu(tmp_path, synthetic_data, variant):
    assert run_script("train", variant, write_config(tmp_path / "train.json", make_train_config(tmp_path, variant, device="cuda"))) == 0
    history = json.loads((tmp_path / "run" / "train" / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = {}
    for device in ("cuda", "cpu"):
        cfg = make_test_config(tmp_path, device=device, outdir=str(tmp_path / device))
        assert run_script("test", variant, write_config(tmp_path / f"test_{device}.json", cfg)) == 0
        metrics[device] = json.loads((tmp_path / device / "test" / "metrics.json").read_text())
    assert metrics["cuda"]["test_images"] == metrics["cpu"]["test_images"] == 50
    # Same weights on two devices: the same loss up to float32 rounding, and at most one prediction flipped.
    assert metrics["cuda"]["loss"] == pytest.approx(metrics["cpu"]["loss"], rel=1e-3)
    assert abs(metrics["cuda"]["accuracy"] - metrics["cpu"]["accuracy"]) <= 1 / 50
