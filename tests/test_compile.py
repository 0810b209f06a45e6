"""The cpp kernel as a registered PyTorch operator (dcn::deform_conv2d): torch.library.opcheck, torch.compile
with fullgraph=True (no graph break) agreeing with eager execution, torch.export, and compiled training."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import make_train_config, run_script, write_config

from models.deform_ops import NonFiniteArgument, deform_conv2d
from models.deform_ops.cpp import fused_deform_conv2d, fused_deform_conv2d_backward
from models.factory import build_model

pytestmark = pytest.mark.usefixtures("cpp_kernel")

# (batch, channels, height, width, out channels, kernel, stride, padding, dilation, offset groups, groups, mask, bias)
SHAPES = [
    (2, 4, 6, 7, 5, 3, 1, 1, 1, 1, 1, True, True),
    (1, 3, 5, 5, 4, 3, 1, 1, 1, 1, 1, False, False),
    (2, 4, 8, 6, 4, 3, 2, 1, 1, 2, 1, True, True),
    (2, 4, 7, 7, 6, 3, 1, 2, 2, 1, 2, True, False),
    (3, 2, 4, 5, 3, 1, 1, 0, 1, 1, 1, False, True),
]


def op_arguments(shape, dtype=torch.float64, requires_grad=True):
    n, c, h, w, o, k, s, p, d, og, g, with_mask, with_bias = shape
    ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    make = lambda *size, fn=torch.randn: fn(*size, dtype=dtype).requires_grad_(requires_grad)  # noqa: E731
    return (make(n, c, h, w), make(n, 2 * og * k * k, ho, wo), make(n, og * k * k, ho, wo, fn=torch.rand) if with_mask else None,
            make(o, c // g, k, k), make(o) if with_bias else None, [s, s], [p, p], [d, d])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_opcheck_forward(shape, dtype):
    torch.manual_seed(0)
    torch.library.opcheck(fused_deform_conv2d, op_arguments(shape, dtype))  # raises on any failed check


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_opcheck_backward(shape):
    torch.manual_seed(0)
    input, offset, mask, weight, _, stride, padding, dilation = op_arguments(shape, requires_grad=False)
    grad_out = torch.randn(input.shape[0], weight.shape[0], *offset.shape[2:], dtype=input.dtype)
    for need_input in (True, False):
        torch.library.opcheck(fused_deform_conv2d_backward, (grad_out, input, offset, mask, weight, stride, padding, dilation, need_input))


def perturbed_model(variant, dtype=torch.float64):
    """A small network with non-zero offsets (the predictors start at zero, which would hide sampling errors)."""
    torch.manual_seed(0)
    model = build_model(variant, [8, 16], backend="cpp").to(dtype)
    with torch.no_grad():
        for conv in model.deformable_convs():
            for p in conv.predictor_parameters():
                p.normal_(0, 0.3)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["DeformConv2d", "DeformConv2dv2"])
def test_fullgraph_compile_matches_eager(variant):
    eager = perturbed_model(variant)
    compiled_copy = copy.deepcopy(eager)
    compiled = torch.compile(compiled_copy, fullgraph=True)  # fullgraph: a graph break would raise here
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.arange(4)
    for run in (eager, compiled):
        out = run(x)
        F.cross_entropy(out, y).backward()
        run.last_out = out
    torch.testing.assert_close(compiled.last_out, eager.last_out, rtol=1e-5, atol=1e-8)
    for (name, p), q in zip(eager.named_parameters(), compiled_copy.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-8, msg=f"gradient of {name}")


@pytest.mark.slow
def test_compiled_op_still_refuses_non_finite_offsets():
    weight = torch.randn(4, 2, 3, 3)
    run = torch.compile(lambda x, off: deform_conv2d(x, off, weight, padding=1, backend="cpp"), fullgraph=True)
    x, offset = torch.randn(1, 2, 5, 5), torch.zeros(1, 18, 5, 5)
    torch.testing.assert_close(run(x, offset), F.conv2d(x, weight, padding=1), rtol=1e-5, atol=1e-5)  # zero offsets = plain conv
    offset[0, 3, 2, 2] = float("nan")
    with pytest.raises(NonFiniteArgument, match="offset holds 1 NaN"):
        run(x, offset)


def test_export_keeps_one_operator_node_per_deformable_layer():
    model = perturbed_model("DeformConv2dv2", torch.float32).eval()
    x = torch.randn(2, 3, 16, 16)
    program = torch.export.export(model, (x,))
    nodes = [n for n in program.graph.nodes if n.op == "call_function" and n.target is torch.ops.dcn.deform_conv2d.default]
    assert len(nodes) == len(model.deformable_convs()) == 2
    torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.slow
def test_compiled_training_follows_eager_training(tmp_path, synthetic_data):
    losses = {}
    for compiled in (False, True):
        cfg = make_train_config(tmp_path / str(compiled), "DeformConv2dv2", num_epoch=1, dcn_backend="cpp", compile=compiled)
        assert run_script("train", "DeformConv2dv2", write_config(tmp_path / f"{compiled}.json", cfg)) == 0
        history = json.loads((tmp_path / str(compiled) / "run" / "train" / "history.json").read_text())
        losses[compiled] = [history[0]["train_loss"], history[0]["val_loss"]]
    # Same data order and initial weights; float32 sums in another order drift apart slowly over the steps.
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)
