"""Figures, written atomically as PNG. The Agg backend: no screen is needed."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from utils.files import atomic_path  # noqa: E402


def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_loss(history, path, title):
    """Training and validation loss per epoch (history: list of per-epoch dicts)."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="training")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    save_figure(fig, path)


def plot_confusion(matrix, classes, path, title):
    """Row-normalised confusion matrix (rows: true class), with counts in the cells."""
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    ax.set_title(title)
    save_figure(fig, path)


MODEL_COLORS = {"Conv2d": "tab:blue", "DeformConv2d": "tab:orange", "DeformConv2dv2": "tab:green"}


def plot_comparison_loss(runs, path, protocol):
    """Training (solid) and validation (dashed) loss of every model: mean over seeds, band = min..max."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rs in runs.items():
        epochs = [h["epoch"] for h in rs[0]["history"]]
        for key, style, label in (("train_loss", "-", "train"), ("val_loss", "--", "val")):
            curves = np.array([[h[key] for h in r["history"]] for r in rs if len(r["history"]) == len(epochs)])
            color = MODEL_COLORS.get(name)
            ax.plot(epochs, curves.mean(0), style, color=color, marker="o", ms=3, label=f"{name} {label}")
            if len(curves) > 1:
                ax.fill_between(epochs, curves.min(0), curves.max(0), color=color, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(f"Loss per epoch, mean over seeds (band: min-max) [{protocol}]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    save_figure(fig, path)


def plot_comparison_accuracy(rows, path, protocol):
    """Test accuracy per model: mean with ± std error bars, every seed as a dot."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for i, r in enumerate(rows):
        color = MODEL_COLORS.get(r["model"])
        std = 0 if np.isnan(r["test_accuracy_std"]) else r["test_accuracy_std"]
        ax.bar(i, r["test_accuracy_mean"], yerr=std, color=color, alpha=0.6, capsize=6)
        ax.scatter([i] * len(r["test_accuracies"]), r["test_accuracies"], color="black", s=14, zorder=3)
        ax.text(i, r["test_accuracy_mean"] + std + 0.005, f"{r['test_accuracy_mean']:.3f}", ha="center", fontsize=9)
    accs = [a for r in rows for a in r["test_accuracies"]]
    ax.set_ylim(max(0, min(accs) - 0.08), min(1, max(accs) + 0.05))
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows])
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Test accuracy, mean ± std over seeds [{protocol}]")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def plot_comparison_per_class(rows, classes, path, protocol):
    """Per-class test accuracy (mean over seeds), one group of bars per class."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(rows), 1)
    for i, r in enumerate(rows):
        ax.bar(np.arange(len(classes)) + (i - (len(rows) - 1) / 2) * width, [r["per_class_accuracy"][c] for c in classes],
               width, label=r["model"], color=MODEL_COLORS.get(r["model"]))
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"Per-class test accuracy, mean over seeds [{protocol}]")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def plot_sampling_points(panels, location, path, title, modulated):
    """panels: (image HxWx3 uint8, points [P, 2] (y, x), weights [P], label). Red star = the output location."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (image, points, weights, label) in zip(axes[0], panels):
        ax.imshow(image, interpolation="nearest")
        if modulated:
            sc = ax.scatter(points[:, 1], points[:, 0], c=weights, s=4 + 30 * weights / max(weights.max(), 1e-12),
                            cmap="viridis", vmin=0, edgecolors="white", linewidths=0.3)
        else:
            ax.scatter(points[:, 1], points[:, 0], s=10, c="lime", edgecolors="black", linewidths=0.3)
        ax.scatter([location[1]], [location[0]], marker="*", s=140, c="red", edgecolors="white", linewidths=0.6)
        ax.set_xlim(-4.5, image.shape[1] + 3.5)
        ax.set_ylim(image.shape[0] + 3.5, -4.5)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if modulated:
        fig.colorbar(sc, ax=axes[0].tolist(), fraction=0.02, label="mask product along the path")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
