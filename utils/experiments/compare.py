"""Train and test every variant of a protocol over several seeds, then aggregate: tables, tests, figures.

Layout: <outdir>/<variant>/seed_<s>/ (utils/plumbing/runs.py), and the comparison files in <outdir>.
Finished runs are skipped and partial runs resumed, so an interrupted comparison continues with what is
missing. The numbers are computed in report.py, the figures drawn in figures.py.
"""
import dataclasses
import functools
import json
import statistics

import torch

from models.registry import VARIANTS
from utils.engine.data import CLASSES
from utils.engine.device import resolve_device
from utils.engine.testing import run_test
from utils.engine.train import train
from utils.experiments.cluster import submit_all
from utils.experiments.figures import (
    plot_comparison_accuracy,
    plot_comparison_curves,
    plot_comparison_per_class,
    plot_controls,
    plot_receptive_fields,
    plot_robustness,
)
from utils.experiments.progress import ProtocolProgress, epoch_pace, eta_text, time_left
from utils.experiments.receptive_field import analyse
from utils.experiments.report import control_differences, render, summarize
from utils.plumbing.config import TestConfig, TrainConfig
from utils.plumbing.errors import UserError
from utils.plumbing.files import write_csv, write_json, write_text
from utils.plumbing.locks import LockHeld, RunLock, is_held
from utils.plumbing.machine import in_words, this_machine
from utils.plumbing.runs import ProtocolLayout, run_status, tested_epoch


def _shared(cfg, target_cls):
    """The keys a CompareConfig passes on unchanged to a TrainConfig / TestConfig."""
    names = {f.name for f in dataclasses.fields(target_cls)} & {f.name for f in dataclasses.fields(cfg)}
    return {name: getattr(cfg, name) for name in names - {"outdir"}}


def train_config_for(cfg, variant, seed):
    run = ProtocolLayout(cfg.outdir).run(variant, seed)
    shared = _shared(cfg, TrainConfig)
    if not VARIANTS[variant].takes_layers:  # the protocol's deformable_layers concerns the variants that change (or match) layers
        shared["deformable_layers"] = None
    return TrainConfig(**shared, outdir=str(run.root), variant=variant, random_seed=seed, save_epoch_freq=cfg.num_epoch)


def test_config_for(cfg, variant, seed):
    run = ProtocolLayout(cfg.outdir).run(variant, seed)
    return TestConfig(**{**_shared(cfg, TestConfig), "batch_size": cfg.eval_batch_size}, outdir=str(run.root), variant=variant,
                      model=str(run.weights))


def check_settings(run, train_cfg):
    """A finished run is reused only if it computed what the config asks for (a key its record lacks: its default)."""
    mismatch = train_cfg.settings_mismatch((run.read_record() or {}).get("settings", {}))
    if mismatch:
        raise UserError(f"{run.root} {mismatch}; set another outdir for the new setting (or move that run away)")


def needs_test(run, cfg):
    """No test metrics of the final weights yet, or not the BatchNorm statistics or robustness the config asks for."""
    if tested_epoch(run) != cfg.num_epoch:
        return True
    report = json.loads(run.metrics.read_text())
    if cfg.precise_bn and (report.get("bn_statistics") != "precise" or report["precise_bn"]["subset"] != cfg.precise_bn_images
                           or "augmentation" in report["precise_bn"]):  # a protocol's statistics are un-augmented
        return True
    if not cfg.robustness:
        return False
    return report.get("robustness") is None or report["robustness"]["subset"] != cfg.robustness_images


def needs_analysis(run, cfg, name):
    """No receptive-field analysis (receptive_field.py) of the final weights yet, or a deformable run without its offset summary."""
    try:
        analysed = json.loads(run.receptive_field_json.read_text()).get("checkpoint_epoch")
    except (OSError, ValueError):
        return True
    return analysed != cfg.num_epoch or (VARIANTS[name].deformable and not run.offsets_json.exists())


