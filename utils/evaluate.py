"""Evaluation (loss, exact accuracy, confusion matrix) and the test-script flow."""
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import MODEL_NAMES, count_parameters
from utils import data as data_mod
from utils.checkpoint import load_checkpoint, model_from_checkpoint
from utils.device import backend_note, resolve_backend, resolve_device
from utils.files import write_json
from utils.plotting import plot_confusion


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


def run_test(cfg):
    """Evaluate the checkpoint named in a TestConfig on the 10,000 official test images."""
    device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.dcn_backend, device, cfg.model_type)
    state = load_checkpoint(cfg.model)  # before loading data: a bad checkpoint fails fast
    model = model_from_checkpoint(state, cfg.model, cfg.model_type, cfg.conv_ch, backend).to(device)
    test_set = data_mod.load_cifar10(cfg.data_dir, train=False, download=cfg.download)
    name = MODEL_NAMES[cfg.model_type]
    print(f"testing {name} ({count_parameters(model):,} parameters) from {cfg.model} on {len(test_set):,} test images, {device}{backend_note(backend)}")
    result = evaluate(model, data_mod.Batches(test_set, cfg.batch_size, device))
    out = Path(cfg.outdir) / "test"
    metrics = {
        "model_type": cfg.model_type,
        "model_name": name,
        "checkpoint": str(cfg.model),
        "checkpoint_epoch": state.get("epoch"),
        "conv_ch": list(cfg.conv_ch),
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
    existed = (out / "metrics.json").exists()
    write_json(out / "metrics.json", metrics)
    plot_confusion(result.confusion, data_mod.CLASSES, out / "confusion_matrix.png", f"{name}: test accuracy {result.accuracy:.4f}")
    print(f"test accuracy {result.accuracy:.4f} ({int(np.trace(result.confusion))}/{result.images}), loss {result.loss:.4f}")
    print(f"wrote {out}/metrics.json and confusion_matrix.png" + (" (replacing the previous test results)" if existed else ""))
    return metrics
