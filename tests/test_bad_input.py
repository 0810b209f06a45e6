"""Every bad input: one line naming the problem and the fix, a non-zero exit, no traceback, nothing written."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, make_test_config, make_train_config, run_script, write_config


def check_refused(tmp_path, capsys, kind, model_type, config_path, *expected):
    code = run_script(kind, model_type, config_path)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err  # exactly one line
    for fragment in expected:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "run").exists(), "nothing may be written"


def test_missing_config_file(tmp_path, capsys):
    check_refused(tmp_path, capsys, "train", 1, tmp_path / "nope.json", "does not exist", "existing JSON config")


def test_unreadable_config(tmp_path, capsys):
    if os.geteuid() == 0:  # root reads anything: use a directory, which cannot be read as a file
        path = tmp_path / "dir.json"
        path.mkdir()
    else:
        path = tmp_path / "locked.json"
        path.write_text("{}")
        path.chmod(0)
    check_refused(tmp_path, capsys, "train", 1, path, "cannot read config file")


def test_invalid_json(tmp_path, capsys):
    path = write_config(tmp_path / "bad.json", '{"outdir": "x",\n  "model_type": 1,,}')
    check_refused(tmp_path, capsys, "train", 1, path, "invalid JSON", "line 2")


def test_top_level_not_an_object(tmp_path, capsys):
    check_refused(tmp_path, capsys, "train", 1, write_config(tmp_path / "c.json", "[1, 2]"), "JSON object")


def test_missing_key(tmp_path, capsys):
    cfg = make_train_config(tmp_path)
    del cfg["learning_rate"]
    check_refused(tmp_path, capsys, "train", 1, write_config(tmp_path / "c.json", cfg), 'missing key "learning_rate"')


def test_unknown_key_suggests_the_closest(tmp_path, capsys):
    cfg = make_train_config(tmp_path)
    cfg["learning_rat"] = cfg.pop("learning_rate")
    check_refused(tmp_path, capsys, "train", 1, write_config(tmp_path / "c.json", cfg), 'unknown key "learning_rat"', 'did you mean "learning_rate"')


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("learning_rate", -0.1, "> 0"),
        ("learning_rate", "0.001", "> 0"),
        ("test_size", 1.0, "strictly between 0 and 1"),
        ("test_size", 0, "strictly between 0 and 1"),
        ("conv_ch", [], "non-empty list"),
        ("conv_ch", [64, 0], "non-empty list"),
        ("conv_ch", 64, "non-empty list"),
        ("batch_size", 0, ">= 1"),
        ("batch_size", 2.5, "whole number"),
        ("num_epoch", True, "whole number"),
        ("weight_decay", -1, ">= 0"),
        ("random_seed", -3, ">= 0"),
        ("model_type", 4, "must be 1 (Conv2d)"),
        ("download", "yes", "true or false"),
        ("device", "gpu", '"auto", "cpu"'),
        ("dcn_backend", "fast", '"auto", "torchvision", "gather", "cpp"'),
        ("train_subset", 5, ">= 20"),
        ("outdir", "", "non-empty string"),
    ],
)
def test_wrong_type_or_range(tmp_path, capsys, key, value, expected):
    cfg = make_train_config(tmp_path, **{key: value})
    check_refused(tmp_path, capsys, "train", 1, write_config(tmp_path / "c.json", cfg), f'"{key}"', expected)


def test_model_type_disagrees_with_the_script(tmp_path, capsys):
    path = write_config(tmp_path / "c.json", make_train_config(tmp_path, model_type=2))
    check_refused(tmp_path, capsys, "train", 1, path, "model_type 2 (DeformConv2d) does not match train_Conv2d.py", "DeformConv2d script")


def test_test_config_is_checked_too(tmp_path, capsys):
    cfg = make_test_config(tmp_path, 1)
    del cfg["model"]
    check_refused(tmp_path, capsys, "test", 1, write_config(tmp_path / "c.json", cfg), 'missing key "model"')
    cfg = make_test_config(tmp_path, 3)
    check_refused(tmp_path, capsys, "test", 2, write_config(tmp_path / "c.json", cfg), "does not match test_DeformConv2d.py")


def test_real_script_prints_no_traceback(tmp_path):
    cfg = make_train_config(tmp_path, batch_size=0)
    path = write_config(tmp_path / "c.json", cfg)
    proc = subprocess.run([sys.executable, "train_Conv2d.py", "--config", path], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config_cls, runner", [("CompareConfig", "utils.compare:compare"), ("BenchmarkConfig", "utils.benchmark:run_benchmark")])
def test_compare_and_benchmark_configs_are_checked(tmp_path, capsys, config_cls, runner):
    from utils import config
    from utils.cli import config_main

    path = write_config(tmp_path / "c.json", {"outdir": str(tmp_path / "run"), "batch_size": -1})
    with pytest.raises(SystemExit) as exit_info:
        config_main(getattr(config, config_cls), runner, "d", "e", ["--config", path])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
