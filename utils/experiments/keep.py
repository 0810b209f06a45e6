"""Keep a long protocol in git, so that no machine change loses a run.

    python -m utils.experiments.keep --config config/compare_full.json [more configs]        (once: before you stop)
    python -m utils.experiments.keep --config config/compare_full.json --watch 120           (in the background)

Each finished and tested run's small result files (RunLayout.result_files) are committed in a commit of their
own, and a checkpoint it may have had in git is dropped from the index. Without --watch the latest checkpoint
of every run in progress is committed too (train/ckpt/last.pth, ~1 MB with the optimizer state, plus its record
and history): a fresh clone's compare.py then resumes that run from the same epoch instead of from epoch 1.
--watch only commits finished runs (every few minutes), so git does not collect a checkpoint per epoch.

Only these paths are committed (`git commit -- <paths>`): what else is staged in the work tree stays staged.
"""
import argparse
import json
import subprocess
import sys
import time

from utils.cli import run_cli
from utils.plumbing.config import CompareConfig, load_config
from utils.plumbing.errors import UserError
from utils.plumbing.runs import ProtocolLayout, run_status


def git(*args, check=True):
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise UserError(f"git {' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def tracked(path):
    return git("ls-files", "--error-unmatch", str(path), check=False).returncode == 0


def commit(paths, message):
    """Stage `paths` (ignored files included), drop the checkpoints listed as `("rm", path)`, commit only these;
    True when something changed."""
    adds = [str(p) for p in paths if not isinstance(p, tuple)]
    removes = [str(p[1]) for p in paths if isinstance(p, tuple) and tracked(p[1])]
    if adds:
        git("add", "-f", "--", *adds)
    if removes:
        git("rm", "-q", "--cached", "--", *removes)
    every = adds + removes
    if not every or not git("diff", "--cached", "--name-only", "--", *every).stdout.strip():
        return False
    git("commit", "-q", "-m", message, "--", *every)
    print(message, flush=True)
    return True


def keep(cfg, checkpoints):
    """Commit what `cfg`'s protocol has finished and, with `checkpoints`, where its runs in progress stand."""
    layout = ProtocolLayout(cfg.outdir)
    for name, seed in cfg.jobs():
        run = layout.run(name, seed)
        status = run_status(run, cfg.num_epoch)
        if status.state == "done" and status.tested:
            accuracy = json.loads(run.metrics.read_text())["accuracy"]
            commit([*run.result_files(), ("rm", run.last)],
                   f"Protocol {cfg.protocol}: {name} seed {seed} finished ({cfg.num_epoch} epochs, test accuracy {accuracy:.4f}); "
                   f"keep its small result files")
        elif checkpoints and status.state == "partial" and run.last.exists():
            files = [f for f in (run.record, run.history_json, run.history_csv, run.loss_png, run.last) if f.exists()]
            commit(files, f"Protocol {cfg.protocol}: {name} seed {seed} at epoch {status.epochs_done}/{cfg.num_epoch}; keep its latest "
                          f"checkpoint so that a new machine resumes it there")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.experiments.keep", description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", required=True, help="the compare configs of the queue, e.g. config/compare_full.json")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="keep going: commit each run as it finishes (no checkpoints)")
    args = parser.parse_args(argv)

    def body():
        configs = [load_config(path, CompareConfig) for path in args.config]
        if args.watch is None:
            for cfg in configs:
                keep(cfg, checkpoints=True)
            return
        while True:
            for cfg in configs:
                try:
                    keep(cfg, checkpoints=False)
                except UserError as e:  # git busy (another commit holds the index): try again next round
                    print(f"keep: {e}; trying again in {args.watch:.0f} s", file=sys.stderr, flush=True)
            time.sleep(args.watch)

    run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
