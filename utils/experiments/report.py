"""A comparison's numbers: per variant the test accuracy over seeds (mean, std, 95 % CI), the robustness
to transformed test images, and every pair of variants tested against each other; then as Markdown."""
import math
from itertools import combinations

import numpy as np

from models.registry import BASE
from utils.engine.data import CLASSES
from utils.engine.robustness import COPIES
from utils.experiments.receptive_field import grid_covers_image
from utils.experiments.stats import ALPHA, holm, mean_ci, paired, welch
from utils.plumbing.machine import in_words

SPREAD = {True: "yes", False: "no", None: "untested (1 seed)"}  # a pair's "larger than the spread?"


def shared_images(runs):
    """The copies (clean and transformed) that every run of every variant measured on byte-identical images.

    Checked copy by copy: torchvision's bilinear rotation rounds differently on some CPUs (seen: an Intel Xeon
    against an AMD EPYC, both AVX-512), so a protocol trained on two machines can share its shifts and scales
    but not its rotations. Accuracies on different images are not compared."""
    reports = [r["metrics"].get("robustness") for rs in runs.values() for r in rs]
    if not reports or not all(reports):
        return []
    return [name for name in COPIES if len({rep["checksums"][name] for rep in reports}) == 1]


def _robustness(rs, names):
    """name -> {mean, ci95, values} for each of the shared copies `names`; None when there are none."""
    if not names:
        return None
    reports = [r["metrics"]["robustness"] for r in rs]
    out = {}
    for name in names:
        values = [rep["accuracy"][name] for rep in reports]
        mean, ci = mean_ci(values)
        out[name] = {"mean": mean, "ci95": ci, "values": values}
    summary = {"images": reports[0]["images"], "accuracy": out}
    copies = [n for n in names if n != "clean"]
    if "clean" in names and copies:
        # Per run, over the transformed copies: the points lost, and the fraction of its clean accuracy kept. A model
        # that is more accurate has more to lose, so the two can disagree; both are reported.
        per_run = {"drop": [float(np.mean([rep["accuracy"]["clean"] - rep["accuracy"][n] for n in copies])) for rep in reports],
                   "retained": [float(np.mean([rep["accuracy"][n] / rep["accuracy"]["clean"] for n in copies])) for rep in reports]}
        for key, values in per_run.items():
            mean, ci = mean_ci(values)
            summary[key] = {"mean": mean, "ci95": ci, "values": values}
    return summary


def as_trained(metrics):
    """The accuracy with the BatchNorm statistics training left (test metrics from before precise BN hold only that)."""
    return metrics["as_trained"]["accuracy"] if "as_trained" in metrics else metrics["accuracy"]


def bn_statistics(metrics):
    return metrics.get("bn_statistics", "as trained")


def _measures(values_by_run):
    """{key: [value per run]} -> {key: {mean, ci95, values}}."""
    out = {}
    for key, values in values_by_run.items():
        mean, ci = mean_ci(values)
        out[key] = {"mean": mean, "ci95": ci, "values": values}
    return out


def _analysis(rs):
    """Over the runs of `rs` that receptive_field.py analysed: the effective receptive field's radii and share outside
    the fixed grid per unit, and (deformable variants) per layer the offset lengths, the share moved over a pixel and
    the mask per tap; each mean ± 95 % CI over those runs. Nothing (no key) where no run was analysed, so a report
    from before the analysis reads as it did."""
    out = {}
    fields = [r["receptive_field"] for r in rs if "receptive_field" in r]
    if fields:
        keys = ("radius_50", "radius_90", "share_outside_fixed")
        out["receptive_field"] = {"runs": len(fields), "images": fields[0]["images"], "fixed_receptive_field": fields[0]["fixed_receptive_field"],
                                  "seed_list": [r["seed"] for r in rs if "receptive_field" in r],
                                  "positions": {p: _measures({k: [f["positions"][p][k] for f in fields] for k in keys}) for p in fields[0]["positions"]}}
        shape = np.shape(next(iter(fields[0]["positions"].values()))["map"])
        if grid_covers_image(fields[0]["fixed_receptive_field"], shape):
            out["receptive_field"]["grid_covers_image"] = True  # only when true: the small CNN's reports stay as they were
    summaries = [r["offsets"]["layers"] for r in rs if "offsets" in r]
    if summaries:
        layers = []
        for i, first in enumerate(summaries[0]):
            keys = [k for k in ("mean_offset_magnitude_px", "share_moved_over_1px", "mask_mean", "mask_std") if k in first]
            layer = {"layer": first["layer"], **_measures({k: [s[i][k] for s in summaries] for k in keys})}
            for key in ("mask_mean_per_tap", "mask_std_per_tap"):
                if key in first:
                    layer[key] = np.mean([s[i][key] for s in summaries], axis=0).tolist()
            layers.append(layer)
        out["offsets"] = {"runs": len(summaries), "layers": layers}
    return out


