"""Precise BatchNorm statistics at test time, the reference repository's weights, and the reference protocol's keys."""
import hashlib
import json

import pytest
import torch
from conftest import ROOT, make_test_config, make_train_config, needs_real_data, run_script, write_config
from test_compare_and_offsets import tiny_compare_config

from models.factory import build_model
from utils.engine import data as data_mod
from utils.engine import train as train_mod
from utils.engine.checkpoint import load_checkpoint, model_from_checkpoint
from utils.engine.evaluate import precise_bn
from utils.engine.reference import is_reference
from utils.experiments.compare import compare, needs_test
from utils.plumbing.config import TrainConfig, parse_config
from utils.plumbing.errors import UserError
from utils.plumbing.runs import ProtocolLayout

REFERENCE = ROOT.parent / "shared" / "reference"


def bn_layers(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_precise_bn_is_the_plain_average_of_the_batch_statistics(synthetic_data):
    """Every batch counts the same (a last, smaller batch not at all), the running statistics before do not count,
    and the weights are not touched."""
    torch.manual_seed(0)
    model = build_model("Conv2d", [4, 8])
    first = bn_layers(model)[0]
    first.running_mean.fill_(100.0)  # stale statistics: must be forgotten
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    data = synthetic_set_of(70)
    seen = []
    first.register_forward_hook(lambda m, inp, out: seen.append((inp[0].mean((0, 2, 3)), inp[0].var((0, 2, 3), unbiased=True))))
    result = precise_bn(model, data, 32, "cpu")
    assert (result.images, result.batches, result.batch_size) == (64, 2, 32) and len(seen) == 2
    torch.testing.assert_close(first.running_mean, (seen[0][0] + seen[1][0]) / 2)
    torch.testing.assert_close(first.running_var, (seen[0][1] + seen[1][1]) / 2)
    assert not model.training and first.momentum == 0.1  # left in evaluation mode, its EMA momentum restored
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def test_precise_bn_over_the_training_augmentation_sees_the_crops_zero_borders():
    """White images: un-augmented, every pixel is 1; a crop shifted by (dy, dx) keeps (32-|dy|)(32-|dx|) of them, and
    |d| uniform over -4..4 averages 20/9, so the mean over crops is (1 - 20/9/32)^2 = 0.866 (flips change nothing)."""
    white = data_mod.ImageSet(torch.full((2048, 3, 32, 32), 255, dtype=torch.uint8), torch.zeros(2048, dtype=torch.long))
    bn = torch.nn.BatchNorm2d(3)
    precise_bn(bn, white, 128, "cpu")
    torch.testing.assert_close(bn.running_mean, torch.ones(3))
    precise_bn(bn, white, 128, "cpu", augmentation="crop-flip", seed=5)
    torch.testing.assert_close(bn.running_mean, torch.full((3,), (1 - 20 / 9 / 32) ** 2), atol=0.01, rtol=0)
    assert bn.running_var.min() > 0.05  # the zeros of the borders spread it; un-augmented it is 0
    again = torch.nn.BatchNorm2d(3)
    precise_bn(again, white, 128, "cpu", augmentation="crop-flip", seed=5)
    torch.testing.assert_close(again.running_mean, bn.running_mean, atol=0, rtol=0)  # the seed fixes the draw


def synthetic_set_of(n):
    from conftest import synthetic_set

    return synthetic_set(n, seed=3)


def train_tiny(tmp_path, variant="Conv2d", **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw = make_train_config(tmp_path, variant, **overrides)
    assert run_script("train", variant, write_config(tmp_path / "train.json", raw)) == 0
    return parse_config(raw, TrainConfig)


def test_the_test_reports_both_on_the_runs_own_split_and_leaves_the_checkpoint_alone(tmp_path, synthetic_data, monkeypatch, capsys):
    cfg = train_tiny(tmp_path, test_size=0.25, random_seed=3)
    weights = tmp_path / "run/train/weights.pth"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    used = []
    real = precise_bn
    monkeypatch.setattr("utils.engine.testing.precise_bn", lambda model, data, bs, *rest: used.append((data, bs, *rest[1:])) or real(model, data, bs, *rest))
    assert run_script("test", "Conv2d", write_config(tmp_path / "test.json", make_test_config(tmp_path, model=str(weights)))) == 0
    train_split, _ = data_mod.Split.of(cfg).draw(data_mod.load_cifar10(None, True, False))
    (data, batch_size, augmentation, _), = used
    assert torch.equal(data.images, train_split.images) and batch_size == cfg.batch_size  # the run's own split, its batch size
    assert augmentation == "none" and "augmentation" not in json.loads((tmp_path / "run/test/metrics.json").read_text())["precise_bn"]
    m = json.loads((tmp_path / "run/test/metrics.json").read_text())
    assert m["bn_statistics"] == "precise" and m["accuracy"] == m["precise_bn"]["accuracy"]
    for block in (m["as_trained"], m["precise_bn"]):
        assert block["correct"] == sum(block["confusion_matrix"][i][i] for i in range(10)) and block["accuracy"] == block["correct"] / 50
        assert set(block["per_class_accuracy"]) == set(data_mod.CLASSES)
    assert m["precise_bn"]["images"] == 150 // 32 * 32 and m["precise_bn"]["seconds"] > 0
    out = capsys.readouterr().out
    assert "test accuracy as trained:" in out and "with precise BatchNorm statistics:" in out
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before

    # A count of images, and off: the as-trained figures become the headline.
    overrides = ["--set", "precise_bn_images=64"]
    assert run_script("test", "Conv2d", write_config(tmp_path / "test.json", make_test_config(tmp_path, model=str(weights))), *overrides) == 0
    assert json.loads((tmp_path / "run/test/metrics.json").read_text())["precise_bn"]["images"] == 64
    assert run_script("test", "Conv2d", write_config(tmp_path / "t2.json", make_test_config(tmp_path, model=str(weights), precise_bn=False))) == 0
    m = json.loads((tmp_path / "run/test/metrics.json").read_text())
    assert m["bn_statistics"] == "as trained" and m["accuracy"] == m["as_trained"]["accuracy"] and "skipped" in m["precise_bn"]

    # precise_bn_augmented: the run's own augmentation, drawn from its seed, and said in metrics.json and the output.
    aug = tmp_path / "aug"
    train_tiny(aug, augmentation="crop-flip", random_seed=3)
    used.clear()
    test_cfg = make_test_config(aug, model=str(aug / "run/train/weights.pth"), precise_bn_augmented=True, robustness=False)
    assert run_script("test", "Conv2d", write_config(aug / "test.json", test_cfg)) == 0
    assert [u[2:] for u in used] == [("crop-flip", 3)]
    assert json.loads((aug / "run/test/metrics.json").read_text())["precise_bn"]["augmentation"] == "crop-flip"
    assert "(crop-flip, as trained)" in capsys.readouterr().out


@pytest.mark.slow
def test_compare_tests_again_a_run_tested_before_precise_bn(tmp_path, synthetic_data, monkeypatch):
    cfg = tiny_compare_config(tmp_path, models=["Conv2d"], seeds=[0], robustness=False, precise_bn=False)
    compare(cfg)
    run = ProtocolLayout(cfg.outdir).run("Conv2d", 0)
    assert not needs_test(run, cfg)
    wanted = tiny_compare_config(tmp_path, models=["Conv2d"], seeds=[0], robustness=False)
    assert needs_test(run, wanted)
    monkeypatch.setattr(train_mod, "train_one_epoch", lambda *a, **k: pytest.fail("a finished run was trained again"))
    rows, _ = compare(wanted)
    metrics = json.loads(run.metrics.read_text())
    assert metrics["bn_statistics"] == "precise" and rows[0]["test_accuracies"] == [metrics["accuracy"]]
    assert rows[0]["test_accuracies_as_trained"] == [metrics["as_trained"]["accuracy"]]
    assert "as trained" in (tmp_path / "cmp/comparison.md").read_text()
    metrics["precise_bn"]["augmentation"] = "crop-flip"  # a check run into the run's folder (precise_bn_augmented)
    run.metrics.write_text(json.dumps(metrics))
    assert needs_test(run, wanted)  # not what a protocol reports: tested again


def reference_state(model):
    """A state_dict named as the reference repository names its modules (every model holds every module)."""
    state = model.state_dict()
    out = {}
    for i, (conv, bn) in enumerate(((0, 1), (3, 4)), start=1):
        out[f"conv{i}.weight"] = state[f"features.{conv}.weight"]
        out[f"offset{i}.weight"] = state.get(f"features.{conv}.offset.weight", torch.randn(18, 3 if i == 1 else 8, 3, 3))
        out[f"modulity{i}.weight"] = state.get(f"features.{conv}.mask.weight", torch.randn(9, 3 if i == 1 else 8, 3, 3))
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            out[f"bn{i}.{name}"] = state[f"features.{bn}.{name}"]
    out["fc.weight"], out["fc.bias"] = state["classifier.weight"], state["classifier.bias"]
    return out


@pytest.mark.parametrize("variant", ["Conv2d", "DeformConv2d", "DeformConv2dv2"])
def test_a_reference_state_dict_is_read_into_the_same_network(tmp_path, synthetic_data, variant):
    torch.manual_seed(0)
    model = build_model(variant, [4, 8], bias=False, inputs="unit", zero_predictors=False).eval()
    path = tmp_path / "model_30.pth"
    torch.save(reference_state(model), path)
    with pytest.raises(UserError, match="does not say its model"):
        load_checkpoint(path)
    state = load_checkpoint(path, variant=variant)
    assert state["model_args"] == {"variant": variant, "conv_ch": [4, 8], "deformable_layers": None, "bias": False, "inputs": "unit", "network": "convnet"}
    again = model_from_checkpoint(state, path, "gather").eval()
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    # Testing it also writes it in this repository's format, which every other tool takes.
    cfg = make_test_config(tmp_path, model=str(path), outdir=str(tmp_path / "ours"), precise_bn=True, robustness=False)
    assert run_script("test", variant, write_config(tmp_path / "test.json", cfg)) == 0
    ours = load_checkpoint(tmp_path / "ours/train/weights.pth")
    assert not is_reference(ours) and ours["model_args"] == state["model_args"]
    torch.testing.assert_close(model_from_checkpoint(ours, path, "gather").eval()(x), model(x), rtol=0, atol=0)
    metrics = json.loads((tmp_path / "ours/test/metrics.json").read_text())
    assert metrics["bn_statistics"] == "as trained" and "training split" in metrics["precise_bn"]["skipped"]  # its own statistics


# What test_<Model>.py prints for the reference's own weights (correct / 10,000) on this repository's CPU op; the
# reference printed correct / 10,016 (313 batches x 32): 5,547, 6,729 and 6,999.
REFERENCE_COUNTS = {"Conv2d": 5547, "DeformConv2d": 6731, "DeformConv2dv2": 6998}


@needs_real_data
@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE.exists(), reason="the reference checkpoints are not present")
@pytest.mark.parametrize("variant", list(REFERENCE_COUNTS))
def test_the_reference_weights_test_to_their_counts(tmp_path, real_data, variant, capsys):
    overrides = [f"model={REFERENCE / f'{variant}-model_30.pth'}", "robustness=false", f"outdir={tmp_path}"]
    assert run_script("test", variant, str(ROOT / "config" / f"test_{variant}.json"), "--set", *overrides) == 0
    metrics = json.loads((tmp_path / "test/metrics.json").read_text())
    assert metrics["correct"] == REFERENCE_COUNTS[variant] and metrics["bn_statistics"] == "as trained"
    assert f"({REFERENCE_COUNTS[variant]:,}/10,000)" in capsys.readouterr().out


# --- the reference protocol's keys: each changes what it says, and only that --------------------------------------------


def test_inputs_unit_feeds_the_images_unstandardized():
    torch.manual_seed(0)
    standardized = build_model("Conv2d", [4, 8]).eval()
    unit = build_model("Conv2d", [4, 8], inputs="unit").eval()
    unit.load_state_dict(standardized.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(unit((x - standardized.mean) / standardized.std), standardized(x))
    assert "mean" not in standardized.state_dict()  # a constant of the function, not a weight: checkpoints keep their keys


@pytest.mark.parametrize("variant", ["Conv2d", "DeformConv2dv2"])
def test_bias_false_and_default_predictor_init(variant):
    names = [n for n, _ in build_model(variant, [4, 8], bias=False).named_parameters()]
    assert not any(n.endswith("bias") for n in names if not n.startswith(("classifier", "features.1", "features.4")))
    assert any(n.endswith("bias") for n in names if n.startswith("features.1"))  # BatchNorm keeps its shift
    if variant == "DeformConv2dv2":
        zero = build_model(variant, [4, 8]).features[0]
        default = build_model(variant, [4, 8], zero_predictors=False).features[0]
        assert zero.offset.weight.abs().sum() == 0 and default.offset.weight.abs().sum() > 0 and default.mask.weight.abs().sum() > 0


def test_the_random_split_is_seeded_and_not_stratified():
    data = synthetic_set_of(1000)
    stratified, _ = data_mod.Split(0.1, 0, None, True).draw(data)
    random_a, _ = data_mod.Split(0.1, 0, None, False).draw(data)
    random_b, _ = data_mod.Split(0.1, 0, None, False).draw(data)
    assert torch.equal(random_a.images, random_b.images)
    assert torch.bincount(stratified.labels).tolist() == [90] * 10 and torch.bincount(random_a.labels).tolist() != [90] * 10


def test_validating_in_train_mode_moves_only_the_batchnorm_statistics(tmp_path, synthetic_data):
    """The reference's evaluation phase: the weights train the same; the running statistics end where a train-mode
    pass over the validation batches takes them."""
    plain = train_tiny(tmp_path / "a", num_epoch=1)
    train_tiny(tmp_path / "b", num_epoch=1, validate_in_train_mode=True)
    a = load_checkpoint(tmp_path / "a/run/train/weights.pth")["model"]
    b = load_checkpoint(tmp_path / "b/run/train/weights.pth")["model"]
    stats = [k for k in a if "running" in k or "num_batches" in k]
    assert all(torch.equal(a[k], b[k]) for k in a if k not in stats)
    model = build_model("Conv2d", [8, 16])
    model.load_state_dict(a)
    _, val = data_mod.Split.of(plain).draw(data_mod.load_cifar10(None, True, False))
    model.train()
    with torch.no_grad():
        for images, _ in data_mod.Batches(val, plain.batch_size, "cpu"):
            model(images)
    for k in stats:
        torch.testing.assert_close(model.state_dict()[k], b[k])
        assert not torch.equal(a[k], b[k])
