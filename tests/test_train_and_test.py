"""train_<name>.py -> test_<name>.py end to end on synthetic data, and the run-safety rules."""
import json
from pathlib import Path

import pytest
import torch
from conftest import make_test_config, make_train_config, run_script, write_config

from models.factory import build_model
from utils.engine import train as train_mod
from utils.engine.checkpoint import load_checkpoint
from utils.engine.data import Batches, split_train_val
from utils.engine.evaluate import evaluate
from utils.plumbing.config import TrainConfig, parse_config


def files_under(path):
    path = Path(path)
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")} if path.exists() else {}


# DCNv2 in the fast lane (it has every part); the other two in the full suite.
@pytest.mark.parametrize("variant", [pytest.param("Conv2d", marks=pytest.mark.slow), pytest.param("DeformConv2d", marks=pytest.mark.slow),
                                     "DeformConv2dv2"])
def test_train_then_test_writes_everything(tmp_path, synthetic_data, variant, capsys):
    cfg = write_config(tmp_path / "train.json", make_train_config(tmp_path, variant, num_epoch=3, save_epoch_freq=2))
    assert run_script("train", variant, cfg) == 0
    train_dir = tmp_path / "run" / "train"
    for name in ("loss.png", "history.json", "history.csv", "weights.pth", "ckpt/model_2.pth", "ckpt/model_3.pth", "ckpt/last.pth"):
        assert (train_dir / name).stat().st_size > 0, name
    assert not (train_dir / "ckpt/model_1.pth").exists()
    history = json.loads((train_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # a short run lowers the loss
    state = load_checkpoint(train_dir / "ckpt/model_3.pth")
    assert state["model_args"] == {"variant": variant, "conv_ch": [8, 16], "deformable_layers": None, "bias": True, "inputs": "standardized",
                                   "network": "convnet"}
    # The file leaves out what later keys hold at their defaults, so it is the file an earlier version wrote.
    stored = torch.load(train_dir / "ckpt/model_3.pth", weights_only=True)
    assert "network" not in stored["model_args"] and not {"network", "optimizer", "lr_schedule", "augmentation"} & set(stored["config"])
    assert state["config"]["num_epoch"] == 3
    weights = load_checkpoint(train_dir / "weights.pth")
    assert set(weights) == {"format", "model_args", "epoch", "model", "config"}  # no optimizer state
    assert all(torch.equal(weights["model"][k], state["model"][k]) for k in state["model"])

    # The test config names only the checkpoint: variant and widths come from it.
    test_cfg = write_config(tmp_path / "test.json", make_test_config(tmp_path, epoch=3))
    assert run_script("test", variant, test_cfg) == 0
    metrics = json.loads((tmp_path / "run" / "test" / "metrics.json").read_text())
    assert metrics["test_images"] == 50 and metrics["variant"] == variant and metrics["checkpoint_epoch"] == 3
    assert sum(map(sum, metrics["confusion_matrix"])) == 50
    assert metrics["accuracy"] == sum(metrics["confusion_matrix"][i][i] for i in range(10)) / 50
    assert metrics["host"]["device"] == "cpu" and metrics["host"]["cpus"] >= 1  # where it was tested: speed and rotated bytes depend on it
    assert (tmp_path / "run" / "test" / "confusion_matrix.png").stat().st_size > 0
    assert "test accuracy" in capsys.readouterr().out


def test_validation_loss_is_over_the_validation_split_alone(tmp_path, synthetic_data):
    raw = make_train_config(tmp_path, num_epoch=1)
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", raw)) == 0
    history = json.loads((tmp_path / "run/train/history.json").read_text())
    state = load_checkpoint(tmp_path / "run/train/ckpt/model_1.pth")
    model = build_model("Conv2d", [8, 16])
    model.load_state_dict(state["model"])
    cfg = parse_config(raw, TrainConfig)
    _, val = split_train_val(train_mod.data_mod.load_cifar10(None, True, False), cfg.test_size, cfg.random_seed)
    again = evaluate(model, Batches(val, 7, "cpu"))
    assert history[0]["val_loss"] == pytest.approx(again.loss, rel=1e-5)
    assert history[0]["val_accuracy"] == again.accuracy


def test_existing_run_is_refused_then_resumed_or_overwritten(tmp_path, synthetic_data, capsys):
    cfg = write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=1))
    assert run_script("train", "Conv2d", cfg) == 0
    before = files_under(tmp_path / "run")
    assert run_script("train", "Conv2d", cfg) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err and "--overwrite" in err
    assert files_under(tmp_path / "run") == before
    assert run_script("train", "Conv2d", cfg, "--overwrite") == 0
    assert files_under(tmp_path / "run") != before


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(tmp_path, synthetic_data):
    for variant in ("Conv2d", "DeformConv2dv2"):
        full = tmp_path / f"full{variant}"
        part = tmp_path / f"part{variant}"
        cfg_full = write_config(tmp_path / "full.json", make_train_config(tmp_path, variant, outdir=str(full), num_epoch=3))
        cfg_part = make_train_config(tmp_path, variant, outdir=str(part), num_epoch=1)
        assert run_script("train", variant, cfg_full) == 0
        assert run_script("train", variant, write_config(tmp_path / "part.json", cfg_part)) == 0
        # Extend the finished 1-epoch run to 3, with the --set override instead of editing the file.
        assert run_script("train", variant, write_config(tmp_path / "part.json", cfg_part), "--resume", "--set", "num_epoch=3") == 0
        a, b = load_checkpoint(full / "train/ckpt/last.pth"), load_checkpoint(part / "train/ckpt/last.pth")
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), key
        strip = lambda h: [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in h]  # noqa: E731
        assert strip(a["history"]) == strip(b["history"])


