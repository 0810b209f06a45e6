"""The comparison's figures (curves, accuracy, per class) and the sampling-point figure, as PNG."""
import math

import numpy as np
from matplotlib.ticker import MaxNLocator

from models.registry import VARIANTS
from utils.engine.plots import plt, save_figure
from utils.engine.robustness import CLEAN, TRANSFORMS


def _color(name):
    """A fixed colour per variant (its place in the registry), so every figure of every protocol draws a
    variant alike."""
    return f"C{list(VARIANTS).index(name) % 10}" if name in VARIANTS else None


def _seeds(counts, what="seed"):
    """How many seeds a figure element rests on: 3 -> "3 seeds", [1] -> "1 seed", [2, 3] -> "2–3 seeds"."""
    counts = sorted(set(counts)) if isinstance(counts, (list, set, tuple)) else [counts]
    return f"{'–'.join(map(str, counts))} {what}{'s' * (counts != [1])}"


def plot_comparison_curves(runs, path, protocol):
    """Per epoch, mean over seeds with a min..max band: loss (training solid, validation dashed) on the
    left, validation accuracy on the right; one colour per variant, one legend below both panels. Only
    runs with the full number of epochs are drawn."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.8))
    handles = []
    for name, rs in runs.items():
        epochs = [h["epoch"] for h in max((r["history"] for r in rs), key=len)]
        for key, style, ax in (("train_loss", "-", ax_loss), ("val_loss", "--", ax_loss), ("val_accuracy", "-", ax_acc)):
            curves = np.array([[h[key] for h in r["history"]] for r in rs if len(r["history"]) == len(epochs)])
            (line,) = ax.plot(epochs, curves.mean(0), style, color=_color(name), marker="o", ms=3)
            if len(curves) > 1:
                ax.fill_between(epochs, curves.min(0), curves.max(0), color=_color(name), alpha=0.1)
        line.set_label(f"{name} ({_seeds(len(curves))})")  # its accuracy line names it in the legend
        handles.append(line)
    handles += [plt.Line2D([], [], color="black", ls="-", label="loss: training"), plt.Line2D([], [], color="black", ls="--", label="loss: validation")]
    for ax, ylabel in ((ax_loss, "cross-entropy loss"), (ax_acc, "validation accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Loss and validation accuracy per epoch, mean over seeds (band: min-max) [{protocol}]", fontsize=11)
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(handles) - 1) // 5), 1, 1))
    save_figure(fig, path)


def plot_comparison_accuracy(rows, path, protocol):
    """Test accuracy per model: mean with its 95 % confidence interval, every seed as a dot; where the runs were
    tested with precise BatchNorm statistics, each seed's as-trained accuracy as a hollow dot beside it."""
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(rows)), 4.5))
    cis = [0 if np.isnan(r["test_accuracy_ci95"]) else r["test_accuracy_ci95"] for r in rows]
    precise = any("precise" in r.get("bn_statistics", []) for r in rows)
    for i, (r, ci) in enumerate(zip(rows, cis)):
        lone = bool(np.isnan(r["test_accuracy_ci95"]))  # one seed: no error bar, since a zero-width one would read as certainty
        ax.bar(i, r["test_accuracy_mean"], yerr=None if lone else ci, color=_color(r["model"]), alpha=0.6, capsize=6)
        # Seeds side by side, in seed order: two seeds with the same accuracy must still show as two dots. Where the
        # runs have both accuracies, precise-BN dots go left of the error bar and as-trained ones right of it.
        n = len(r["test_accuracies"])
        spread = 0.07 * np.linspace(-1, 1, n) if n > 1 else np.zeros(n)
        ax.scatter(i - (0.16 if precise else 0) + spread, r["test_accuracies"], color="black", s=14, zorder=3)
        if precise:
            ax.scatter(i + 0.16 + spread, r["test_accuracies_as_trained"], facecolors="none", edgecolors="dimgray", s=14, zorder=3)
        ax.text(i, r["test_accuracy_mean"] + ci + 0.005, f"{r['test_accuracy_mean']:.3f}" + "\n1 seed, no CI" * lone, ha="center", fontsize=9)
    if precise:
        ax.legend(handles=[plt.Line2D([], [], ls="", marker="o", color="black", ms=4, label="a seed, precise BN (the bars)"),
                           plt.Line2D([], [], ls="", marker="o", mfc="none", mec="dimgray", ms=4, label="the same seed as trained")],
                  loc="upper left", fontsize=8, frameon=False)
    # The axis spans the error bars as well as the seeds: with few seeds a 95 % CI can be wide, and the mean's
    # label above a clipped bar would land outside the plot.
    ends = [a for r in rows for a in r["test_accuracies"] + (r["test_accuracies_as_trained"] if precise else [])]
    ends += [r["test_accuracy_mean"] + sign * ci for r, ci in zip(rows, cis) for sign in (-1, 1)]
    ax.set_ylim(max(0, min(ends) - 0.08), min(1, max(ends) + 0.05))
    # Each bar names its seeds: models gain seeds at different times, and a 3-seed bar must not pass for a 5-seed one.
    # Past 3 bars the names slant, on one line each (two-line slanted labels run into each other).
    slant = len(rows) > 3
    sep = " " if slant else "\n"
    names = [f"{r['model']}{sep}({_seeds(r['seeds'])})" for r in rows]
    ax.set_xticks(range(len(rows)), names, rotation=20 if slant else 0, ha="right" if slant else "center")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Test accuracy, mean ± 95 % CI over seeds [{protocol}]")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def plot_controls(differences, path, protocol):
    """Is it the deformation? One panel per model of the question, each control's paired difference to it
    (control − model, points) with its 95 % CI, and 0 marked: a control whose interval straddles 0 against
    Conv2d bought nothing measurable over the plain network; one that sits below 0 against DCNv1/DCNv2 does
    not reach them. Nothing is drawn without controls (False)."""
    if not differences:
        return False
    bases = list(dict.fromkeys(d["model"] for d in differences))
    controls = list(dict.fromkeys(d["control"] for d in differences))
    fig, axes = plt.subplots(1, len(bases), figsize=(3.6 * len(bases) + 1.6, 0.7 * len(controls) + 1.6), sharey=True, squeeze=False,
                             layout="constrained")  # constrained: the title clears the panel titles
    for ax, base in zip(axes[0], bases):
        for y, control in enumerate(controls):
            d = next(d for d in differences if d["control"] == control and d["model"] == base)
            ax.errorbar(d["points"], y, xerr=None if math.isnan(d["ci95"]) else d["ci95"], fmt="o", color=_color(control), capsize=4)
            ax.annotate(f"{d['points']:+.1f}", (d["points"], y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"control − {base}", fontsize=10)
        ax.set_xlabel("test accuracy points")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # few ticks: a panel of small differences stays legible
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
    def label(control):  # how many seeds each row rests on: controls finish at different times
        return f"{control}\n({_seeds([d['seeds'] for d in differences if d['control'] == control])})"
    axes[0][0].set_yticks(range(len(controls)), [label(c) for c in controls])
    axes[0][0].set_ylim(len(controls) - 0.5, -0.6)  # the first control on top, room for its label
    seeds = sorted({d["seeds"] for d in differences})
    interval = "no CI with 1 seed" if seeds == [1] else "95 % CI; none where 1 seed" if 1 in seeds else "95 % CI"  # a lone point is no estimate
    fig.suptitle(f"Controls against the models, paired over {_seeds(seeds, 'shared seed')} ({interval}) [{protocol}]",
                 fontsize=11)
    save_figure(fig, path)
    return True


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


def plot_robustness(rows, path, protocol):
    """Test accuracy against the strength of each transform (one panel per family, the clean images at
    strength 0 / scale 1), one line per variant, error bars = 95 % CI over seeds. Only the copies every run
    measured alike are drawn; a family with none of them left gets no panel (a lone clean point on an
    empty axis says nothing) and is named in the title instead. Returns whether a figure was written
    (none without robustness results)."""
    measured = [r for r in rows if r["robustness"]]
    if not measured:
        return False
    shared = measured[0]["robustness"]["accuracy"]  # the copies every run measured alike
    panels = {}  # family -> ([(strength, name), ...] kept, some of the family's copies left out?)
    for family, clean in CLEAN.items():
        every = sorted([(clean, "clean")] + [(s, n) for n, (f, s, _) in TRANSFORMS.items() if f == family])
        points = [(x, n) for x, n in every if n in shared]
        if len(points) > 1:
            panels[family] = (points, len(points) < len(every))
    if not panels:
        return False  # only the clean images in common: nothing to plot against a strength
    dropped = [family.split(" (")[0] for family in CLEAN if family not in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, (family, (points, partial)) in zip(axes, panels.items()):
        if partial:
            ax.set_title("some copies left out: not the same bytes in every run", fontsize=8)
        for r in measured:
            acc = r["robustness"]["accuracy"]
            ci = [0 if math.isnan(acc[n]["ci95"]) else acc[n]["ci95"] for _, n in points]
            ax.errorbar([x for x, _ in points], [acc[n]["mean"] for _, n in points], yerr=ci, marker="o", ms=4, capsize=3,
                        color=_color(r["model"]), label=r["model"])
        ax.set_xlabel(family)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7)
    title = f"Accuracy on transformed test images ({measured[0]['robustness']['images']:,}), mean ± 95 % CI over seeds [{protocol}]"
    if dropped:
        title += f"\nno {', '.join(dropped)}: those copies were not the same bytes in every run (see comparison.md)"
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return True


def plot_receptive_fields(reports, path, title):
    """reports: {label: a receptive-field report (utils/experiments/receptive_field.py)}. One column per label, one row per
    unit (centre, border, corner): the normalized gradient map on one logarithmic colour scale for every panel, the
    unit's pixel (red dot) and the plain network's fixed-grid receptive field (dashed square), with the radii holding
    50 % / 90 % of the mass and the share outside that square; no square and no share where it covers the image."""
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    from utils.experiments.receptive_field import grid_covers_image  # it imports this module (offsets -> figures)

    labels = list(reports)
    positions = list(next(iter(reports.values()))["positions"])
    maps = {(label, p): np.array(reports[label]["positions"][p]["map"]) for label in labels for p in positions}
    top = max(m.max() for m in maps.values())
    norm = LogNorm(vmin=top * 1e-4, vmax=top)  # four decades: the tails beyond the fixed grid stay visible
    fig, axes = plt.subplots(len(positions), len(labels), figsize=(2.6 * len(labels) + 1.2, 2.7 * len(positions)), squeeze=False)
    for col, label in enumerate(labels):
        report = reports[label]
        side, half = report["fixed_receptive_field"], report["fixed_receptive_field"] // 2
        for row, p in enumerate(positions):
            ax, entry = axes[row][col], report["positions"][p]
            image = ax.imshow(np.maximum(maps[(label, p)], norm.vmin), cmap="magma", norm=norm, interpolation="nearest")
            cy, cx = entry["pixel"]
            covers = grid_covers_image(side, maps[(label, p)].shape)  # ResNet-20: the square is the whole image, nothing outside
            if not covers:
                ax.add_patch(Rectangle((cx - half - 0.5, cy - half - 0.5), side, side, fill=False, ls="--", lw=0.8, ec="cyan"))
            ax.plot([cx], [cy], "o", ms=3, color="red")
            ax.set_xlim(-0.5, maps[(label, p)].shape[1] - 0.5)  # the square may reach past the image: the panel stays the image
            ax.set_ylim(maps[(label, p)].shape[0] - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label}\n" * (row == 0) + f"{p}: r50 {entry['radius_50']:.1f}, r90 {entry['radius_90']:.1f} px"
                         + f"\noutside {side}x{side}: {100 * entry['share_outside_fixed']:.1f} %" * (not covers), fontsize=7)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, label="share of the gradient mass per pixel")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
