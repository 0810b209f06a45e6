"""Shared test helpers: synthetic CIFAR-like data (no network, no md5 check) and in-process script runs."""
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL_DATA = ROOT.parent / "shared" / "data"

from utils import data as data_mod  # noqa: E402
from utils.cli import test_main, train_main  # noqa: E402

NAMES = {1: "Conv2d", 2: "DeformConv2d", 3: "DeformConv2dv2"}


def synthetic_set(n, seed):
    """Images whose class is visible (a class-specific colour in a class-specific quadrant) plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 80, (n, 3, 32, 32), generator=g)
    for c in range(10):
        idx = labels == c
        y, x = (c // 4) * 10, (c % 4) * 8
        images[idx, c % 3, y : y + 12, x : x + 8] += 170
    return data_mod.ImageSet(images.clamp(0, 255).to(torch.uint8), labels)


@pytest.fixture
def synthetic_data(monkeypatch):
    """Replace CIFAR-10 loading by small synthetic sets: 200 training and 50 test images."""
    calls = []

    def fake_load(data_dir, train, download):
        calls.append(train)
        return synthetic_set(200 if train else 50, seed=1 if train else 2)

    monkeypatch.setattr(data_mod, "load_cifar10", fake_load)
    return calls


def make_train_config(tmp_path, model_type=1, **overrides):
    cfg = {
        "outdir": str(tmp_path / "run"), "model_type": model_type, "conv_ch": [8, 16], "batch_size": 32,
        "test_size": 0.2, "random_seed": 0, "learning_rate": 0.01, "weight_decay": 0.01, "num_epoch": 2,
        "save_epoch_freq": 1, "data_dir": str(tmp_path / "data"), "download": False, "device": "cpu",
    }
    cfg.update(overrides)
    return cfg


def make_test_config(tmp_path, model_type=1, epoch=2, **overrides):
    cfg = {
        "outdir": str(tmp_path / "run"), "model_type": model_type,
        "model": str(tmp_path / "run" / "train" / "ckpt" / f"model_{epoch}.pth"), "conv_ch": [8, 16],
        "batch_size": 16, "data_dir": str(tmp_path / "data"), "download": False, "device": "cpu",
    }
    cfg.update(overrides)
    return cfg



def write_config(path, cfg):
    path = Path(path)
    path.write_text(json.dumps(cfg) if not isinstance(cfg, str) else cfg)
    return str(path)


def run_script(kind, model_type, config_path, *extra):
    """Run train_<name>.py / test_<name>.py in-process; returns the exit code (0 on success)."""
    main = train_main if kind == "train" else test_main
    try:
        main(model_type, f"{kind}_{NAMES[model_type]}.py", ["--config", str(config_path), *extra])
    except SystemExit as e:
        return e.code
    return 0