def _run_row(name, r):
    """One finished run: its result, and where and how long it trained (from its history and run.json)."""
    train_s = [h["train_seconds"] for h in r["history"]]  # per epoch, as the variant rows measure it
    best = max(r["history"], key=lambda h: h["val_accuracy"])
    segments = (r.get("record") or {}).get("segments", [])
    m = r["metrics"]
    return {"model": name, "seed": r["seed"], "test_accuracy": m["accuracy"], "test_images": m.get("test_images"),
            "bn_statistics": bn_statistics(m), "test_accuracy_as_trained": as_trained(m),
            "best_val_accuracy": best["val_accuracy"], "best_val_epoch": best["epoch"],
            "training_minutes": sum(h["train_seconds"] + h["val_seconds"] for h in r["history"]) / 60,
            "train_seconds_per_epoch": float(np.median(train_s)), "train_seconds_fastest_epoch": min(train_s), "segments": len(segments),
            "hosts": sorted({in_words(s["host"]) for s in segments if "host" in s}),
            "code": [s["versions"]["code"] for s in segments if s.get("versions", {}).get("code")]}


def _epoch_seconds_by_host(rs):
    """machine in words -> training seconds of every epoch it trained, over the runs `rs` (from each run.json's
    segments; epochs of a segment that recorded no machine or epochs are left out). A protocol may move between machines,
    and an epoch's time means something only next to the machine that ran it."""
    by_host = {}
    for r in rs:
        for segment in (r.get("record") or {}).get("segments", []):
            if "host" in segment and "epochs" in segment:
                first, last = segment["epochs"]
                by_host.setdefault(in_words(segment["host"]), []).extend(h["train_seconds"] for h in r["history"][first - 1:last])
    return {host: {"median": float(np.median(s)), "fastest": float(min(s)), "epochs": len(s)} for host, s in sorted(by_host.items()) if s}


def _on_seeds(row, key, seeds):
    """A variant row's per-seed values (`key`) on the given seeds, in their order: what a paired test pairs."""
    return [row[key][row["seed_list"].index(s)] for s in seeds]


