"""Where every file of a run lives under result/, and the small record (run.json) that says how far the run got:
its one owner, for reading and writing.

One owner for the layout: training, testing, compare.py and the offsets figure all ask this module for
paths, never spell them out. A run folder (a train config's `outdir`) holds:

    run.json                  the status record (small, committed for finished protocol runs)
    lock                      while a compare.py worker trains or tests the run (utils/plumbing/locks.py)
    train/history.json|.csv   one entry per finished epoch
    train/loss.png
    train/weights.pth         final weights only (no optimizer state): the trained model, ~0.4 MB
    train/ckpt/last.pth       full state after the latest finished epoch, for resuming (large, never committed)
    train/ckpt/model_<e>.pth  full checkpoints every `save_epoch_freq` epochs
    test/metrics.json, test/confusion_matrix.png
    analysis/receptive_field.json|.png   what the trained model's output depends on (receptive_field.py)
    analysis/offsets.json                its offsets and masks over test images (deformable variants)

A run is *done* when its record says all epochs are trained and the final weights exist: that is what a
fresh clone has for committed runs, so compare.py needs no `last.pth` to know it can skip them. A compare
protocol's `outdir` holds one run folder per `<variant>/seed_<s>` plus the comparison files.

This module imports no torch: reading a record must not wait for it.
"""
import datetime
import json
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from utils.plumbing.files import write_json

RECORD_FORMAT = 1


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __init__(self, root):
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of_checkpoint(cls, checkpoint):
        """The run a checkpoint belongs to: <run>/train/weights.pth or <run>/train/ckpt/<name>.pth; a file
        anywhere else is treated as a run of its own folder."""
        path = Path(checkpoint).resolve()
        for root in (path.parent.parent, path.parent.parent.parent):
            if cls(root).weights == path or cls(root).ckpt == path.parent:
                return cls(root)
        return cls(path.parent)

    @property
    def record(self):
        return self.root / "run.json"

    @property
    def lock(self):
        return self.root / "lock"

    @property
    def train(self):
        return self.root / "train"

    @property
    def ckpt(self):
        return self.train / "ckpt"

    @property
    def last(self):
        return self.ckpt / "last.pth"

    def checkpoint(self, epoch):
        return self.ckpt / f"model_{epoch}.pth"

    @property
    def history_json(self):
        return self.train / "history.json"

    @property
    def history_csv(self):
        return self.train / "history.csv"

    @property
    def loss_png(self):
        return self.train / "loss.png"

    @property
    def weights(self):
        return self.train / "weights.pth"

    @property
    def test(self):
        return self.root / "test"

    @property
    def metrics(self):
        return self.test / "metrics.json"

    @property
    def confusion_png(self):
        return self.test / "confusion_matrix.png"

    @property
    def analysis(self):
        return self.root / "analysis"

    @property
    def receptive_field_json(self):
        return self.analysis / "receptive_field.json"

    @property
    def receptive_field_png(self):
        return self.analysis / "receptive_field.png"

    @property
    def offsets_json(self):
        return self.analysis / "offsets.json"

    def offsets_png(self, checkpoint):
        """The sampling-point figure of one of the run's checkpoints (visualize_offsets.py)."""
        return self.root / "offsets" / f"offsets_{Path(checkpoint).stem}.png"

    def has_training(self):
        return self.train.exists() and any(self.train.iterdir())

    def result_files(self):
        """The small files that keep a finished run's result (committed for the standard protocol)."""
        files = [self.record, self.history_json, self.history_csv, self.loss_png, self.weights, self.metrics, self.confusion_png,
                 self.receptive_field_json, self.receptive_field_png, self.offsets_json]
        return [f for f in files if f.exists()]

    # --- the status record -------------------------------------------------------------------------
    def read_record(self):
        """The record as a dict, or None when there is none (a new run, or one written by older code)."""
        try:
            return json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # missing, or unreadable: like no record; last.pth (if any) still says where the run is
            return None

    def write_record(self, *, variant, seed, num_epoch, epochs_done, trained, settings, segments):
        """run.json, whole: only RunRecord (below) writes it."""
        write_json(self.record, {
            "format": RECORD_FORMAT,
            "variant": variant,
            "seed": seed,
            "state": "trained" if trained else "partial",
            "epochs_done": epochs_done,
            "num_epoch": num_epoch,
            "settings": settings,  # what defines the result (architecture, data, optimiser): see train.py
            "segments": segments,  # one entry per start/resume: machine, versions, epochs, wall time
            "files": {"weights": _rel(self.weights, self.root), "history": _rel(self.history_json, self.root),
                      "metrics": _rel(self.metrics, self.root)},
        })