def run_one(cfg, name, seed, wait, progress=None, head=None):
    """Train (or resume) and test one run of the protocol under its lock. wait=False: raise LockHeld when another
    live worker holds it; wait=True: wait for that worker, then find the run done and only check it."""
    run, head = ProtocolLayout(cfg.outdir).run(name, seed), head or f"[{cfg.protocol}] {name}, seed {seed}"
    lock = RunLock(run.lock).acquire(wait=wait)
    try:
        tc, state = train_config_for(cfg, name, seed), run_status(run, cfg.num_epoch).state  # read under the lock
        if state == "done":
            check_settings(run, tc)
            print(f"{head}: trained already, skipping")
        else:
            print(f"{head}: {'resuming' if state == 'partial' else 'training'} ({cfg.num_epoch} epochs)", flush=True)
            on_epoch = (lambda entry: progress.epoch_finished(name, seed)) if progress else None
            train(tc, resume=(state == "partial"), resume_command="python compare.py --config <same config> (it resumes by itself)", on_epoch=on_epoch)
        if needs_test(run, cfg):
            run_test(test_config_for(cfg, name, seed))
        if needs_analysis(run, cfg, name):
            analyse(run.weights, run, cfg.data_dir, cfg.download, device=cfg.device)
        if state != "done":
            print(f"{head}: finished; its result files are {' '.join(str(f) for f in run.result_files())}", flush=True)
    finally:
        lock.release()


def cluster_job(cfg, name, seed):
    """One run as a cluster job (launcher slurm or submitit-local): as many torch threads as the job has CPUs."""
    torch.set_num_threads(cfg.cluster.cpus)
    run_one(cfg, name, seed, wait=True)


def this_pace(cfg):
    """This process's pace as its training segments will record it (machine and threads in words), so that an
    estimate takes the epochs timed like its own."""
    return in_words(this_machine(resolve_device(cfg.device), torch.get_num_threads()))


def protocol_state(layout, jobs, num_epoch):
    """Where the protocol stands on disk, every worker's runs included: (epochs done per job, measured epoch
    seconds per variant and pace, the jobs a worker holds now). A pace is the machine and thread count in words
    (machine.in_words) from the run record's segment that trained the epoch; None where no segment says."""
    done, measured, held = {}, {}, []
    for name, s in jobs:
        run = layout.run(name, s)
        done[(name, s)] = run_status(run, num_epoch).epochs_done or 0
        if is_held(run.lock):
            held.append((name, s))
        if run.history_json.exists():  # written atomically: another worker's is never read half-written
            history = json.loads(run.history_json.read_text())
            pace = {}
            for segment in (run.read_record() or {}).get("segments", []):
                if "host" in segment and "epochs" in segment:
                    first, last = segment["epochs"]
                    pace.update(dict.fromkeys(range(first, last + 1), in_words(segment["host"])))
            for h in history:
                measured.setdefault(name, {}).setdefault(pace.get(h["epoch"]), []).append(h["train_seconds"] + h["val_seconds"])
    return done, measured, held


def status(cfg):
    """Where the protocol stands, read from disk (compare.py --status; trains nothing): runs trained, in progress and
    not started, and the time left at the pace of the workers now training (the machine and threads their runs'
    records name last), else at this process's pace."""
    layout, jobs = ProtocolLayout(cfg.outdir), cfg.jobs()
    done, measured, held = protocol_state(layout, jobs, cfg.num_epoch)
    paces = [in_words(segments[-1]["host"]) for segments in ((layout.run(*job).read_record() or {}).get("segments", []) for job in held)
             if segments and "host" in segments[-1]]
    pace = max(set(paces), key=paces.count) if paces else this_pace(cfg)
    eta = eta_text(*time_left(done, measured, cfg.num_epoch, pace, held))
    partial = [job for job in jobs if done[job] < cfg.num_epoch and (done[job] > 0 or job in held)]  # a held run may be at epoch 0
    trained = sum(done[job] >= cfg.num_epoch for job in jobs)
    lines = [f"[{cfg.protocol}] {trained} of {len(jobs)} runs trained, {len(partial)} in progress, "
             f"{len(jobs) - trained - len(partial)} not started; {len(held)} held by a worker now. "
             f"Left: {eta} with {max(1, len(held))} worker{'s' * (len(held) > 1)} at the pace of {pace}"]
    lines += [f"  {name} seed {seed}: {done[(name, seed)]}/{cfg.num_epoch} epochs{' (a worker has it)' * ((name, seed) in held)}"
              for name, seed in partial]
    for name in dict.fromkeys(name for name, _ in jobs):
        to_go = sum(cfg.num_epoch - done[job] for job in jobs if job[0] == name)
        if to_go:
            times, borrowed = epoch_pace(measured.get(name, {}), pace)
            at = (f"{statistics.median(times) / 60:.1f} min per epoch, the median of {len(times)} measured "
                  f"{'at other paces (none at this one yet)' if borrowed else 'at this pace'}") if times else "no epoch measured yet"
            lines.append(f"  {name}: {to_go} epochs to go; {at}")
    print("\n".join(lines), flush=True)


