"""Train and test all three models over several seeds, then aggregate: table, significance, figures.

Layout: <outdir>/<Model>/seed_<s>/{train,test}/ (the same layout as the train/test scripts), and the
comparison files in <outdir>. Finished runs are skipped and partial runs resumed, so an interrupted
comparison continues with what is missing.
"""
import dataclasses
import json
import math
from itertools import combinations

import numpy as np
from scipy import stats

from utils.engine.data import CLASSES
from utils.engine.evaluate import run_test
from utils.engine.train import result_settings, train
from utils.experiments.figures import plot_comparison_accuracy, plot_comparison_curves, plot_comparison_per_class
from utils.experiments.progress import ProtocolProgress
from utils.plumbing.config import TestConfig, TrainConfig
from utils.plumbing.errors import UserError
from utils.plumbing.files import write_csv, write_json, write_text
from utils.plumbing.runs import ProtocolLayout, run_status, tested_epoch

ALPHA = 0.05


def _shared(cfg, target_cls):
    """The keys a CompareConfig passes on unchanged to a TrainConfig / TestConfig."""
    names = {f.name for f in dataclasses.fields(target_cls)} & {f.name for f in dataclasses.fields(cfg)}
    return {name: getattr(cfg, name) for name in names - {"outdir"}}


def train_config_for(cfg, variant, seed):
    run = ProtocolLayout(cfg.outdir).run(variant, seed)
    return TrainConfig(**_shared(cfg, TrainConfig), outdir=str(run.root), variant=variant, random_seed=seed, save_epoch_freq=cfg.num_epoch)


def test_config_for(cfg, variant, seed):
    run = ProtocolLayout(cfg.outdir).run(variant, seed)
    return TestConfig(**{**_shared(cfg, TestConfig), "batch_size": cfg.eval_batch_size}, outdir=str(run.root), variant=variant,
                      model=str(run.weights))


def check_settings(run, train_cfg):
    """A finished run is reused only if it computed what the config asks for."""
    recorded = (run.read_record() or {}).get("settings", {})
    for key, wanted in result_settings(train_cfg).items():
        if key in recorded and recorded[key] != wanted:
            raise UserError(
                f"{run.root} was trained with {key} {json.dumps(recorded[key])}, the config says {json.dumps(wanted)}; "
                f"set another outdir for the new setting (or move that run away)"
            )


def run_all(cfg):
    layout = ProtocolLayout(cfg.outdir)
    jobs = [(name, s) for s in cfg.seeds for name in cfg.models]
    status = {(name, s): run_status(layout.run(name, s), cfg.num_epoch) for name, s in jobs}
    measured = {}
    for name, s in jobs:
        history = layout.run(name, s).history_json
        if history.exists():
            measured.setdefault(name, []).extend(h["train_seconds"] + h["val_seconds"] for h in json.loads(history.read_text()))
    progress = ProtocolProgress(cfg.protocol, cfg.num_epoch, {key: st.epochs_done or 0 for key, st in status.items()}, measured)
    try:
        for i, (name, seed) in enumerate(jobs, start=1):
            tc, run, state = train_config_for(cfg, name, seed), layout.run(name, seed), status[(name, seed)].state
            head = f"[{cfg.protocol}] run {i}/{len(jobs)}: {name}, seed {seed}"
            if state == "done":
                check_settings(run, tc)
                print(f"{head}: trained already, skipping")
            else:
                print(f"{head}: {'resuming' if state == 'partial' else 'training'} ({cfg.num_epoch} epochs)", flush=True)
                train(tc, resume=(state == "partial"), resume_command="python compare.py --config <same config> (it resumes by itself)",
                      on_epoch=lambda entry, name=name, seed=seed: progress.epoch_finished(name, seed, entry))
            if tested_epoch(run) != cfg.num_epoch:
                run_test(test_config_for(cfg, name, seed))
            if state != "done":
                files = " ".join(str(f) for f in run.result_files())
                print(f"{head}: finished; its result files are {files}", flush=True)
    finally:
        progress.close()


def load_runs(outdir, models, seeds):
    """{model_name: [{"seed", "history", "metrics"}, ...]} for every finished and tested run found."""
    runs = {}
    layout = ProtocolLayout(outdir)
    for name in models:
        for seed in seeds:
            run = layout.run(name, seed)
            if run.history_json.exists() and run.metrics.exists():
                runs.setdefault(name, []).append({"seed": seed, "history": json.loads(run.history_json.read_text()),
                                                  "metrics": json.loads(run.metrics.read_text()), "record": run.read_record()})
    return runs