def _rel(path, root):
    return str(path.relative_to(root))


@dataclass(frozen=True)
class RunStatus:
    state: str  # "new", "partial" (resumable, or finished but not yet finalised) or "done"
    epochs_done: Optional[int]  # None: a run begun by a version that kept no record (its last.pth knows)
    tested: bool  # test metrics exist for the final epoch


def run_status(layout, num_epoch):
    """Where a run stands, from its small record alone (no checkpoint is opened)."""
    record = layout.read_record()
    if record is None:
        return RunStatus("partial", None, False) if layout.last.exists() else RunStatus("new", 0, False)
    epochs = int(record.get("epochs_done", 0))
    done = record.get("state") == "trained" and epochs == num_epoch and layout.weights.exists()
    return RunStatus("done" if done else "partial", epochs, done and tested_epoch(layout) == num_epoch)


def tested_epoch(layout):
    """The epoch of the weights the run's test metrics were computed from, or None."""
    try:
        return json.loads(layout.metrics.read_text(encoding="utf-8")).get("checkpoint_epoch")
    except (OSError, ValueError):
        return None


def reference_weights(variant):
    """Where the reference repository's weights of `variant` are tested (test_<Model>.py) and converted to (utils/engine/reference.py)."""
    return RunLayout(Path("result") / "reference-weights" / variant)


class ProtocolLayout:
    """A compare protocol's outdir: one run per (variant, seed), and the comparison files."""

    def __init__(self, outdir):
        self.root = Path(outdir)

    def run(self, variant, seed):
        return RunLayout(self.root / variant / f"seed_{seed}")

    def file(self, name):
        """comparison.md/.json/.csv and the comparison figures."""
        return self.root / name

    REPORT = "comparison*"  # every comparison file's name starts with "comparison"

    def report_pattern(self):
        """A glob (and git pathspec) that matches every comparison file."""
        return str(self.root / self.REPORT)

    def report_files(self):
        """The comparison files an aggregation left."""
        return sorted(p for p in self.root.glob(self.REPORT) if p.is_file())


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def code_version():
    """The project's git commit ("+changes" when the work tree differs from it), or None outside a git
    checkout: a run resumed after the code changed (the kernel, say) shows it in its segments."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") if head.returncode == 0 else None


class RunRecord:
    """Keeps a training run's run.json current: the settings that define its result, and one segment per start or
    resume (the machine, versions, backend, epochs and wall time). `state`: the checkpoint it resumes, or None;
    `versions`: the library versions of this process (torch, torchvision; the caller has them loaded)."""

    def __init__(self, run, cfg, state, host, versions, backend):
        self.run, self.cfg = run, cfg
        old = run.read_record() if state is not None else None
        self.segments = list(old["segments"]) if old else []
        if state is not None and not old and state["epoch"] > 0:  # a run begun by a version that kept no record
            self.segments.append({"epochs": [1, state["epoch"]], "note": "trained before runs kept a record",
                                  "epoch_seconds": sum(h["train_seconds"] + h["val_seconds"] for h in state["history"])})
        first = state["epoch"] + 1 if state is not None else 1
        self.segment = {
            "started": now(), "epochs": [first, state["epoch"] if state is not None else 0], "wall_seconds": 0.0,
            "host": host, "dcn_backend": backend,
            "versions": {**versions, "python": platform.python_version(), "code": code_version()},
        }
        self.start = time.perf_counter()

    def update(self, epochs_done, trained):
        self.segment["epochs"][1] = epochs_done
        self.segment["wall_seconds"] = round(time.perf_counter() - self.start, 1)
        trained_here = self.segment["epochs"][1] >= self.segment["epochs"][0]
        self.run.write_record(variant=self.cfg.variant, seed=self.cfg.random_seed, num_epoch=self.cfg.num_epoch,
                              epochs_done=epochs_done, trained=trained, settings=self.cfg.result_settings(),
                              segments=self.segments + ([self.segment] if trained_here else []))
