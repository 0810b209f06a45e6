"""What a training run records about itself (utils/plumbing/runs.py holds the record's place and format):
the settings that define its result, and for every start or resume the machine, versions and wall time."""
import dataclasses
import platform
import subprocess
import time
from pathlib import Path

import torch
import torchvision

from models.network import model_args
from utils.engine.checkpoint import save_weights
from utils.plumbing import runs

# The config keys that define what a run computes besides its variant (not where or on what it runs). A
# finished run is only reused when these match (compare.py); they are stored in the run's record.
RESULT_KEYS = ("conv_ch", "batch_size", "test_size", "random_seed", "learning_rate", "weight_decay", "train_subset", "deformable_layers",
               "offset_lr_mult", "inputs", "bias", "predictor_init", "stratified_split", "validate_in_train_mode")


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


def result_settings(cfg):
    return {key: getattr(cfg, key) for key in RESULT_KEYS}


class Record:
    """Keeps the run's record (runs.py) current: one segment per start or resume of the training."""

    def __init__(self, run, cfg, state, device, backend):
        self.run, self.cfg = run, cfg
        old = run.read_record() if state is not None else None
        self.segments = list(old["segments"]) if old else []
        if state is not None and not old and state["epoch"] > 0:  # a run begun by a version that kept no record
            self.segments.append({"epochs": [1, state["epoch"]], "note": "trained before runs kept a record",
                                  "epoch_seconds": sum(h["train_seconds"] + h["val_seconds"] for h in state["history"])})
        first = state["epoch"] + 1 if state is not None else 1
        self.segment = {
            "started": runs.now(), "epochs": [first, state["epoch"] if state is not None else 0], "wall_seconds": 0.0,
            "host": runs.describe_host(device, torch.get_num_threads()), "dcn_backend": backend,
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version(),
                         "code": code_version()},
        }
        self.start = time.perf_counter()

    def update(self, epochs_done, trained):
        self.segment["epochs"][1] = epochs_done
        self.segment["wall_seconds"] = round(time.perf_counter() - self.start, 1)
        trained_here = self.segment["epochs"][1] >= self.segment["epochs"][0]
        self.run.write_record(variant=self.cfg.variant, seed=self.cfg.random_seed, num_epoch=self.cfg.num_epoch,
                              epochs_done=epochs_done, trained=trained, settings=result_settings(self.cfg),
                              segments=self.segments + ([self.segment] if trained_here else []))


def finish(run, record, cfg, model_state):
    """The files that keep a finished run: final weights, then the record that says it is done."""
    save_weights(run.weights, model_args(cfg), model_state, cfg.num_epoch, dataclasses.asdict(cfg))
    record.update(cfg.num_epoch, trained=True)