def welch(a, b):
    """Welch's two-sample t-test (unequal variances) on two lists of accuracies; p = nan when undefined."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.std(a) == 0 and np.std(b) == 0:
        return 0.0 if np.mean(a) != np.mean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def summarize(runs):
    rows = []
    for name, rs in runs.items():
        acc = [r["metrics"]["accuracy"] for r in rs]
        best_val = [max(h["val_accuracy"] for h in r["history"]) for r in rs]
        sec = [h["train_seconds"] for r in rs for h in r["history"]]
        rows.append({
            "model": name, "seeds": len(rs), "epochs": len(rs[0]["history"]),
            "test_accuracy_mean": float(np.mean(acc)), "test_accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else float("nan"),
            "test_accuracies": acc, "best_val_accuracy_mean": float(np.mean(best_val)),
            "parameters": rs[0]["metrics"]["parameters"], "train_seconds_per_epoch": float(np.mean(sec)),
            "inference_images_per_s": float(np.mean([r["metrics"]["images_per_second"] for r in rs])),
            "per_class_accuracy": {c: float(np.mean([r["metrics"]["per_class_accuracy"][c] for r in rs])) for c in CLASSES},
        })
    pairs = []
    for a, b in combinations(rows, 2):
        p = welch(a["test_accuracies"], b["test_accuracies"])
        pairs.append({"a": a["model"], "b": b["model"], "difference": a["test_accuracy_mean"] - b["test_accuracy_mean"],
                      "p_value": p, "significant": bool(p < ALPHA) if not math.isnan(p) else False})
    return rows, pairs


def render(cfg, rows, pairs, environment):
    fmt = lambda v, spec: "n/a" if isinstance(v, float) and math.isnan(v) else format(v, spec)  # noqa: E731
    lines = [
        f"# Comparison, protocol `{cfg.protocol}`",
        "",
        f"{cfg.num_epoch} epochs, {'all 50,000' if cfg.train_subset is None else f'a stratified subset of {cfg.train_subset:,}'} training images "
        f"({1 - cfg.test_size:.0%} train / {cfg.test_size:.0%} validation), batch {cfg.batch_size}, AdamW lr {cfg.learning_rate} wd {cfg.weight_decay}, "
        f"conv_ch {list(cfg.conv_ch)}, seeds {list(cfg.seeds)}; test accuracy on the 10,000 official test images. {environment}",
        "",
        "| model | test accuracy (mean ± std) | per seed | best val acc | parameters | train s/epoch | inference img/s | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {fmt(r['test_accuracy_mean'], '.4f')} ± {fmt(r['test_accuracy_std'], '.4f')} | "
            f"{', '.join(f'{a:.4f}' for a in r['test_accuracies'])} | {r['best_val_accuracy_mean']:.4f} | {r['parameters']:,} | "
            f"{r['train_seconds_per_epoch']:.1f} | {r['inference_images_per_s']:.0f} | {r['epochs']} |"
        )
    lines += ["", f"Is the difference larger than the seed-to-seed spread? Welch's t-test on the per-seed test accuracies, two-sided, α = {ALPHA} "
              f"(with {len(cfg.seeds)} seeds the test only detects large differences):", ""]
    lines += ["| A − B | difference | p | larger than the spread? |", "|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p['a']} − {p['b']} | {p['difference']:+.4f} | {fmt(p['p_value'], '.3f')} | {'yes' if p['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


def environment(runs):
    """Where the runs were trained, from their records (every start/resume) and test metrics."""
    hosts, versions = set(), set()
    for r in (r for rs in runs.values() for r in rs):
        for seg in (r["record"] or {}).get("segments", []):
            if "host" in seg:
                h = seg["host"]
                isa = f", {h['cpu_isa']}" if h.get("cpu_isa") else ""
                hosts.add(f"{h['cpu']} ({h['cpus']} CPUs{isa}, {h['torch_threads']} torch threads)" if h["device"] == "cpu" else h["device"])
                versions.add(f"torch {seg['versions']['torch']}")
    metrics = [r["metrics"] for rs in runs.values() for r in rs]
    backends = sorted({m["dcn_backend"] for m in metrics if m.get("dcn_backend")})  # None for plain runs
    where = "; ".join(sorted(hosts)) or ", ".join(sorted({m["device"] for m in metrics}))
    versions_text = f", {', '.join(sorted(versions))}" if versions else ""
    backends_text = f"; dcn_backend {', '.join(backends)}" if backends else ""
    return f"Trained on: {where}{versions_text}{backends_text}."


def aggregate(cfg):
    runs = load_runs(cfg.outdir, cfg.models, cfg.seeds)
    if not runs:
        raise UserError(f"no finished runs under {cfg.outdir}; run compare.py without \"aggregate_only\" first")
    env = environment(runs)
    rows, pairs = summarize(runs)
    out = ProtocolLayout(cfg.outdir)
    write_json(out.file("comparison.json"), {"protocol": cfg.protocol, "config": dataclasses.asdict(cfg), "models": rows, "pairs": pairs, "environment": env})
    write_csv(out.file("comparison.csv"), [{k: v for k, v in r.items() if k not in ("test_accuracies", "per_class_accuracy")} for r in rows])
    report = render(cfg, rows, pairs, env)
    write_text(out.file("comparison.md"), report)
    plot_comparison_curves(runs, out.file("comparison_curves.png"), cfg.protocol)
    plot_comparison_accuracy(rows, out.file("comparison_accuracy.png"), cfg.protocol)
    plot_comparison_per_class(rows, CLASSES, out.file("comparison_per_class.png"), cfg.protocol)
    print(report)
    print(f"wrote {out.root}/comparison.md, .json, .csv, comparison_curves.png, comparison_accuracy.png, comparison_per_class.png")
    return rows, pairs


def compare(cfg):
    if not cfg.aggregate_only:
        run_all(cfg)
    return aggregate(cfg)