def summarize(runs):
    """runs: {variant: [{"seed", "history", "metrics", "record"}, ...]} -> (rows, pairs, per_run)."""
    rows, per_run = [], []
    shared = shared_images(runs)
    for name, rs in runs.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        per_run += [_run_row(name, r) for r in rs]
        acc = [r["metrics"]["accuracy"] for r in rs]
        trained = [as_trained(r["metrics"]) for r in rs]
        mean, ci = mean_ci(acc)
        rows.append({
            "model": name, "seeds": len(rs), "seed_list": [r["seed"] for r in rs], "epochs": len(rs[0]["history"]),
            "test_accuracy_mean": mean, "test_accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else float("nan"),
            "test_accuracy_ci95": ci, "test_accuracies": acc,
            # The headline is on precise BatchNorm statistics where a run's test estimated them (bn_statistics says).
            "bn_statistics": sorted({bn_statistics(r["metrics"]) for r in rs}), "test_accuracies_as_trained": trained,
            "test_accuracy_as_trained_mean": float(np.mean(trained)),
            "test_accuracy_as_trained_std": float(np.std(trained, ddof=1)) if len(trained) > 1 else float("nan"),
            "best_val_accuracy_mean": float(np.mean([max(h["val_accuracy"] for h in r["history"]) for r in rs])),
            "parameters": rs[0]["metrics"]["parameters"],
            # The median, not the mean: an epoch slowed by other work on the machine does not move it. A long
            # protocol shares its machine for hours, so the fastest epoch is kept too: the closest to an idle CPU.
            "train_seconds_per_epoch": float(np.median([h["train_seconds"] for r in rs for h in r["history"]])),
            "train_seconds_fastest_epoch": float(min(h["train_seconds"] for r in rs for h in r["history"])),
            "train_seconds_by_host": _epoch_seconds_by_host(rs),
            "inference_images_per_s": float(np.mean([r["metrics"]["images_per_second"] for r in rs])),
            "per_class_accuracy": {c: float(np.mean([r["metrics"]["per_class_accuracy"][c] for r in rs])) for c in CLASSES},
            "robustness": _robustness(rs, shared),
            **_analysis(rs),
        })
    # With precise BatchNorm statistics the as-trained accuracies are a second measure, not a copy: they get their
    # own paired differences and Holm family (under augmentation the two can disagree by points; docs/results.md).
    precise = any("precise" in r["bn_statistics"] for r in rows)
    pairs = []
    for a, b in combinations(rows, 2):
        common = sorted(set(a["seed_list"]) & set(b["seed_list"]))
        pa, pb = _on_seeds(a, "test_accuracies", common), _on_seeds(b, "test_accuracies", common)
        paired_mean, paired_ci = mean_ci(np.subtract(pa, pb))  # the difference seed by seed, on the seeds both have
        pairs.append({"a": a["model"], "b": b["model"], "difference": a["test_accuracy_mean"] - b["test_accuracy_mean"],
                      "paired_difference": paired_mean, "paired_difference_ci95": paired_ci,
                      "difference_as_trained": a["test_accuracy_as_trained_mean"] - b["test_accuracy_as_trained_mean"],
                      "paired_seeds": len(common), "p_paired": paired(pa, pb), "p_welch": welch(a["test_accuracies"], b["test_accuracies"])})
        if precise:
            ta, tb = _on_seeds(a, "test_accuracies_as_trained", common), _on_seeds(b, "test_accuracies_as_trained", common)
            trained_mean, trained_ci = mean_ci(np.subtract(ta, tb))
            pairs[-1].update({"paired_difference_as_trained": trained_mean, "paired_difference_as_trained_ci95": trained_ci,
                              "p_paired_as_trained": paired(ta, tb)})
    for pair, adjusted in zip(pairs, holm([p["p_paired"] for p in pairs])):
        pair["p_paired_holm"] = adjusted
        pair["significant"] = None if math.isnan(adjusted) else bool(adjusted < ALPHA)  # None: one shared seed, not tested
    if precise:
        for pair, adjusted in zip(pairs, holm([p["p_paired_as_trained"] for p in pairs])):
            pair["p_paired_as_trained_holm"] = adjusted
    _robustness_pairs(rows, pairs)
    return rows, pairs, per_run


def _robustness_pairs(rows, pairs):
    """Each pair's paired difference of the robustness drop and of the retained fraction (seed by seed, on the seeds
    both have), with its 95 % CI and p, Holm-corrected over the pairs for each measure."""
    by_model = {r["model"]: r for r in rows}
    for key in ("drop", "retained"):
        found = []
        for pair in pairs:
            a, b = by_model[pair["a"]], by_model[pair["b"]]
            if not (a["robustness"] and b["robustness"] and key in a["robustness"] and key in b["robustness"]):
                continue
            common = sorted(set(a["seed_list"]) & set(b["seed_list"]))
            va = [a["robustness"][key]["values"][a["seed_list"].index(s)] for s in common]
            vb = [b["robustness"][key]["values"][b["seed_list"].index(s)] for s in common]
            mean, ci = mean_ci(np.subtract(va, vb))
            pair[f"robustness_{key}"] = {"difference": mean, "ci95": ci, "p_paired": paired(va, vb)}
            found.append(pair[f"robustness_{key}"])
        for entry, adjusted in zip(found, holm([e["p_paired"] for e in found])):
            entry["p_paired_holm"] = adjusted


def _with_count(accuracy, images):
    """0.5389 (5,389 / 10,000): the exact count where the metrics name the number of images."""
    return f"{accuracy:.4f}" + (f" ({round(accuracy * images):,} / {images:,})" if images else "")


