"""What test_<Model>.py runs: a checkpoint evaluated on the 10,000 official test images (and, for the
robustness report, on transformed copies of them), written to the run's test/ folder."""
import numpy as np
import torch

from models.network import count_parameters
from models.registry import VARIANTS
from utils.engine import data as data_mod
from utils.engine.checkpoint import check_model_args, load_checkpoint, model_from_checkpoint
from utils.engine.device import backend_note, resolve_backend, resolve_device
from utils.engine.evaluate import evaluate
from utils.engine.plots import plot_confusion
from utils.engine.robustness import robustness
from utils.plumbing.errors import UserError
from utils.plumbing.files import write_json
from utils.plumbing.runs import RunLayout, describe_host


def run_test(cfg, script_variant=None):
    """Evaluate the checkpoint a TestConfig names on the 10,000 official test images. The checkpoint says
    which variant and widths it holds; `variant`/`conv_ch` in the config, when given, are checked against
    it, and a test_<Model>.py script (`script_variant`) only tests the variants it runs."""
    state = load_checkpoint(cfg.model)  # before loading data: a bad checkpoint fails fast
    check_model_args(state, cfg.model, {"variant": cfg.variant, "conv_ch": cfg.conv_ch}, "the config")
    name = state["model_args"]["variant"]
    if script_variant is not None and VARIANTS[name].script != script_variant:
        script = VARIANTS[name].script
        raise UserError(f"checkpoint {cfg.model} holds a {name} model; test it with test_{script}.py, not test_{script_variant}.py")
    device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.dcn_backend, device, name)
    model = model_from_checkpoint(state, cfg.model, backend).to(device)
    test_set = data_mod.load_cifar10(cfg.data_dir, train=False, download=cfg.download)
    print(f"testing {name} ({count_parameters(model):,} parameters) from {cfg.model} on {len(test_set):,} test images, {device}{backend_note(backend)}")
    result = evaluate(model, data_mod.Batches(test_set, cfg.batch_size, device))
    run = RunLayout(cfg.outdir) if cfg.outdir else RunLayout.of_checkpoint(cfg.model)
    metrics = {
        "variant": name,
        "model_args": state["model_args"],
        "checkpoint": str(cfg.model),
        "checkpoint_epoch": state.get("epoch"),
        "parameters": count_parameters(model),
        "test_images": result.images,
        "accuracy": result.accuracy,
        "loss": result.loss,
        "per_class_accuracy": dict(zip(data_mod.CLASSES, result.per_class_accuracy())),
        "confusion_matrix": result.confusion.tolist(),
        "images_per_second": result.images / result.seconds,
        "device": str(device),
        "dcn_backend": backend,
        # Where it was tested: images/s depend on the machine, and the rotated copies' bytes do too (robustness.py).
        "host": describe_host(device, torch.get_num_threads()),
    }
    if cfg.robustness:
        metrics["robustness"] = robustness(model, test_set, cfg.batch_size, device, cfg.robustness_images)
        shown = ", ".join(f"{name} {acc:.3f}" for name, acc in metrics["robustness"]["accuracy"].items())
        print(f"robustness on {metrics['robustness']['images']:,} test images: {shown}")
    existed = run.metrics.exists()
    write_json(run.metrics, metrics)
    plot_confusion(result.confusion, data_mod.CLASSES, run.confusion_png, f"{name}: test accuracy {result.accuracy:.4f}")
    print(f"test accuracy {result.accuracy:.4f} ({int(np.trace(result.confusion))}/{result.images}), loss {result.loss:.4f}")
    print(f"wrote {run.metrics} and {run.confusion_png.name}" + (" (replacing the previous test results)" if existed else ""))
    return metrics