def train_runs(cfg, jobs, wait):
    """Train (or resume) and test `jobs` of the protocol in this process, one after another. wait=False: a run another
    worker holds (a second compare.py, a cluster job) is passed over and returned; wait=True: waited for."""
    every = cfg.jobs()
    progress = ProtocolProgress(cfg.protocol, cfg.num_epoch, functools.partial(protocol_state, ProtocolLayout(cfg.outdir), every, cfg.num_epoch),
                                this_pace(cfg))
    numbered = {job: f"[{cfg.protocol}] run {i}/{len(every)}: {job[0]}, seed {job[1]}" for i, job in enumerate(every, start=1)}
    held = []
    try:
        for name, seed in jobs:
            try:
                run_one(cfg, name, seed, wait, progress, numbered[(name, seed)])
            except LockHeld as e:
                print(f"{numbered[(name, seed)]}: another worker has it ({e}); coming back to it at the end", flush=True)
                held.append((name, seed))
    finally:
        progress.close()
    return held


def load_runs(outdir, jobs):
    """{model_name: [{"seed", "history", "metrics"}, ...]} for every finished and tested run of `jobs` found,
    variants in the order the jobs first name them."""
    runs = {}
    layout = ProtocolLayout(outdir)
    for name in dict.fromkeys(name for name, _ in jobs):
        for seed in sorted(s for n, s in jobs if n == name):
            run = layout.run(name, seed)
            if run.history_json.exists() and run.metrics.exists():
                analysis = {key: json.loads(path.read_text()) for key, path in (("receptive_field", run.receptive_field_json),
                                                                                ("offsets", run.offsets_json)) if path.exists()}
                runs.setdefault(name, []).append({"seed": seed, "history": json.loads(run.history_json.read_text()),
                                                  "metrics": json.loads(run.metrics.read_text()), "record": run.read_record(), **analysis})
    return runs


def environment(runs):
    """Where the runs were trained, from their records (every start/resume) and test metrics."""
    hosts, versions = set(), set()
    for r in (r for rs in runs.values() for r in rs):
        for seg in (r["record"] or {}).get("segments", []):
            if "host" in seg:
                hosts.add(in_words(seg["host"]))
                versions.add(f"torch {seg['versions']['torch']}")
    metrics = [r["metrics"] for rs in runs.values() for r in rs]
    backends = sorted({m["dcn_backend"] for m in metrics if m.get("dcn_backend")})  # None for plain runs
    where = "; ".join(sorted(hosts)) or ", ".join(sorted({m["device"] for m in metrics}))
    versions_text = f", {', '.join(sorted(versions))}" if versions else ""
    backends_text = f"; dcn_backend {', '.join(backends)}" if backends else ""
    tested = sorted({in_words(m["host"]) for m in metrics if "host" in m})  # test metrics name their machine since 2026-11-27
    unnamed = sum("host" not in m for m in metrics)
    tested_text = ""
    if tested:
        note = f" ({unnamed} run{'s' * (unnamed != 1)} tested before tests recorded their machine)" if unnamed else ""
        tested_text = f" Tested on: {'; '.join(tested)}{note}."
    return f"Trained on: {where}{versions_text}{backends_text}.{tested_text}"