def _interval(mean, ci):
    """A paired difference with its 95 % interval, "n/a" where one seed leaves no interval."""
    return f"{mean:+.4f} ({mean - ci:+.4f} … {mean + ci:+.4f})" if not math.isnan(ci) else "n/a"


def _fmt(value, spec):
    return "n/a" if isinstance(value, float) and math.isnan(value) else format(value, spec)


def render(cfg, rows, pairs, per_run, environment):
    data = "all 50,000" if cfg.train_subset is None else f"a stratified subset of {cfg.train_subset:,}"
    ablation = "".join([f", deformable_layers {cfg.deformable_layers}" if cfg.deformable_layers is not None else "",
                        f", offset_lr_mult {cfg.offset_lr_mult}" if cfg.offset_lr_mult != 1.0 else ""])
    seeds = f"seeds {list(cfg.seeds)}" + "".join(f", {name} seeds {list(s)}" for name, s in cfg.model_seeds.items())
    counts = sorted({len(cfg.seeds_of(name)) for name in cfg.models})
    # The standard protocol's recipe reads as it always has; the others name what differs.
    optimizer = "AdamW" if cfg.optimizer == "adamw" else "SGD (Nesterov momentum 0.9)"
    recipe = "".join([f", a {cfg.warmup_epochs}-epoch linear warmup" if cfg.warmup_epochs else "",
                      ", cosine decay to zero" if cfg.lr_schedule == "cosine" else "",
                      ", random 32x32 crops of the 4-pixel zero-padded images and horizontal flips" if cfg.augmentation == "crop-flip" else ""])
    network = "conv_ch" if cfg.network == "convnet" else f"{cfg.network}, stage widths"
    lines = [
        f"# Comparison, protocol `{cfg.protocol}`", "",
        f"{cfg.num_epoch} epochs, {data} training images ({1 - cfg.test_size:.0%} train / {cfg.test_size:.0%} validation), batch "
        f"{cfg.batch_size}, {optimizer} lr {cfg.learning_rate} wd {cfg.weight_decay}{recipe}, {network} {list(cfg.conv_ch)}{ablation}, {seeds}; "
        f"test accuracy on the 10,000 official test images. {environment}", "",
    ]
    runs_precise = sum(r["bn_statistics"] == "precise" for r in per_run)
    precise = runs_precise > 0
    if precise:
        mixed = f" ({runs_precise} of {len(per_run)} runs; the others as trained)" if runs_precise < len(per_run) else ""
        why = ("the running statistics of training are an exponential average over weights that kept moving" if cfg.lr_schedule == "constant" else
               "the same statistics for every variant; under a decay to zero the weights hardly move at the end, so the running statistics "
               "of training are already those of the final weights, over augmented images")
        unaugmented = ", un-augmented" if cfg.augmentation != "none" else ""
        lines += ["Test accuracy with precise BatchNorm statistics" + mixed + ": each run's final weights fixed, every BatchNorm layer's "
                  f"running mean and variance re-estimated as a plain average over batches of its own training split{unaugmented} ({why}). "
                  "*As trained*: with the running statistics training left, beside it.", ""]
    trained_head, trained_rule = (" as trained (mean ± std) |", "---|") if precise else ("", "")
    lines += [
        f"| model | test accuracy (mean ± std) | 95 % CI | per seed |{trained_head} best val acc | parameters | train s/epoch (median) "
        "| fastest epoch s | inference img/s | epochs |",
        "|---|---|---|---|" + trained_rule + "---|---|---|---|---|---|",
    ]
    for r in rows:
        trained = (f" {_fmt(r['test_accuracy_as_trained_mean'], '.4f')} ± {_fmt(r['test_accuracy_as_trained_std'], '.4f')} |"
                   if precise else "")
        lines.append(
            f"| {r['model']} | {_fmt(r['test_accuracy_mean'], '.4f')} ± {_fmt(r['test_accuracy_std'], '.4f')} | "
            f"± {_fmt(r['test_accuracy_ci95'], '.4f')} | {', '.join(f'{a:.4f}' for a in r['test_accuracies'])} |{trained} "
            f"{r['best_val_accuracy_mean']:.4f} | {r['parameters']:,} | {r['train_seconds_per_epoch']:.1f} | {r['train_seconds_fastest_epoch']:.1f} | "
            f"{r['inference_images_per_s']:.0f} | {r['epochs']} |")
    hosts = sorted({host for r in rows for host in r["train_seconds_by_host"]})
    if len(hosts) > 1:  # with one machine the table above says it all
        lines += ["", "Training seconds per epoch on each machine that trained this protocol: median / fastest (epochs measured). "
                  "Compare variants within a column; the columns differ in CPU.", "",
                  "| model | " + " | ".join(hosts) + " |", "|---|" + "---|" * len(hosts)]
        for r in rows:
            cells = [r["train_seconds_by_host"].get(host) for host in hosts]
            lines.append(f"| {r['model']} | " + " | ".join(f"{c['median']:.0f} / {c['fastest']:.0f} ({c['epochs']})" if c else "—"
                                                           for c in cells) + " |")
    lines += ["", "Every run: training time is every epoch's training and validation, summed over the run's segments (each start "
              "or resume; its run.json names the machine and the git commit of every segment); train s/epoch as above.", "",
              f"| model | seed | test accuracy |{trained_head.replace(' (mean ± std)', '')} best val acc (epoch) | training time | segments "
              "| train s/epoch (median / fastest) | trained on |",
              "|---|---|---|" + trained_rule + "---|---|---|---|---|"]
    for r in per_run:
        trained = f" {_with_count(r['test_accuracy_as_trained'], r['test_images'])} |" if precise else ""
        lines.append(f"| {r['model']} | {r['seed']} | {_with_count(r['test_accuracy'], r['test_images'])} |{trained} "
                     f"{r['best_val_accuracy']:.4f} ({r['best_val_epoch']}) | "
                     f"{r['training_minutes']:.0f} min | {r['segments']} | {r['train_seconds_per_epoch']:.0f} / {r['train_seconds_fastest_epoch']:.0f} | "
                     f"{'; '.join(r['hosts']) or 'n/a'} |")
    tested = sum(p["significant"] is not None for p in pairs)  # a pair with one shared seed has no test, and no place in Holm's family
    holm = (f"Holm-corrected over the {tested} pairs tested" if tested > 1 else "a single pair tested, so Holm changes nothing" if tested
            else "no pair tested") + (
        f" ({len(pairs) - tested} with one shared seed: untested)" if tested < len(pairs) else "")
    lines += ["", f"Is a difference larger than the seed-to-seed spread? Two-sided paired t-test on the per-seed test accuracies "
              f"(a seed fixes the split and the batch order, shared by every variant), "
              f"{holm}, "
              f"α = {ALPHA}; Welch's unpaired test for reference. With {'–'.join(map(str, counts))} seeds only large differences are detectable.", "",
              "The difference of the means (each over its own seeds); then the mean of the per-seed differences on the seeds both have, with its 95 % CI "
              "(t-based): what a 'no' still allows." + (" *As trained*: the same paired difference of the as-trained accuracies, with its own "
                                                        "paired t-test, Holm-corrected over the same pairs." if precise else ""), "",
              "| A − B | difference | paired difference (95 % CI) | seeds paired | p (paired) | p (paired, Holm) | p (Welch) | larger than the spread? |"
              + (" as trained: paired difference (95 % CI) | p (as trained, Holm) |" if precise else ""),
              "|---|---|---|---|---|---|---|---|" + trained_rule * 2]
    for p in pairs:
        trained = (f" {_interval(p['paired_difference_as_trained'], p['paired_difference_as_trained_ci95'])} | "
                   f"{_fmt(p['p_paired_as_trained_holm'], '.3f')} |") if precise else ""
        lines.append(f"| {p['a']} − {p['b']} | {p['difference']:+.4f} | {_interval(p['paired_difference'], p['paired_difference_ci95'])} | "
                     f"{p['paired_seeds']} | {_fmt(p['p_paired'], '.3f')} | "
                     f"{_fmt(p['p_paired_holm'], '.3f')} | {_fmt(p['p_welch'], '.3f')} | {SPREAD[p['significant']]} |{trained}")
    lines += _controls_table(rows, pairs)
    robust = [r for r in rows if r["robustness"]]
    if robust:
        names = list(robust[0]["robustness"]["accuracy"])
        left_out = [n for n in COPIES if n not in names]
        why = (f" Left out: {', '.join(left_out)} — not the same bytes in every run (the runs' machines computed these copies "
               "differently; each run's own figures are in its test/metrics.json).") if left_out else ""
        # Crops of the 4-pixel padded image are shifts of up to 4 pixels: the shift copies are then what training saw.
        seen = ("no augmentation in training" if cfg.augmentation == "none" else
                "training saw random crops, i.e. shifts of up to 4 pixels as in the shift copies, and horizontal flips")
        lines += ["", f"Geometric robustness: test accuracy (mean ± 95 % CI over seeds) on transformed copies of "
                  f"{robust[0]['robustness']['images']:,} test images (the same bytes for every run; {seen}).{why}", "",
                  "| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for r in robust:
            cells = [f"{r['robustness']['accuracy'][n]['mean']:.3f} ± {_fmt(r['robustness']['accuracy'][n]['ci95'], '.3f')}" for n in names]
            lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
        lines += _robustness_summary(robust, pairs)
    lines += _analysis_lines(rows)
    return "\n".join(lines) + "\n"


def _ci(measure, spec, scale=1):
    return f"{_fmt(scale * measure['mean'], spec)} ± {_fmt(scale * measure['ci95'], spec)}"


def _analysis_lines(rows):
    """The effective receptive field and the offset/mask summary (receptive_field.py), where runs were analysed."""
    lines, fields = [], [r for r in rows if "receptive_field" in r]
    if fields:
        first = fields[0]["receptive_field"]
        side, positions = first["fixed_receptive_field"], list(first["positions"])
        covers = first.get("grid_covers_image", False)  # then the share outside is zero by construction: no column
        share = (f" (the plain network's fixed-grid receptive field, {side}x{side}, covers the whole image from every unit, so no mass lies "
                 "outside it)" if covers else f", and the share of the mass outside the plain network's fixed-grid receptive field ({side}x{side})")
        lines += ["", f"Effective receptive field (receptive_field.py; Luo et al. 2016): for a unit of the last block's output before pooling, "
                  f"the mean |gradient| of its channels' sum over the input pixels, over the first {first['images']:,} test images, with the "
                  f"checkpoint's BatchNorm statistics. Radii (pixels) around the unit's pixel holding 50 % / 90 % of the gradient mass{share}; "
                  "mean ± 95 % CI over the runs analysed. The units: the feature map's centre, the middle of its top border, its top-left corner. "
                  "Figure: comparison_receptive_field.png.", "",
                  "| model | runs | " + " | ".join(f"{p}: r50 | r90" + f" | outside {side}x{side}" * (not covers) for p in positions) + " |",
                  "|---|---|" + ("---|---|" + "---|" * (not covers)) * len(positions)]
        for r in fields:
            f = r["receptive_field"]
            cells = [f"{_ci(f['positions'][p]['radius_50'], '.2f')} | {_ci(f['positions'][p]['radius_90'], '.2f')}"
                     + f" | {_ci(f['positions'][p]['share_outside_fixed'], '.1f', 100)} %" * (not covers) for p in positions]
            lines.append(f"| {r['model']} | {f['runs']} | " + " | ".join(cells) + " |")
    moved = [r for r in rows if "offsets" in r]
    if moved:
        lines += ["", "Offsets and masks over the same test images, per deformable layer (every image, position and tap): the mean offset "
                  "length in pixels of the layer's input grid, the share of sampling points moved more than one pixel, and the mask's mean "
                  "and spread (std); mean ± 95 % CI over the runs. Per tap (3x3, row by row): the mask's mean and spread, averaged over "
                  "the runs.", "",
                  "| model | runs | layer | mean offset px | moved > 1 px | mask mean | mask std | mask mean per tap | mask std per tap |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in moved:
            for layer in r["offsets"]["layers"]:
                mask = [_ci(layer[k], ".3f") if k in layer else "—" for k in ("mask_mean", "mask_std")]
                taps = [" ".join(f"{v:.2f}" for v in layer[k]) if k in layer else "—" for k in ("mask_mean_per_tap", "mask_std_per_tap")]
                lines.append(f"| {r['model']} | {r['offsets']['runs']} | {layer['layer']} | {_ci(layer['mean_offset_magnitude_px'], '.3f')} | "
                             f"{_ci(layer['share_moved_over_1px'], '.1f', 100)} % | {mask[0]} | {mask[1]} | {taps[0]} | {taps[1]} |")
    return lines


def control_differences(rows, pairs):
    """Each control (a variant not among the three models of the question) against each of the three present, from the
    pairs: {"control", "model", "points", "ci95" (points; nan with one shared seed), "p_holm", "seeds"}, control − model
    whichever way round the pair was stored."""
    models = [r["model"] for r in rows]
    bases, controls = [m for m in models if m in BASE], [m for m in models if m not in BASE]
    by_pair = {(p["a"], p["b"]): p for p in pairs}
    out = []
    for control in controls:
        for base in bases:
            pair, sign = (by_pair[(control, base)], 1) if (control, base) in by_pair else (by_pair[(base, control)], -1)
            out.append({"control": control, "model": base, "points": 100 * sign * pair["paired_difference"],
                        "ci95": 100 * pair["paired_difference_ci95"], "p_holm": pair["p_paired_holm"], "seeds": pair["paired_seeds"]})
    return out


def _controls_table(rows, pairs):
    """control_differences as a table: what a control rules in or out is whether its interval reaches the plain
    model's or the deformable models' level."""
    differences = control_differences(rows, pairs)
    if not differences:
        return []
    bases = list(dict.fromkeys(d["model"] for d in differences))
    params = {r["model"]: r["parameters"] for r in rows}
    lines = ["", "Each control against the three models: control − model in points, the mean of the per-seed differences on the "
             "seeds both have with its 95 % CI, and the paired p Holm-corrected as above. An interval that excludes 0 says the "
             "control differs from that model; its bounds say how large a difference the seeds still allow.", "",
             "| control | parameters | " + " | ".join(f"− {b}" for b in bases) + " |", "|---|---|" + "---|" * len(bases)]
    for control in dict.fromkeys(d["control"] for d in differences):
        cells = []
        for d in (d for d in differences if d["control"] == control):
            interval = f" ({d['points'] - d['ci95']:+.1f} … {d['points'] + d['ci95']:+.1f})" if not math.isnan(d["ci95"]) else ""
            cells.append(f"{d['points']:+.1f}{interval}, p {_fmt(d['p_holm'], '.3f')}")
        lines.append(f"| {control} | {params[control]:,} | " + " | ".join(cells) + " |")
    return lines


def _robustness_summary(robust, pairs):
    """The drop over the transformed copies in points and as the fraction of clean accuracy kept, per model and per pair."""
    if not all("drop" in r["robustness"] for r in robust):
        return []
    lines = ["", "Averaged over the transformed copies, per run, then over seeds (mean ± 95 % CI): the points lost against the "
             "clean images, and the fraction of the clean accuracy kept.", "",
             "| model | points lost | fraction kept |", "|---|---|---|"]
    for r in robust:
        drop, kept = r["robustness"]["drop"], r["robustness"]["retained"]
        lines.append(f"| {r['model']} | {100 * drop['mean']:.1f} ± {_fmt(100 * drop['ci95'], '.1f')} | {kept['mean']:.3f} ± {_fmt(kept['ci95'], '.3f')} |")
    shown = [p for p in pairs if "robustness_drop" in p]
    if shown:
        lines += ["", "Paired differences on the seeds both have (95 % CI; p paired, Holm-corrected over the pairs for each measure):", "",
                  "| A − B | points lost | p (Holm) | fraction kept | p (Holm) |", "|---|---|---|---|---|"]
        for p in shown:
            d, k = p["robustness_drop"], p["robustness_retained"]
            lines.append(f"| {p['a']} − {p['b']} | {100 * d['difference']:+.1f} ± {_fmt(100 * d['ci95'], '.1f')} | "
                         f"{_fmt(d['p_paired'], '.3f')} ({_fmt(d['p_paired_holm'], '.3f')}) | {k['difference']:+.3f} ± {_fmt(k['ci95'], '.3f')} | "
                         f"{_fmt(k['p_paired'], '.3f')} ({_fmt(k['p_paired_holm'], '.3f')}) |")
    return lines