def test_resume_of_a_finished_run_says_how_to_extend(tmp_path, synthetic_data, capsys):
    cfg = write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=1))
    assert run_script("train", "Conv2d", cfg) == 0
    assert run_script("train", "Conv2d", cfg, "--resume") == 2
    assert "raise num_epoch" in capsys.readouterr().err


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path, synthetic_data, monkeypatch, capsys):
    real = train_mod.train_one_epoch

    def interrupt_in_epoch_2(model, optimizer, schedule, batches, epoch, num_epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(model, optimizer, schedule, batches, epoch, num_epoch)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupt_in_epoch_2)
    cfg = write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=3))
    assert run_script("train", "Conv2d", cfg) == 130
    err = capsys.readouterr().err
    assert "interrupted in epoch 2" in err and "--resume" in err and "Traceback" not in err
    assert load_checkpoint(tmp_path / "run/train/ckpt/last.pth")["epoch"] == 1
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    assert run_script("train", "Conv2d", cfg, "--resume") == 0
    assert [h["epoch"] for h in json.loads((tmp_path / "run/train/history.json").read_text())] == [1, 2, 3]


def test_non_finite_loss_stops_with_epoch_and_batch(tmp_path, synthetic_data, capsys):
    cfg = write_config(tmp_path / "t.json", make_train_config(tmp_path, learning_rate=1e30, num_epoch=3))
    assert run_script("train", "Conv2d", cfg) == 2
    err = capsys.readouterr().err
    assert "the loss became" in err and "epoch" in err and "batch" in err and "lower learning_rate" in err
    last = load_checkpoint(tmp_path / "run/train/ckpt/last.pth")
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def test_checkpoint_that_runs_code_is_refused_without_running_it(tmp_path, synthetic_data, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pth"
    torch.save({"model_args": {"variant": "Conv2d", "conv_ch": [8, 16]}, "model": {}, "payload": Evil()}, bad)
    cfg = write_config(tmp_path / "test.json", make_test_config(tmp_path, model=str(bad)))
    assert run_script("test", "Conv2d", cfg) == 2
    assert "refusing checkpoint" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage, message", [
    ("truncated", "checkpoint {} is truncated or corrupt (OSError); use another checkpoint or retrain"),
    ("garbage", "checkpoint {} is truncated or corrupt (not a readable checkpoint); use another checkpoint or retrain"),
    ("missing", "checkpoint {} does not exist; train first or fix the path"),
    ("not ours", "{} is not a checkpoint written by this tool (no model arguments and weights); pass a train/weights.pth"),
], ids=["truncated", "garbage", "missing", "not ours"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, synthetic_data, capsys, damage, message):
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=1))) == 0
    ckpt = tmp_path / "run/train/ckpt/model_1.pth"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint at all")
    elif damage == "missing":
        ckpt.unlink()
    else:
        torch.save({"weights": torch.zeros(3)}, ckpt)
    assert run_script("test", "Conv2d", write_config(tmp_path / "test.json", make_test_config(tmp_path, epoch=1))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(ckpt)) and err.count("\n") == 1
    assert not (tmp_path / "run/test").exists()