def plot_protocol_receptive_fields(runs, path, protocol):
    """Each variant's first analysed seed, side by side on one colour scale; False when no run has been analysed."""
    first = {name: min((r for r in rs if "receptive_field" in r), key=lambda r: r["seed"], default=None) for name, rs in runs.items()}
    reports = {f"{name} (seed {r['seed']})": r["receptive_field"] for name, r in first.items() if r}
    if not reports:
        return False
    images = next(iter(reports.values()))["images"]
    plot_receptive_fields(reports, path, f"Effective receptive field of the last block's units, mean |gradient| over {images:,} test images [{protocol}]")
    return True


def aggregate(cfg):
    runs = load_runs(cfg.outdir, cfg.jobs())
    if not runs:
        raise UserError(f"no finished runs under {cfg.outdir}; run compare.py without \"aggregate_only\" first")
    env = environment(runs)
    rows, pairs, per_run = summarize(runs)
    out = ProtocolLayout(cfg.outdir)
    # Where this machine keeps CIFAR-10, and whether this call trained or only aggregated, are not part of the result:
    # left out, so the file is the same on every machine and from every way of writing it (the watcher, a fresh clone).
    config = {k: v for k, v in cfg.as_record().items() if k not in ("data_dir", "download", "aggregate_only")}
    write_json(out.file("comparison.json"), {"protocol": cfg.protocol, "config": config, "models": rows, "pairs": pairs, "runs": per_run,
                                             "environment": env})
    write_csv(out.file("comparison.csv"), [{k: v for k, v in r.items() if not isinstance(v, (list, dict)) and v is not None} for r in rows])
    report = render(cfg, rows, pairs, per_run, env)
    write_text(out.file("comparison.md"), report)
    plot_comparison_curves(runs, out.file("comparison_curves.png"), cfg.protocol)
    plot_comparison_accuracy(rows, out.file("comparison_accuracy.png"), cfg.protocol)
    plot_comparison_per_class(rows, CLASSES, out.file("comparison_per_class.png"), cfg.protocol)
    figures = "comparison_curves.png, comparison_accuracy.png, comparison_per_class.png"
    optional = (("comparison_controls.png", lambda path: plot_controls(control_differences(rows, pairs), path, cfg.protocol)),
                ("comparison_robustness.png", lambda path: plot_robustness(rows, path, cfg.protocol)),
                ("comparison_receptive_field.png", lambda path: plot_protocol_receptive_fields(runs, path, cfg.protocol)))
    for name, plot in optional:
        if plot(out.file(name)):
            figures += f", {name}"
        else:
            out.file(name).unlink(missing_ok=True)  # one from an earlier aggregation would not belong to this report
    print(report)
    print(f"wrote {out.root}/comparison.md, .json, .csv, {figures}")
    return rows, pairs


def compare(*cfgs):
    """Train, test and aggregate each protocol in turn (a queue). A local run another worker holds is waited for only
    after every protocol's other runs, so a worker never idles at one protocol's tail while a later one has runs that
    nobody trains; a protocol is aggregated as soon as all its runs are done. Returns the last protocol's (rows, pairs)."""
    waiting, results = [], {}
    for i, cfg in enumerate(cfgs):
        if cfg.aggregate_only:
            pass  # the report from the runs' files alone
        elif cfg.launcher != "local":
            layout = ProtocolLayout(cfg.outdir)
            todo = [(name, s) for name, s in cfg.jobs() if run_status(layout.run(name, s), cfg.num_epoch).state != "done"
                    or needs_test(layout.run(name, s), cfg) or needs_analysis(layout.run(name, s), cfg, name)]
            submit_all(cfg, cluster_job, todo)
        elif held := train_runs(cfg, cfg.jobs(), wait=False):
            waiting.append((i, held))
            continue
        results[i] = aggregate(cfg)
    for i, held in waiting:
        train_runs(cfgs[i], held, wait=True)
        results[i] = aggregate(cfgs[i])
    return results[len(cfgs) - 1]
