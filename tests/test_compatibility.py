"""What users already have keeps working: checkpoints and configs written before variants had names."""
import json
import shutil

import pytest
from conftest import FIXTURES, make_test_config, make_train_config, run_script, write_config

from models.network import MODEL_ARG_DEFAULTS
from utils.engine.checkpoint import load_checkpoint
from utils.plumbing.config import TrainConfig, parse_config

EXPECTED = json.loads((FIXTURES / "legacy_expected.json").read_text())["checkpoints"]


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_a_checkpoint_from_before_the_change_tests_to_the_same_accuracy(tmp_path, synthetic_data, variant):
    expected = EXPECTED[variant]
    state = load_checkpoint(FIXTURES / f"legacy_{variant}.pth")
    assert state["model_args"] == {**MODEL_ARG_DEFAULTS, "variant": variant, "conv_ch": expected["conv_ch"]}
    # The old test config format: model_type and conv_ch restated, as users' files have them.
    cfg = make_test_config(tmp_path, model=str(FIXTURES / f"legacy_{variant}.pth"), model_type=expected["model_type"],
                           conv_ch=expected["conv_ch"], outdir=str(tmp_path / "out"))
    assert run_script("test", variant, write_config(tmp_path / "test.json", cfg)) == 0
    metrics = json.loads((tmp_path / "out/test/metrics.json").read_text())
    assert metrics["test_images"] == expected["test_images"]
    assert metrics["as_trained"]["accuracy"] == expected["accuracy"]  # with the statistics it was saved with, as then
    assert metrics["as_trained"]["loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_a_run_started_before_the_change_resumes(tmp_path, synthetic_data):
    """A run whose last.pth was written by the old code (no record) continues where it stopped."""
    run = tmp_path / "run"
    (run / "train/ckpt").mkdir(parents=True)
    shutil.copy(FIXTURES / "legacy_DeformConv2dv2.pth", run / "train/ckpt/last.pth")
    cfg = make_train_config(tmp_path, "DeformConv2dv2", conv_ch=[4, 8], num_epoch=3, save_epoch_freq=2)
    assert run_script("train", "DeformConv2dv2", write_config(tmp_path / "t.json", cfg), "--resume") == 0
    history = json.loads((run / "train/history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    record = json.loads((run / "run.json").read_text())
    assert record["state"] == "trained" and [s["epochs"] for s in record["segments"]] == [[1, 2], [3, 3]]


def test_an_old_config_means_what_it_meant():
    old = {"outdir": "./result/DeformConv2dv2", "model_type": 3, "conv_ch": [64, 128], "batch_size": 32, "test_size": 0.1,
           "random_seed": 0, "learning_rate": 0.001, "weight_decay": 0.01, "num_epoch": 30, "save_epoch_freq": 30,
           "data_dir": "./data", "download": True, "device": "auto"}
    new = {"outdir": "./result/DeformConv2dv2", "variant": "DeformConv2dv2", "save_epoch_freq": 30}
    assert parse_config(old, TrainConfig) == parse_config(new, TrainConfig)
