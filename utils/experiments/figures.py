"""The comparison's figures (curves, accuracy, per class) and the sampling-point figure, as PNG."""
import numpy as np
from matplotlib.ticker import MaxNLocator

from models.registry import VARIANTS
from utils.engine.plots import plt, save_figure


def _color(name):
    """A fixed colour per variant (its place in the registry), so every figure of every protocol draws a
    variant alike."""
    return f"C{list(VARIANTS).index(name) % 10}" if name in VARIANTS else None


def plot_comparison_curves(runs, path, protocol):
    """Per epoch, mean over seeds with a min..max band: loss (training solid, validation dashed) on the
    left, validation accuracy on the right. Only runs with the full number of epochs are drawn."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, rs in runs.items():
        epochs = [h["epoch"] for h in max((r["history"] for r in rs), key=len)]
        panels = (("train_loss", "-", ax_loss, "train"), ("val_loss", "--", ax_loss, "val"), ("val_accuracy", "-", ax_acc, None))
        for key, style, ax, label in panels:
            curves = np.array([[h[key] for h in r["history"]] for r in rs if len(r["history"]) == len(epochs)])
            seeds = len(curves)
            ax.plot(epochs, curves.mean(0), style, color=_color(name), marker="o", ms=3,
                    label=f"{name} {label}" if label else f"{name} ({seeds} seed{'s' * (seeds != 1)})")
            if seeds > 1:
                ax.fill_between(epochs, curves.min(0), curves.max(0), color=_color(name), alpha=0.15)
    for ax, ylabel, title in ((ax_loss, "cross-entropy loss", "Loss"), (ax_acc, "validation accuracy", "Validation accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} per epoch, mean over seeds (band: min-max) [{protocol}]", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2 if ax is ax_loss else 1)
    save_figure(fig, path)


def plot_comparison_accuracy(rows, path, protocol):
    """Test accuracy per model: mean with ± std error bars, every seed as a dot."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for i, r in enumerate(rows):
        color = _color(r["model"])
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
               width, label=r["model"], color=_color(r["model"]))
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
