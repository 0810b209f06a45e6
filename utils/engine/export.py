"""What export_onnx.py runs: a trained checkpoint as a standard ONNX model, checked, and (--verify) run by
ONNX Runtime on the 10,000 test images next to PyTorch.

Deformable layers become standard ONNX `DeformConv` nodes (opset 19), their offsets and masks computed by
the predictor convolutions in the same graph. The route: torch.export traces the network with the cpp
backend, whose op is a registered operator (dcn::deform_conv2d, models/deform_ops/cpp.py), so each layer is
one node; the exporter's custom translation table maps that node to DeformConv, whose inputs (X, W, offset,
B, mask) and layouts are torchvision's. Tracing needs only the op's fake implementation: exporting works
where the C++ kernel cannot be built.
"""
import json
import time
from pathlib import Path

import torch

from models.network import count_parameters, stored_model_args
from utils.engine import data as data_mod
from utils.engine.checkpoint import load_checkpoint, model_from_checkpoint
from utils.engine.device import resolve_backend
from utils.plumbing import errors
from utils.plumbing.errors import UserError
from utils.plumbing.files import atomic_path

OPSET = 19  # the first opset with DeformConv
# Max |logit difference| accepted between ONNX Runtime and PyTorch (float32), per unit of the largest |logit| above 1:
# rounding grows with the logits' scale and the network's depth (ResNet-20's 20 layers reach ~1e-5 of it).
TOLERANCE = 1e-4


def tolerance(logits):
    """The |logit difference| accepted for these PyTorch logits."""
    return TOLERANCE * max(1.0, logits.abs().max().item())


def require(package):
    return errors.require(package, "ONNX export")


def _deform_conv(input, offset, mask, weight, bias, stride, padding, dilation):
    """dcn::deform_conv2d -> ONNX DeformConv (called by the exporter with ONNX values)."""
    op = require("onnxscript").opset19
    taps = weight.shape[2] * weight.shape[3]
    return op.DeformConv(input, weight, offset, bias, mask, dilations=list(dilation), group=input.shape[1] // weight.shape[1],
                         kernel_shape=list(weight.shape[2:]), offset_group=offset.shape[1] // (2 * taps),
                         pads=[padding[0], padding[1], padding[0], padding[1]], strides=list(stride))


def check_output_path(out, overwrite):
    out = Path(out)
    if out.suffix != ".onnx":
        raise UserError(f"--out {out}: the file name must end in .onnx")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist; create it first or pick another path")
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} exists; add --overwrite to replace it or pick another path")
    return out


def export_onnx(checkpoint, out, overwrite=False):
    """Write the checkpoint's network to `out` as ONNX (dynamic batch); returns the PyTorch model (cpp backend)."""
    out = check_output_path(out, overwrite)
    onnx, _ = require("onnx"), require("onnxscript")
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state, checkpoint, backend="cpp").eval()
    example = torch.zeros(2, 3, 32, 32)  # batch 2: a size of 1 would be specialised, not kept symbolic
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET, input_names=["images"], output_names=["logits"],
                                    custom_translation_table={torch.ops.dcn.deform_conv2d.default: _deform_conv},
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    except Exception as e:  # noqa: BLE001 -- the exporter raises many kinds; one line says which and why
        raise UserError(f"exporting {checkpoint} to ONNX failed ({type(e).__name__}: {str(e).splitlines()[0][:300]})")
    proto = program.model_proto
    metadata = {"variant": state["model_args"]["variant"], "model_args": json.dumps(stored_model_args(state["model_args"])), "checkpoint": str(checkpoint),
                "input": "images: float32 [N, 3, 32, 32], RGB in 0..1 (the model standardizes them itself unless model_args says inputs unit)",
                "classes": json.dumps(data_mod.CLASSES)}
    onnx.helper.set_model_props(proto, metadata)
    # Checked before it gets its name: an invalid or interrupted export leaves no .onnx file behind.
    with atomic_path(out) as tmp:
        onnx.save(proto, tmp)
        onnx.checker.check_model(tmp, full_check=True)
    nodes = [n.op_type for n in proto.graph.node]
    print(f"wrote {out}: {state['model_args']['variant']} ({count_parameters(model):,} parameters), opset {OPSET}, "
          f"{len(nodes)} nodes ({nodes.count('DeformConv')} DeformConv), dynamic batch; onnx.checker (full check) passed")
    return model


def verify(out, model, data_dir, batch_size=500, download=False):
    """Run the 10,000 test images through ONNX Runtime (CPU) and PyTorch; their logits must agree within the
    tolerance, batch by batch. Returns the figures it prints."""
    ort = require("onnxruntime")
    test_set = data_mod.load_cifar10(data_dir, train=False, download=download)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as PyTorch, for a fair time
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    backend = resolve_backend("auto", torch.device("cpu"), model.variant)
    for conv in model.deformable_convs():
        conv.backend = backend  # the reference: the op this machine would train with
    seconds = {"onnxruntime": 0.0, "pytorch": 0.0}
    ours, theirs, worst, share = [], [], 0.0, 0.0  # share: the largest |logit difference| of a batch over its tolerance
    for images, _ in data_mod.Batches(test_set, batch_size, torch.device("cpu")):
        start = time.perf_counter()
        onnx_logits = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
        seconds["onnxruntime"] += time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            torch_logits = model(images)
        seconds["pytorch"] += time.perf_counter() - start
        difference = (onnx_logits - torch_logits).abs().max().item()
        worst, share = max(worst, difference), max(share, difference / tolerance(torch_logits))
        theirs.append(onnx_logits.argmax(1))
        ours.append(torch_logits.argmax(1))
    theirs, ours, labels = torch.cat(theirs), torch.cat(ours), test_set.labels
    result = {"images": len(labels), "max_abs_logit_difference": worst, "onnxruntime_accuracy": int((theirs == labels).sum()) / len(labels),
              "pytorch_accuracy": int((ours == labels).sum()) / len(labels), "predictions_differing": int((theirs != ours).sum()),
              "onnxruntime_images_per_s": len(labels) / seconds["onnxruntime"], "pytorch_images_per_s": len(labels) / seconds["pytorch"],
              "pytorch_backend": backend, "onnxruntime": ort.__version__}
    print(f"verify on {result['images']:,} test images: ONNX Runtime accuracy {result['onnxruntime_accuracy']:.4f}, PyTorch ({backend or 'no deformable op'}) "
          f"{result['pytorch_accuracy']:.4f}; {result['predictions_differing']} predictions differ; max |logit difference| {worst:.2e} "
          f"({share:.2f} of the tolerance, {TOLERANCE:g} x the largest |logit| of its batch, at least 1); "
          f"{result['onnxruntime_images_per_s']:,.0f} vs {result['pytorch_images_per_s']:,.0f} images/s")
    # Beyond the tolerance is a wrong export; within it, a differing prediction can only be a near-tie of two logits.
    if share > 1:
        raise UserError(f"--verify: ONNX Runtime and PyTorch disagree on {out} (max |logit difference| {worst:.2e}, {share:.1f} times the tolerance, "
                        f"{result['predictions_differing']} predictions differ); the exported file is kept for inspection")
    return result
