"""The figures of one run (loss per epoch, confusion matrix), written atomically as PNG. The Agg backend:
no screen is needed."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from utils.plumbing.files import atomic_path  # noqa: E402


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


def plot_confusion(panels, classes, path, title):
    """Row-normalised confusion matrices side by side (rows: true class), with counts in the cells; panels: [(matrix, subtitle)]."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels) + 0.5, 6), squeeze=False)
    for ax, (matrix, subtitle) in zip(axes[0], panels):
        matrix = np.asarray(matrix)
        rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color="white" if rates[i, j] > 0.5 else "black")
        ax.set_title(subtitle)
    fig.colorbar(im, ax=list(axes[0]), label="fraction of the true class")
    fig.suptitle(title)
    save_figure(fig, path)
