"""Evaluation of a model on a set of images: loss, exact accuracy, confusion matrix."""
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


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