@pytest.mark.parametrize("script, change, message", [
    ("Conv2d", {"conv_ch": [8, 32]}, "holds conv_ch [8, 16], but the config asks for conv_ch [8, 32]"),
    ("DeformConv2d", {"variant": "DeformConv2d"}, "holds variant Conv2d, but the config asks for variant DeformConv2d"),
    ("DeformConv2d", {}, "holds a Conv2d model; test it with test_Conv2d.py, not test_DeformConv2d.py"),
], ids=["conv_ch", "variant", "script"])
def test_checkpoint_for_another_model_is_refused(tmp_path, synthetic_data, capsys, script, change, message):
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=1))) == 0
    cfg = {**make_test_config(tmp_path, epoch=1), **change}
    assert run_script("test", script, write_config(tmp_path / "test.json", cfg)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {cfg['model']} {message}") and err.count("\n") == 1
    assert not (tmp_path / "run/test").exists()


def test_data_missing_is_one_clear_message(tmp_path, capsys):
    cfg = write_config(tmp_path / "t.json", make_train_config(tmp_path, data_dir=str(tmp_path / "nowhere")))
    assert run_script("train", "Conv2d", cfg) == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "nowhere" in err and "data_dir" in err
    assert not (tmp_path / "run").exists()


def test_gpu_out_of_memory_suggests_a_smaller_batch(tmp_path, synthetic_data, monkeypatch, capsys):
    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(train_mod, "train_one_epoch", out_of_memory)
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", make_train_config(tmp_path, batch_size=64))) == 2
    err = capsys.readouterr().err
    assert "out of GPU memory" in err and "smaller batch_size (e.g. 32)" in err and "Traceback" not in err


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, synthetic_data, monkeypatch):
    cfg = write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=1))
    assert run_script("train", "Conv2d", cfg) == 0
    last = tmp_path / "run/train/ckpt/last.pth"
    good = last.read_bytes()
    real_save = torch.save

    def crash_half_way(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_half_way)
    from utils.engine.checkpoint import save_checkpoint

    with pytest.raises(OSError):
        save_checkpoint(last, build_model("Conv2d", [8, 16]), None, 5, [], {})
    monkeypatch.setattr(torch, "save", real_save)
    assert last.read_bytes() == good
    assert not [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_data_setting_wins_over_data_dir_and_is_named_when_wrong(tmp_path, monkeypatch, capsys):
    from utils.engine.data import DATA_ENV, data_location

    monkeypatch.setenv(DATA_ENV, str(tmp_path / "copy"))
    assert data_location("./data", True) == (tmp_path / "copy", False, f"the environment variable {DATA_ENV}")  # never downloaded into
    cfg = write_config(tmp_path / "t.json", make_train_config(tmp_path, data_dir=str(tmp_path / "elsewhere"), download=True))
    assert run_script("train", "Conv2d", cfg) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and DATA_ENV in err and str(tmp_path / "copy") in err and "elsewhere" not in err
    assert not (tmp_path / "run").exists()
