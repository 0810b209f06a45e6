"""Shared test helpers: synthetic CIFAR-like data (no network, no md5 check), in-process script runs, and
the C++ kernel built once per session."""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton's kernels (the "triton" backend, tests/test_triton.py) run only in its interpreter, and the
# interpreter must be chosen before triton is first imported (torchvision imports it), so here, before anything else.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = Path(__file__).resolve().parent / "fixtures"

from models.deform_ops import cpp  # noqa: E402
from utils.cli import test_main, train_main  # noqa: E402
from utils.engine import data as data_mod  # noqa: E402

# The real CIFAR-10 for the end-to-end tests, found through the project's own setting ($CIFAR10_DIR, which CI points at
# ../shared/data), else beside the checkout.
REAL_DATA = Path(os.environ.get(data_mod.DATA_ENV) or ROOT.parent / "shared" / "data")
needs_real_data = pytest.mark.skipif(not (REAL_DATA / "cifar-10-batches-py").exists(), reason="real CIFAR-10 not present")


@pytest.fixture(autouse=True)
def no_data_setting(monkeypatch):
    """A test chooses its own data (synthetic, or a folder of its own): never the copy the environment points at."""
    monkeypatch.delenv(data_mod.DATA_ENV, raising=False)


@pytest.fixture
def real_data(monkeypatch):
    """Commands find the real CIFAR-10 as a user without internet makes them: $CIFAR10_DIR, with configs unedited."""
    monkeypatch.setenv(data_mod.DATA_ENV, str(REAL_DATA))
    return REAL_DATA


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


@pytest.fixture(scope="session")
def cpp_kernel():
    """The compiled C++ kernel, built once per test session. One rule everywhere: a machine without a C++
    compiler skips the cpp cases; a machine with one fails them if the kernel does not build."""
    if cpp.kernel() is None:
        if shutil.which(os.environ.get("CXX", "c++")) is None:
            pytest.skip("no C++ compiler on this machine: the cpp backend is unavailable (gather is used)")
        pytest.fail(f"a C++ compiler is present but the cpp kernel did not build: {cpp.build_error()}")
    return cpp.kernel()


def _backend(request):
    if request.param == "cpp":
        request.getfixturevalue("cpp_kernel")
    return request.param


@pytest.fixture(params=["gather", "cpp"])
def fast_backend(request):
    """Both of the project's own ops; "cpp" only where the kernel is available (see cpp_kernel)."""
    return _backend(request)


@pytest.fixture(params=["gather", "cpp", "torchvision"])
def any_backend(request):
    """Every backend of the op."""
    return _backend(request)


def make_train_config(tmp_path, variant="Conv2d", **overrides):
    cfg = {
        "outdir": str(tmp_path / "run"), "variant": variant, "conv_ch": [8, 16], "batch_size": 32,
        "test_size": 0.2, "random_seed": 0, "learning_rate": 0.01, "weight_decay": 0.01, "num_epoch": 2,
        "save_epoch_freq": 1, "data_dir": str(tmp_path / "data"), "download": False, "device": "cpu",
    }
    cfg.update(overrides)
    return cfg


def make_test_config(tmp_path, epoch=2, **overrides):
    cfg = {"model": str(tmp_path / "run" / "train" / "ckpt" / f"model_{epoch}.pth"), "batch_size": 16,
           "data_dir": str(tmp_path / "data"), "download": False, "device": "cpu"}
    cfg.update(overrides)
    return cfg


def write_config(path, cfg):
    path = Path(path)
    path.write_text(json.dumps(cfg) if not isinstance(cfg, str) else cfg)
    return str(path)


def run_script(kind, variant, config_path, *extra):
    """Run train_<variant>.py / test_<variant>.py in-process; returns the exit code (0 on success)."""
    main = train_main if kind == "train" else test_main
    try:
        main(variant, f"{kind}_{variant}.py", ["--config", str(config_path), *extra])
    except SystemExit as e:
        return e.code
    return 0
