"""Every bad input: one line naming the problem and the fix, a non-zero exit, no traceback, nothing written."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT, make_test_config, make_train_config, run_script, write_config

from models.registry import VARIANTS

ALL = ", ".join(VARIANTS)


def check_refused(tmp_path, capsys, kind, variant, config_path, *expected, extra=()):
    code = run_script(kind, variant, config_path, *extra)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err  # exactly one line
    for fragment in expected:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "run").exists(), "nothing may be written"


def test_missing_config_file(tmp_path, capsys):
    check_refused(tmp_path, capsys, "train", "Conv2d", tmp_path / "nope.json", "does not exist", "existing JSON config")


def test_unreadable_config(tmp_path, capsys):
    if os.geteuid() == 0:  # root reads anything: use a directory, which cannot be read as a file
        path = tmp_path / "dir.json"
        path.mkdir()
    else:
        path = tmp_path / "locked.json"
        path.write_text("{}")
        path.chmod(0)
    check_refused(tmp_path, capsys, "train", "Conv2d", path, "cannot read config file")


def test_invalid_json(tmp_path, capsys):
    path = write_config(tmp_path / "bad.json", '{"outdir": "x",\n  "variant": "Conv2d",,}')
    check_refused(tmp_path, capsys, "train", "Conv2d", path, "invalid JSON", "line 2")


def test_top_level_not_an_object(tmp_path, capsys):
    check_refused(tmp_path, capsys, "train", "Conv2d", write_config(tmp_path / "c.json", "[1, 2]"), "JSON object")


def test_missing_key(tmp_path, capsys):
    cfg = make_train_config(tmp_path)
    del cfg["outdir"]
    check_refused(tmp_path, capsys, "train", "Conv2d", write_config(tmp_path / "c.json", cfg), 'missing key "outdir"')


def test_unknown_key_suggests_the_closest(tmp_path, capsys):
    cfg = make_train_config(tmp_path)
    cfg["learning_rat"] = cfg.pop("learning_rate")
    check_refused(tmp_path, capsys, "train", "Conv2d", write_config(tmp_path / "c.json", cfg), 'unknown key "learning_rat"', 'did you mean "learning_rate"')


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("learning_rate", -0.1, "must be a number > 0, got -0.1"),
        ("learning_rate", "0.001", 'must be a number > 0, got "0.001"'),
        ("test_size", 1.0, "must be a number strictly between 0 and 1, got 1.0"),
        ("test_size", 0, "must be a number strictly between 0 and 1, got 0"),
        ("conv_ch", [], "must be a non-empty list of whole numbers >= 1, e.g. [64, 128], got []"),
        ("conv_ch", [64, 0], "must be a non-empty list of whole numbers >= 1, e.g. [64, 128], got [64, 0]"),
        ("conv_ch", 64, "must be a non-empty list of whole numbers >= 1, e.g. [64, 128], got 64"),
        ("batch_size", 0, "must be a whole number >= 1, got 0"),
        ("batch_size", 2.5, "must be a whole number >= 1, got 2.5"),
        ("num_epoch", True, "must be a whole number >= 1, got true"),
        ("weight_decay", -1, "must be a number >= 0, got -1"),
        ("random_seed", -3, "must be a whole number >= 0, got -3"),
        ("model_type", 4, f"must name a model variant (variants: {ALL} (older configs: 1 (Conv2d), 2 (DeformConv2d), 3 (DeformConv2dv2))), got 4"),
        ("variant", "DeformConv2v2", f'must name a model variant (did you mean "DeformConv2dv2"? variants: {ALL} (older'),
        ("deformable_layers", "first", 'must be "all", "last", null (the variant\'s own) or a list of distinct conv block numbers from 1'),
        ("deformable_layers", [0], 'must be "all", "last", null'),
        ("offset_lr_mult", -0.1, "must be a number >= 0, got -0.1"),
        ("download", "yes", 'must be true or false, got "yes"'),
        ("device", "gpu", 'must be "auto", "cpu", "cuda" or "cuda:N", got "gpu"'),
        ("dcn_backend", "fast", 'must be one of "auto", "torchvision", "gather", "cpp", "triton", got "fast"'),
        ("train_subset", 5, "must be null (all images) or a whole number >= 20, got 5"),
        ("outdir", "", 'must be a non-empty string, got ""'),
        ("compile", 1, "must be true or false, got 1"),
    ],
)
def test_wrong_type_or_range(tmp_path, capsys, key, value, expected):
    cfg = make_train_config(tmp_path, **{key: value})
    if key == "model_type":
        del cfg["variant"]
    path = write_config(tmp_path / "c.json", cfg)
    check_refused(tmp_path, capsys, "train", "Conv2d", path, f'error: {path}: "{key}" {expected}')


@pytest.mark.parametrize("key, value, expected", [
    ("learning_rate", "-0.1", "must be a number > 0, got -0.1"),
    ("conv_ch", "[8,", 'must be a non-empty list of whole numbers >= 1, e.g. [64, 128], got "[8,"'),
])
def test_a_bad_override_names_the_set_option(tmp_path, capsys, key, value, expected):
    path = write_config(tmp_path / "c.json", make_train_config(tmp_path))
    check_refused(tmp_path, capsys, "train", "Conv2d", path, f'error: --set: "{key}" {expected}\n', extra=("--set", f"{key}={value}"))


def test_an_unknown_override_suggests_the_closest(tmp_path, capsys):
    path = write_config(tmp_path / "c.json", make_train_config(tmp_path))
    check_refused(tmp_path, capsys, "train", "Conv2d", path, 'error: --set: unknown key "num_epochs"; did you mean "num_epoch"?',
                  extra=("--set", "num_epochs=3"))
    check_refused(tmp_path, capsys, "train", "Conv2d", path, "error: --set num_epoch: expected key=value", extra=("--set", "num_epoch"))


@pytest.mark.parametrize("variant, layers, message", [
    ("DeformConv2d", [3], '"deformable_layers" [3] names a block beyond the 2 blocks of conv_ch [8, 16]'),
    ("Conv2d", "last", '"deformable_layers" is set but Conv2d changes no layers; remove it or pick a deformable, dilated or parameter-matched variant'),
])
def test_deformable_layers_must_fit_the_model(tmp_path, capsys, variant, layers, message):
    path = write_config(tmp_path / "c.json", make_train_config(tmp_path, variant, deformable_layers=layers))
    check_refused(tmp_path, capsys, "train", variant, path, f"error: {path}: {message}\n")


@pytest.mark.parametrize("key, value, message", [
    ("robustness", "yes", 'must be true or false, got "yes"'),
    ("robustness_images", 50, "must be null (all 10,000 test images) or a whole number from 100 to 10000, got 50"),
])
def test_robustness_options_are_checked(tmp_path, capsys, key, value, message):
    path = write_config(tmp_path / "c.json", make_test_config(tmp_path, **{key: value}))
    check_refused(tmp_path, capsys, "test", "Conv2d", path, f'error: {path}: "{key}" {message}\n')


def test_benchmark_compile_needs_warm_up_runs(tmp_path):
    from utils.plumbing.config import BenchmarkConfig, parse_config
    from utils.plumbing.errors import UserError

    with pytest.raises(UserError, match='"compile" needs "warmup" >= 2 .* got warmup 1; raise it or set compile false'):
        parse_config({"warmup": 1}, BenchmarkConfig)
    assert parse_config({"warmup": 1, "compile": False}, BenchmarkConfig).warmup == 1


def test_variant_disagrees_with_the_script(tmp_path, capsys):
    path = write_config(tmp_path / "c.json", make_train_config(tmp_path, "DeformConv2d"))
    check_refused(tmp_path, capsys, "train", "Conv2d", path,
                  f"error: {path}: variant DeformConv2d is trained by train_DeformConv2d.py, not train_Conv2d.py; "
                  'use train_DeformConv2d.py or set "variant": "Conv2d"')


def test_old_and_new_name_for_the_variant_together(tmp_path, capsys):
    path = write_config(tmp_path / "c.json", make_train_config(tmp_path, model_type=1))
    check_refused(tmp_path, capsys, "train", "Conv2d", path, f'error: {path}: "model_type" and "variant" both set "variant"; keep one')


def test_test_config_is_checked_too(tmp_path, capsys):
    cfg = make_test_config(tmp_path)
    del cfg["model"]
    path = write_config(tmp_path / "c.json", cfg)
    check_refused(tmp_path, capsys, "test", "Conv2d", path, f'error: {path}: missing key "model"')
    path = write_config(tmp_path / "c.json", make_test_config(tmp_path, variant="DeformConv2dv2"))
    check_refused(tmp_path, capsys, "test", "DeformConv2d", path,
                  f"error: {path}: variant DeformConv2dv2 is tested by test_DeformConv2dv2.py, not test_DeformConv2d.py")


@pytest.mark.parametrize("script, keys", [
    ("train_Conv2d.py", {}), ("test_DeformConv2dv2.py", {"model": "m.pth"}), ("compare.py", {"protocol": "p"}), ("benchmark.py", {}),
])
def test_real_script_refuses_a_bad_config_before_torch_loads(tmp_path, script, keys):
    """The script itself, in a fresh interpreter: one line, exit 2, nothing written, and torch never imported
    (so the answer takes well under a second; README states the measured time)."""
    path = write_config(tmp_path / "c.json", {"outdir": str(tmp_path / "run"), **keys, "batch_size": 0})
    probe = ("import runpy, sys; sys.argv = [sys.argv[1], '--config', sys.argv[2]]\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "finally:\n    print('torch imported' if 'torch' in sys.modules else 'torch not imported')")
    proc = subprocess.run([sys.executable, "-c", probe, script, path], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f'error: {path}: "batch_size" must be a whole number >= 1, got 0\n'
    assert proc.stdout == "torch not imported\n"
    assert not (tmp_path / "run").exists()


def test_output_piped_into_a_reader_that_stops_early_ends_without_a_traceback():
    """`compare.py --status | head -1`: the reader is gone before the script writes; it exits quietly. Every script
    runs its work in run_cli, which a small probe uses here (compare.py itself takes seconds to load torch)."""
    probe = "from utils.plumbing.errors import run_cli; run_cli(lambda: print('a line of status', flush=True))"
    proc = subprocess.Popen([sys.executable, "-c", probe], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away at once: every write the script makes finds a broken pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) != 0
    assert "Traceback" not in err and "Exception ignored" not in err, err
