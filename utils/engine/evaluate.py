"""Evaluation (loss, exact accuracy, confusion matrix) and the test-script flow."""
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.network import count_parameters
from models.registry import VARIANTS
from utils.engine import data as data_mod
from utils.engine.checkpoint import check_model_args, load_checkpoint, model_from_checkpoint
from utils.engine.device import backend_note, resolve_backend, resolve_device
from utils.engine.plots import plot_confusion
from utils.plumbing.errors import UserError
from utils.plumbing.files import write_json
from utils.plumbing.runs import RunLayout


@dataclass
class Evaluation:
    loss: float  # mean cross-entropy per image
    accuracy: float  # correct / number of images (exact, whatever the last batch size)
    confusion: np.ndarray  # [true, predicted] counts
    images: int
    seconds: float

    def per_class_accuracy(self):
        return (np.diag(self.confusion) / np.maximum(self.confusion.sum(1), 1)).tolist()


@torch.no_grad()
def evaluate(model, batches, num_classes=10):
    model.eval()
    loss_sum, n = 0.0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    start = time.perf_counter()
    for images, labels in batches:
        logits = model(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        pred = logits.argmax(1)
        confusion += torch.bincount((labels * num_classes + pred).cpu(), minlength=num_classes**2).view(num_classes, num_classes)
        n += labels.numel()
    correct = int(confusion.diag().sum())
    return Evaluation(loss_sum / max(n, 1), correct / max(n, 1), confusion.numpy(), n, time.perf_counter() - start)


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
    }
    existed = run.metrics.exists()
    write_json(run.metrics, metrics)
    plot_confusion(result.confusion, data_mod.CLASSES, run.confusion_png, f"{name}: test accuracy {result.accuracy:.4f}")
    print(f"test accuracy {result.accuracy:.4f} ({int(np.trace(result.confusion))}/{result.images}), loss {result.loss:.4f}")
    print(f"wrote {run.metrics} and {run.confusion_png.name}" + (" (replacing the previous test results)" if existed else ""))
    return metrics
