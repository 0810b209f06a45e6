"""ONNX export: standard DeformConv nodes that ONNX Runtime runs with PyTorch's logits, a dynamic batch,
--verify on test images, and bad input refused in one line with nothing written."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, synthetic_set

from models.factory import build_model
from utils.engine import export as export_mod
from utils.engine.checkpoint import save_weights
from utils.engine.data import to_unit
from utils.plumbing.errors import UserError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def trained_looking_checkpoint(path, variant, network="convnet"):
    """Weights with non-zero offset and mask predictors (fresh ones are zero, which would hide a wrong layout)."""
    torch.manual_seed(0)
    model = build_model(variant, [8, 16] if network == "convnet" else [4, 8, 16], network=network)
    with torch.no_grad():
        for conv in model.deformable_convs():
            for p in conv.predictor_parameters():
                p.normal_(0, 0.3)
    save_weights(path, model.model_args, model.state_dict(), 1, {})
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("variant, network, deform_convs", [("Conv2d", "convnet", 0), ("DeformConv2d", "convnet", 2), ("DeformConv2dv2", "convnet", 2),
                                                      ("DeformConv2dv2-last", "convnet", 1),
                                                      ("DeformConv2dv2", "resnet20", 6)])  # its last stage: stride 2, option-A shortcuts
def test_onnx_runtime_gives_pytorch_logits_at_any_batch_size(tmp_path, variant, network, deform_convs):
    model = trained_looking_checkpoint(tmp_path / "w.pth", variant, network)
    export_mod.export_onnx(tmp_path / "w.pth", tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == export_mod.OPSET and all(o.domain in ("", "ai.onnx") for o in proto.opset_import)
    assert [n.op_type for n in proto.graph.node].count("DeformConv") == deform_convs  # standard nodes, no custom domain
    assert {p.key: p.value for p in proto.metadata_props}["variant"] == variant
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        images = torch.randn(batch, 3, 32, 32)
        logits = session.run(None, {"images": images.numpy()})[0]
        with torch.no_grad():
            expected = model(images).numpy()
        assert logits.shape == (batch, 10) and np.abs(logits - expected).max() <= export_mod.tolerance(torch.from_numpy(expected))


def test_verify_compares_accuracy_image_by_image(tmp_path, synthetic_data, capsys):
    trained_looking_checkpoint(tmp_path / "w.pth", "DeformConv2dv2")
    model = export_mod.export_onnx(tmp_path / "w.pth", tmp_path / "m.onnx")
    result = export_mod.verify(tmp_path / "m.onnx", model, str(tmp_path), batch_size=16)
    assert result["images"] == 50 and result["predictions_differing"] == 0 and result["max_abs_logit_difference"] <= 1e-4
    assert result["onnxruntime_accuracy"] == result["pytorch_accuracy"]
    labels = synthetic_set(50, seed=2).labels
    with torch.no_grad():
        predictions = model(to_unit(synthetic_set(50, seed=2).images, "cpu")).argmax(1)
    assert result["pytorch_accuracy"] == int((predictions == labels).sum()) / 50  # the accuracy of these very images
    assert "verify on 50 test images: ONNX Runtime accuracy" in capsys.readouterr().out
    # A file that computes something else is refused: logits 1e-3 x their scale apart are beyond the tolerance.
    with torch.no_grad():
        model.classifier.bias += 1e-3 * model(to_unit(synthetic_set(50, seed=2).images, "cpu")).abs().max()
    with pytest.raises(UserError, match="ONNX Runtime and PyTorch disagree .* times the tolerance"):
        export_mod.verify(tmp_path / "m.onnx", model, str(tmp_path), batch_size=16)


def export_cli(*args):
    return subprocess.run([sys.executable, "export_onnx.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    trained_looking_checkpoint(tmp_path / "w.pth", "DeformConv2d")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    (tmp_path / "taken.onnx").write_text("mine")
    cases = [
        (("--checkpoint", tmp_path / "other.pth", "--out", tmp_path / "m.onnx"), "is not a checkpoint written by this tool"),
        (("--checkpoint", tmp_path / "w.pth", "--out", tmp_path / "missing" / "m.onnx"), f"the folder {tmp_path / 'missing'} does not exist"),
        (("--checkpoint", tmp_path / "w.pth", "--out", tmp_path / "taken.onnx"), "exists; add --overwrite to replace it"),
        (("--checkpoint", tmp_path / "w.pth", "--out", tmp_path / "m.txt"), "the file name must end in .onnx"),
    ]
    for args, message in cases:
        done = export_cli(*args)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pth", "taken.onnx", "w.pth"] and (tmp_path / "taken.onnx").read_text() == "mine"


@pytest.mark.slow
def test_an_interrupted_export_leaves_no_onnx_file(tmp_path, monkeypatch):
    trained_looking_checkpoint(tmp_path / "w.pth", "DeformConv2dv2")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx.checker, "check_model", interrupted)  # after the file is written, before it is named
    with pytest.raises(KeyboardInterrupt):
        export_mod.export_onnx(tmp_path / "w.pth", tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


def test_a_missing_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an import of a package that is not installed meets
    with pytest.raises(UserError, match="needs the Python package 'onnxruntime', which is not installed here; run: pip install -r requirements.txt"):
        export_mod.require("onnxruntime")


@pytest.mark.slow
def test_export_needs_no_compiled_kernel(tmp_path, monkeypatch):
    from models.deform_ops import cpp

    monkeypatch.setattr(cpp, "_state", {"error": "no compiler"})  # as on a machine without g++
    trained_looking_checkpoint(tmp_path / "w.pth", "DeformConv2d")
    export_mod.export_onnx(tmp_path / "w.pth", tmp_path / "m.onnx")
    assert [n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node].count("DeformConv") == 2
