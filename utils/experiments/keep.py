"""Keep a long protocol in git, so that no machine change loses a run.

    python -m utils.experiments.keep --config config/compare_full.json [more configs]        (once: before you stop)
    python -m utils.experiments.keep --config config/compare_full.json --watch 120 --checkpoints-every 90   (in the background)

Each finished and tested run's small result files (RunLayout.result_files) are committed in a commit of their
own, and a checkpoint it may have had in git is dropped from the index; then the protocol's report is aggregated
again over every run finished so far and committed too, so the committed report covers the committed runs.
Without --watch the latest checkpoint of every run in progress is committed too (train/ckpt/last.pth, ~1 MB with
the optimizer state, plus its record and history): a fresh clone's compare.py then resumes that run from the same
epoch instead of from epoch 1.
--watch commits finished runs every few minutes; with --checkpoints-every it also commits the checkpoints in
progress, once per that many minutes: a session that ends without the command above (one did, and two runs' hours
were lost) then loses at most that much, while git collects a checkpoint (~2.8 MB for a ResNet-20 with SGD momentum) per interval
and run, not per epoch.

Only these paths are committed: what else is staged in the work tree stays staged (and out of these commits).
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from utils.plumbing.config import CompareConfig, load_config
from utils.plumbing.errors import UserError, run_cli
from utils.plumbing.runs import ProtocolLayout, run_status


def git(*args, check=True, index=None):
    """Run git; `index`: another index file than the work tree's (GIT_INDEX_FILE)."""
    env = {**os.environ, "GIT_INDEX_FILE": str(index)} if index else None
    done = subprocess.run(["git", *args], capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise UserError(f"git {' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def commit(adds, removes, message):
    """Commit `adds` (ignored files included) and drop `removes` from git (the files stay), and nothing else:
    the commit is built in an index of its own, started from HEAD, so whatever the work tree has staged stays
    staged and out of it. True when something changed."""
    adds, removes = [str(p) for p in adds], [str(p) for p in removes]
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        has_head = git("rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0
        git("read-tree", *(["HEAD"] if has_head else ["--empty"]), index=index)
        for where in (index, None):  # the commit's index, then the work tree's, so both agree on these paths
            if adds:
                git("add", "-f", "--", *adds, index=where)
            if removes:
                git("rm", "-q", "-f", "--cached", "--ignore-unmatch", "--", *removes, index=where)
            if where is index:
                if not git("diff", "--cached", "--name-only", index=index).stdout.strip():
                    return False
                git("commit", "-q", "-m", message, index=index)
    print(message, flush=True)
    return True


def keep(cfg, checkpoints):
    """Commit what `cfg`'s protocol has finished and, with `checkpoints`, where its runs in progress stand."""
    layout = ProtocolLayout(cfg.outdir)
    finished, tested = [], 0
    for name, seed in cfg.jobs():
        run = layout.run(name, seed)
        status = run_status(run, cfg.num_epoch)
        if status.state == "done" and status.tested and not run.lock.exists():  # locked: still writing its test files
            tested += 1
            metrics = json.loads(run.metrics.read_text())
            accuracy = f"test accuracy {metrics['accuracy']:.4f}" + (f", as trained {metrics['as_trained']['accuracy']:.4f}"
                                                                     if metrics.get("bn_statistics") == "precise" else "")
            what = finished_what(run, f"finished ({cfg.num_epoch} epochs, {accuracy})", f"tested again ({accuracy})")
            if commit(run.result_files(), [run.last], f"Protocol {cfg.protocol}: {name} seed {seed} {what}; keep its small result files"):
                finished.append(f"{name} seed {seed}")
        elif checkpoints and status.state == "partial" and run.last.exists():
            files = [f for f in (run.record, run.history_json, run.history_csv, run.loss_png, run.last) if f.exists()]
            commit(files, [], f"Protocol {cfg.protocol}: {name} seed {seed} at epoch {status.epochs_done}/{cfg.num_epoch}; keep its latest "
                          f"checkpoint so that a new machine resumes it there")
    if finished or report_is_stale(layout, tested):
        commit_report(cfg, layout, finished)


def finished_what(run, first, again):
    """What a commit of a finished run's files does: `first` for a run git does not hold yet; for one it holds,
    `again` if its test files changed, else that only its analysis was added or redone (receptive_field.py)."""
    if git("ls-files", "--error-unmatch", str(run.weights), check=False).returncode != 0:
        return first
    changed = [Path(line[3:]).resolve() for line in git("status", "--porcelain", "--", *map(str, run.result_files())).stdout.splitlines()]
    if changed and all(run.analysis.resolve() in path.parents for path in changed):
        return "analysed (effective receptive field, offsets)"
    return again


def report_is_stale(layout, tested):
    """Whether the report should be aggregated again although no run finished in this round: it counts another
    number of runs than have finished and been tested (a report commit that failed, a session that stopped before
    it), or its files differ from git's."""
    if not tested:
        return False  # nothing to aggregate yet
    try:
        runs = len(json.loads(layout.file("comparison.json").read_text())["runs"])
    except (OSError, ValueError, KeyError):
        return True
    return runs != tested or bool(git("status", "--porcelain", "--", layout.report_pattern()).stdout.strip())


def commit_report(cfg, layout, finished):
    """Aggregate `cfg`'s protocol over every run finished so far (compare.py with aggregate_only: no data, no
    training) and commit the report; a figure the new report no longer draws leaves git."""
    from utils.experiments.compare import aggregate  # torch and matplotlib load here, only when needed

    with contextlib.redirect_stdout(io.StringIO()):  # aggregate prints the whole report: not for a log
        rows, _ = aggregate(cfg)
    tracked = git("ls-files", "--", layout.report_pattern()).stdout.split()
    runs, after = sum(r["seeds"] for r in rows), f" (after {', '.join(finished)})" if finished else ""
    commit(layout.report_files(), [p for p in tracked if not Path(p).exists()],
           f"Protocol {cfg.protocol}: report aggregated again over the {runs} run{'s' * (runs != 1)} finished so far{after}")


def watch(configs, seconds, checkpoint_minutes=None, clock=time.monotonic, sleep=time.sleep):
    """Every `seconds`: commit finished runs; every `checkpoint_minutes` (if given), the runs in progress too. The
    first checkpoints come one interval after the start: until then git holds what the queue resumed from."""
    checkpoints_at = clock()
    while True:
        checkpoints = checkpoint_minutes is not None and clock() - checkpoints_at >= checkpoint_minutes * 60
        for cfg in configs:
            try:
                keep(cfg, checkpoints=checkpoints)
            except UserError as e:  # git busy (another commit holds the index): try again next round
                print(f"keep: {e}; trying again in {seconds:.0f} s", file=sys.stderr, flush=True)
        if checkpoints:
            checkpoints_at = clock()
        sleep(seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.experiments.keep", description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", required=True, help="the compare configs of the queue, e.g. config/compare_full.json")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="keep going: commit each run as it finishes")
    parser.add_argument("--checkpoints-every", type=float, metavar="MINUTES",
                        help="with --watch: also commit the checkpoints of runs in progress, once per MINUTES")
    args = parser.parse_args(argv)
    if args.checkpoints_every is not None and (args.watch is None or args.checkpoints_every <= 0):
        parser.error("--checkpoints-every needs --watch and a positive number of minutes, e.g. --watch 120 --checkpoints-every 90")

    def body():
        configs = [load_config(path, CompareConfig) for path in args.config]
        if args.watch is None:
            for cfg in configs:
                keep(cfg, checkpoints=True)
            return
        watch(configs, args.watch, args.checkpoints_every)

    run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
