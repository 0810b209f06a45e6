"""The residual network and the standard recipe: ResNet-20's shape and which of its layers each variant changes, the
augmentation, the learning-rate schedule, SGD, exact resume under all three, and the rules that keep a run from
misstating how it was trained (a finished run or a checkpoint with other settings is refused, later keys at their
defaults are left out of every file)."""
import json
import math
import shutil

import pytest
import torch
from conftest import ROOT, make_train_config, run_script, synthetic_set, write_config
from test_compare_and_offsets import tiny_compare_config
from torch import nn

from models.deformable_conv import DeformableConv
from models.factory import build_model, matched_widths
from models.network import count_parameters
from utils.engine import data as data_mod
from utils.engine import train as train_mod
from utils.engine.checkpoint import load_checkpoint
from utils.engine.data import PAD, Batches, crop_flip
from utils.engine.train import Schedule
from utils.experiments.compare import check_settings, compare
from utils.plumbing.config import CompareConfig, TrainConfig, load_config, parse_config
from utils.plumbing.errors import UserError
from utils.plumbing.runs import ProtocolLayout, run_status


def resnet(variant, conv_ch=(16, 32, 64), **kwargs):
    return build_model(variant, list(conv_ch), network="resnet20", **kwargs)


def convs(model):
    """(stage, kind, stride, dilation) of every 3x3 convolution of a ResNet's stages, in order."""
    rows = []
    for s, stage in enumerate(model.stages, start=1):
        for block in stage:
            for conv in (block.conv1, block.conv2):
                kind = "deformable" if isinstance(conv, DeformableConv) else "plain"
                rows.append((s, kind, conv.stride[0], conv.dilation[0]))
    return rows


# --- the network ---------------------------------------------------------------------------------------------------

def test_resnet20_has_he_et_als_shape_and_parameter_count():
    model = resnet("Conv2d")
    assert count_parameters(model) == 269_722  # He et al. 2016, table 6: 0.27 M
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert len(convs(model)) == 18 and model.stem[0].out_channels == 16 and model.classifier.in_features == 64
    assert [c[2] for c in convs(model)] == [1] * 6 + [2] + [1] * 5 + [2] + [1] * 5  # stride 2 opens stages 2 and 3
    assert all(not isinstance(m, nn.Conv2d) or m.bias is None for m in model.modules())  # BatchNorm follows every convolution
    # Option A: the shortcuts have no parameters (every parameter is in a conv, a BatchNorm or the classifier).
    block = model.stages[1][0]
    x = torch.randn(2, 16, 32, 32)
    assert block(x).shape == (2, 32, 16, 16)
    assert torch.equal(block.shortcut(x)[:, :16], x[:, :, ::2, ::2]) and not block.shortcut(x)[:, 16:].any()


def test_deformable_counts_are_the_predictors_of_the_last_stage():
    plain, v1, v2 = (count_parameters(resnet(v)) for v in ("Conv2d", "DeformConv2d", "DeformConv2dv2"))
    # The last stage's 6 convolutions: the first takes 32 channels, the other five 64; 18 offsets, 9 mask taps, each with a bias.
    assert v1 - plain == 18 * (32 * 9 + 1) + 5 * 18 * (64 * 9 + 1)
    assert v2 - v1 == 9 * (32 * 9 + 1) + 5 * 9 * (64 * 9 + 1)
    assert (plain, v1, v2) == (269_722, 326_854, 355_420)


@pytest.mark.parametrize("layers, stages", [(None, [3]), ("last", [3]), ("all", [1, 2, 3]), ([1], [1]), ([2, 3], [2, 3])])
@pytest.mark.parametrize("variant", ["DeformConv2d", "DeformConv2dv2", "DeformConv2dv2-mask-only", "Conv2d-dilated"])
def test_deformable_layers_names_stages_and_every_variant_changes_the_same_ones(variant, layers, stages):
    rows = convs(resnet(variant, deformable_layers=layers))
    changed = [(s, kind, dilation) for s, kind, _, dilation in rows if kind == "deformable" or dilation > 1]
    assert [s for s, *_ in changed] == [s for s in stages for _ in range(6)]  # all 6 convolutions of each stage, stride 2 included
    assert all((kind == "deformable") != (variant == "Conv2d-dilated") for _, kind, _ in changed)
    assert not isinstance(resnet(variant, deformable_layers=layers).stem[0], DeformableConv)  # the stem: never


def test_the_stride_two_deformable_convolution_halves_the_grid():
    model = resnet("DeformConv2dv2").eval()
    first = model.stages[2][0].conv1
    assert isinstance(first, DeformableConv) and first.stride == (2, 2)
    offset, mask = first.predict(torch.randn(2, 32, 16, 16))
    assert offset.shape == (2, 18, 8, 8) and mask.shape == (2, 9, 8, 8) and first(torch.randn(2, 32, 16, 16)).shape == (2, 64, 8, 8)


@pytest.mark.parametrize("layers", [None, "all"])
@pytest.mark.parametrize("bias", [True, False])
def test_the_parameter_matched_control_matches_dcnv2_in_the_same_network_and_layers(layers, bias):
    target = count_parameters(resnet("DeformConv2dv2", deformable_layers=layers, bias=bias))
    matched = resnet("Conv2d-params", deformable_layers=layers, bias=bias)
    assert abs(count_parameters(matched) - target) / target <= 0.03 and not matched.deformable_convs()
    # ... and not the count of another network, or of the default layers.
    assert matched_widths({"variant": "Conv2d-params", "conv_ch": [16, 32, 64], "network": "resnet20", "deformable_layers": layers, "bias": bias}) \
        != matched_widths({"variant": "Conv2d-params", "conv_ch": [16, 32, 64], "network": "convnet"})
    if layers == "all":
        assert count_parameters(matched) > count_parameters(resnet("Conv2d-params", bias=bias))


def test_a_network_that_cannot_be_built_is_refused_by_its_config(tmp_path):
    with pytest.raises(UserError, match=r'"conv_ch" \[8, 16\] has 2 entries, but resnet20 has 3 stages'):
        parse_config({"outdir": "x", "variant": "Conv2d", "network": "resnet20", "conv_ch": [8, 16]}, TrainConfig)
    with pytest.raises(UserError, match=r'"deformable_layers" \[4\] names a stage beyond the 3 stages'):
        parse_config({"outdir": "x", "variant": "DeformConv2d", "network": "resnet20", "deformable_layers": [4]}, TrainConfig)
    with pytest.raises(UserError, match='"network" must be one of "convnet", "resnet20", got "resnet50"'):
        parse_config({"outdir": "x", "variant": "Conv2d", "network": "resnet50"}, TrainConfig)
    # Left out, conv_ch is the network's own; the default network keeps the default widths.
    assert parse_config({"outdir": "x", "variant": "Conv2d", "network": "resnet20"}, TrainConfig).conv_ch == [16, 32, 64]
    assert parse_config({"outdir": "x", "variant": "Conv2d"}, TrainConfig).conv_ch == [64, 128]


# --- augmentation ----------------------------------------------------------------------------------------------------

def test_crop_flip_moves_the_right_pixels():
    images = torch.arange(2 * 3 * 32 * 32).remainder(251).add(1).to(torch.uint8).view(2, 3, 32, 32)  # no pixel is 0
    shifts, flips = torch.tensor([[3, -2], [-4, 4]]), torch.tensor([False, True])
    out = crop_flip(images, shifts, flips)
    # Image 0, shifted by (3, -2): out[y, x] = in[y + 3, x - 2]; the 2 left columns and 3 bottom rows come from the padding.
    assert torch.equal(out[0, :, :29, 2:], images[0, :, 3:, :30]) and not out[0, :, :, :2].any() and not out[0, :, 29:, :].any()
    # Image 1, shifted by (-4, 4), then mirrored: out[y, x] = in[y - 4, (31 - x) + 4].
    unflipped = out[1].flip(-1)
    assert torch.equal(unflipped[:, 4:, :28], images[1, :, :28, 4:]) and not unflipped[:, :4].any() and not unflipped[:, :, 28:].any()


def augmented_epoch(seed, epoch, shuffle=True, augmentation="crop-flip"):
    data = synthetic_set(40, seed=3)
    batches = Batches(data, 16, "cpu", shuffle=shuffle, seed=seed, augmentation=augmentation)
    batches.epoch = epoch
    return [(x.clone(), y.clone()) for x, y in batches]


def test_augmentation_is_a_function_of_seed_and_epoch_alone():
    rng = torch.get_rng_state()
    a, again = augmented_epoch(0, 1), augmented_epoch(0, 1)
    assert all(torch.equal(x, x2) and torch.equal(y, y2) for (x, y), (x2, y2) in zip(a, again))
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator is never drawn from
    other_epoch, other_seed = augmented_epoch(0, 2), augmented_epoch(1, 1)
    assert not all(torch.equal(x, x2) for (x, _), (x2, _) in zip(a, other_epoch))
    assert not all(torch.equal(x, x2) for (x, _), (x2, _) in zip(a, other_seed))
    plain = augmented_epoch(0, 1, augmentation="none")
    assert all(torch.equal(y, y2) for (_, y), (_, y2) in zip(a, plain))  # the same order: the augmentation is drawn after it
    assert not all(torch.equal(x, x2) for (x, _), (x2, _) in zip(a, plain))


def test_each_augmented_image_is_a_shifted_possibly_mirrored_copy_of_its_own():
    data = synthetic_set(40, seed=3)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0 * 100_003 + 1))
    seen = torch.cat([x for x, _ in augmented_epoch(0, 1)])
    moves = [(dy, dx, flip) for dy in range(-PAD, PAD + 1) for dx in range(-PAD, PAD + 1) for flip in (False, True)]
    shifts, flips = torch.tensor([m[:2] for m in moves]), torch.tensor([m[2] for m in moves])
    for k in range(40):
        candidates = crop_flip(data.images[order[k]].float()[None].expand(len(moves), -1, -1, -1) / 255, shifts, flips)
        assert (candidates == seen[k]).flatten(1).all(1).any(), k


def test_validation_precise_bn_and_tests_see_the_images_as_they_are(tmp_path, synthetic_data, monkeypatch):
    made = []
    real = data_mod.Batches

    class Recording(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.augmentation)

    monkeypatch.setattr(data_mod, "Batches", Recording)
    monkeypatch.setattr("utils.engine.evaluate.Batches", Recording)
    cfg = make_train_config(tmp_path, num_epoch=1, augmentation="crop-flip", batch_size=16)
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", cfg)) == 0
    assert made == ["crop-flip", "none"]  # training, validation
    made.clear()
    assert run_script("test", "Conv2d", write_config(tmp_path / "test.json", {"model": str(tmp_path / "run/train/weights.pth"), "robustness": False,
                                                                              "data_dir": str(tmp_path), "download": False, "batch_size": 25})) == 0
    assert made == ["none", "none"]  # the test batches, the precise BatchNorm statistics' batches


# --- learning rate ---------------------------------------------------------------------------------------------------

def schedule(**keys):
    cfg = parse_config({"outdir": "x", "variant": "Conv2d", "num_epoch": 10, "learning_rate": 0.1, **keys}, TrainConfig)
    return Schedule(cfg, steps_per_epoch=100)


def test_warmup_then_cosine_to_zero():
    s = schedule(lr_schedule="cosine", warmup_epochs=2)
    assert [s.factor(step) for step in (0, 99, 199)] == pytest.approx([1 / 200, 100 / 200, 1.0])
    assert s.factor(200) == 1.0  # the cosine starts at the full rate
    assert s.factor(200 + 400) == pytest.approx(0.5)  # half way through the 800 cosine steps
    assert s.factor(999) == pytest.approx(0.5 * (1 + math.cos(math.pi * 799 / 800)))  # the last step: just above zero
    assert s.factor(1000) == pytest.approx(0.0, abs=1e-12)


def test_constant_is_the_standard_protocols_rate_and_sets_every_group():
    s = schedule()
    assert {s.factor(step) for step in (0, 1, 500, 999)} == {1.0}
    cosine = schedule(lr_schedule="cosine", offset_lr_mult=0.1)
    model = build_model("DeformConv2d", [4, 8])
    optimizer = train_mod.make_optimizer(model, parse_config({"outdir": "x", "variant": "DeformConv2d", "conv_ch": [4, 8], "learning_rate": 0.1,
                                                              "offset_lr_mult": 0.1}, TrainConfig))
    cosine.apply(optimizer, 500)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1 * 0.5, 0.01 * 0.5])


def test_sgd_is_nesterov_with_momentum_and_l2_weight_decay():
    cfg = parse_config({"outdir": "x", "variant": "Conv2d", "conv_ch": [4, 8], "optimizer": "sgd", "learning_rate": 0.1, "weight_decay": 5e-4}, TrainConfig)
    optimizer = train_mod.make_optimizer(build_model("Conv2d", [4, 8]), cfg)
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"], group["lr"]) == (0.9, True, 5e-4, 0.1)


# --- resuming and reuse ----------------------------------------------------------------------------------------------

RECIPE = {"network": "resnet20", "conv_ch": [4, 8, 16], "optimizer": "sgd", "learning_rate": 0.05, "weight_decay": 5e-4, "lr_schedule": "cosine",
          "warmup_epochs": 1, "augmentation": "crop-flip", "batch_size": 32, "num_epoch": 3}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["Conv2d", "DeformConv2dv2"])
def test_resume_under_sgd_schedule_and_augmentation_is_bit_identical(tmp_path, synthetic_data, monkeypatch, variant):
    whole = write_config(tmp_path / "whole.json", make_train_config(tmp_path, variant, outdir=str(tmp_path / "whole"), **RECIPE))
    assert run_script("train", variant, whole) == 0
    real = train_mod.train_one_epoch

    def stop_in_epoch_3(model, optimizer, schedule, batches, epoch, num_epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return real(model, optimizer, schedule, batches, epoch, num_epoch)

    cut = write_config(tmp_path / "cut.json", make_train_config(tmp_path, variant, outdir=str(tmp_path / "cut"), **RECIPE))
    monkeypatch.setattr(train_mod, "train_one_epoch", stop_in_epoch_3)
    assert run_script("train", variant, cut) == 130
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    torch.manual_seed(12345)  # the resumed process starts from another global random state: the checkpoint restores it
    assert run_script("train", variant, cut, "--resume") == 0
    a, b = load_checkpoint(tmp_path / "whole/train/ckpt/last.pth"), load_checkpoint(tmp_path / "cut/train/ckpt/last.pth")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"] > 0
    strip = lambda h: [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 16}, "was trained with batch_size 32, the config says 16"),
    ({"optimizer": "adamw"}, 'was trained with optimizer "sgd", the config says "adamw"'),
    ({"augmentation": "none"}, 'was trained with augmentation "crop-flip", the config says "none"'),
    ({"learning_rate": 0.1}, "was trained with learning_rate 0.05, the config says 0.1"),
    ({"num_epoch": 4}, "was trained for a 3-epoch cosine schedule, the config says num_epoch 4"),
])
def test_resume_refuses_a_change_to_what_shapes_the_result(tmp_path, synthetic_data, monkeypatch, capsys, change, message):
    cfg = make_train_config(tmp_path, "Conv2d", **{**RECIPE, "conv_ch": [2, 2, 2]})
    monkeypatch.setattr(train_mod, "train_one_epoch", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", cfg)) == 130  # a checkpoint at epoch 0
    before = (tmp_path / "run/train/ckpt/last.pth").read_bytes()
    capsys.readouterr()
    assert run_script("train", "Conv2d", write_config(tmp_path / "t2.json", {**cfg, **change}), "--resume") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and (tmp_path / "run/train/ckpt/last.pth").read_bytes() == before


def test_a_checkpoint_from_before_the_recipe_keys_resumes_under_the_defaults(tmp_path, synthetic_data):
    """An old checkpoint's config lacks the later keys: they read as their defaults, so the standard protocol's runs in
    progress resume, and a config that asks for another value is refused."""
    cfg = make_train_config(tmp_path, "Conv2d", num_epoch=2)
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", {**cfg, "num_epoch": 1})) == 0
    state = torch.load(tmp_path / "run/train/ckpt/last.pth", weights_only=True)
    assert not {"network", "optimizer", "lr_schedule", "warmup_epochs", "augmentation"} & set(state["config"])
    assert run_script("train", "Conv2d", write_config(tmp_path / "sgd.json", {**cfg, "optimizer": "sgd"}), "--resume") == 2
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", cfg), "--resume") == 0  # constant rate: extending is allowed


def finished_run(tmp_path, **overrides):
    cfg = tiny_compare_config(tmp_path, seeds=[0], models=["Conv2d"], robustness=False, precise_bn=False, **overrides)
    compare(cfg)
    return cfg, ProtocolLayout(cfg.outdir).run("Conv2d", 0)


def run_config(cfg, run, variant="Conv2d", **keys):
    """The train config of `run` under compare config `cfg`, with `keys` changed: what check_settings compares."""
    shared = {f: getattr(cfg, f) for f in TrainConfig.RESULT_KEYS if f != "random_seed"}
    return parse_config({"outdir": str(run.root), "variant": variant, **shared, **keys}, TrainConfig)


def test_a_key_missing_from_a_record_means_its_default(tmp_path, synthetic_data):
    cfg, run = finished_run(tmp_path)
    record = json.loads(run.record.read_text())
    assert not {"network", "optimizer", "lr_schedule", "warmup_epochs", "augmentation"} & set(record["settings"])  # the default: left out
    del record["settings"]["inputs"]  # a record from before "inputs" existed: it trained standardized images
    run.record.write_text(json.dumps(record))
    train_cfg = lambda **keys: run_config(cfg, run, **keys)  # noqa: E731
    check_settings(run, train_cfg())  # its defaults are what the config asks for: reused
    with pytest.raises(UserError, match='was trained with optimizer "adamw", the config says "sgd"'):
        check_settings(run, train_cfg(optimizer="sgd"))
    with pytest.raises(UserError, match='was trained with inputs "standardized", the config says "unit"'):
        check_settings(run, train_cfg(inputs="unit"))
    with pytest.raises(UserError, match=r'was trained with conv_ch \[4, 8\] and network "convnet", the config says \[4, 8, 8\] and "resnet20"'):
        check_settings(run, train_cfg(network="resnet20", conv_ch=[4, 8, 8]))


def test_the_predictors_keys_change_nothing_without_predictors_and_something_with_them(tmp_path, synthetic_data):
    """Why a finished Conv2d run is reused when a protocol sets offset_lr_mult or predictor_init: trained both ways
    it is the same bit for bit, while DCNv1's weights differ (so the keys did reach the optimizer and the model)."""
    def weights(variant, name, **keys):
        cfg = make_train_config(tmp_path, variant, outdir=str(tmp_path / name), **{**RECIPE, "num_epoch": 1}, **keys)
        train_mod.train(parse_config(cfg, TrainConfig))
        return load_checkpoint(tmp_path / name / "train/ckpt/last.pth")["model"]

    plain, plain_other = weights("Conv2d", "a"), weights("Conv2d", "b", offset_lr_mult=0.1, predictor_init="default")
    assert plain.keys() == plain_other.keys() and all(torch.equal(plain[k], plain_other[k]) for k in plain)
    dcn, dcn_other = weights("DeformConv2d", "c"), weights("DeformConv2d", "d", offset_lr_mult=0.1)
    assert not all(torch.equal(dcn[k], dcn_other[k]) for k in dcn)


def test_a_finished_plain_run_is_reused_under_other_predictor_keys_and_a_deformable_one_is_not(tmp_path, synthetic_data):
    cfg, run = finished_run(tmp_path)
    check_settings(run, run_config(cfg, run, offset_lr_mult=0.1, predictor_init="default"))  # nothing of these in Conv2d
    with pytest.raises(UserError, match="was trained with offset_lr_mult 1.0, the config says 0.1"):
        check_settings(run, run_config(cfg, run, "DeformConv2d", offset_lr_mult=0.1))  # the same record, read as a DCNv1 run's
    with pytest.raises(UserError, match='was trained with predictor_init "zeros", the config says "default"'):
        check_settings(run, run_config(cfg, run, "DeformConv2dv2-mask-only", predictor_init="default"))


@pytest.mark.slow
def test_compare_refuses_to_reuse_a_finished_run_for_another_recipe(tmp_path, synthetic_data):
    finished_run(tmp_path)
    with pytest.raises(UserError, match='was trained with augmentation "none", the config says "crop-flip"; set another outdir'):
        compare(tiny_compare_config(tmp_path, seeds=[0], models=["Conv2d"], robustness=False, precise_bn=False, augmentation="crop-flip"))


def test_a_default_config_writes_every_file_as_before(tmp_path, synthetic_data):
    cfg, run = finished_run(tmp_path)
    report = json.loads((tmp_path / "cmp/comparison.json").read_text())
    later = {"network", "optimizer", "lr_schedule", "warmup_epochs", "augmentation"}
    assert not later & set(report["config"]) and not later & set(json.loads(run.record.read_text())["settings"])
    weights = torch.load(run.weights, weights_only=True)
    assert not later & set(weights["config"]) and "network" not in weights["model_args"]
    assert "network" not in json.loads(run.metrics.read_text())["model_args"]
    # A non-default value is written everywhere.
    cfg, run = finished_run(tmp_path / "sgd", optimizer="sgd")
    assert json.loads(run.record.read_text())["settings"]["optimizer"] == "sgd"
    assert json.loads((tmp_path / "sgd/cmp/comparison.json").read_text())["config"]["optimizer"] == "sgd"


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["full", "reference", "resnet"])
def test_a_committed_protocol_report_reaggregates_byte_for_byte(tmp_path, monkeypatch, protocol):
    """What a fresh clone gets: a protocol's committed runs (ckpt/ is never committed) count as done, and aggregated
    again they give the committed report (the figures aside: their bytes depend on matplotlib's version). For the
    `full` protocol this is also what the later keys must not change."""
    cfg = load_config(ROOT / "config" / f"compare_{protocol}.json", CompareConfig, ["aggregate_only=true"])
    committed = ROOT / cfg.outdir
    if not (committed / "comparison.json").exists():
        pytest.skip(f"no run of the {protocol} protocol has finished yet")
    copy = tmp_path / cfg.outdir
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("ckpt", "*.png", "*.log", "lock"))
    monkeypatch.chdir(tmp_path)
    finished = json.loads((committed / "comparison.json").read_text())["runs"]
    layout = ProtocolLayout(cfg.outdir)
    assert all(run_status(layout.run(r["model"], r["seed"]), cfg.num_epoch).state == "done" for r in finished)
    compare(cfg)
    for name in ("comparison.json", "comparison.md", "comparison.csv"):
        assert (copy / name).read_bytes() == (committed / name).read_bytes(), name


def test_the_resnet_protocol_config_is_the_recipe_the_issue_asks_for():
    cfg = load_config(ROOT / "config" / "compare_resnet.json", CompareConfig)
    assert cfg.network == "resnet20" and cfg.conv_ch == [16, 32, 64] and cfg.seeds == [0, 1, 2] and cfg.num_epoch == 30
    assert cfg.models == ["Conv2d", "DeformConv2d", "DeformConv2dv2", "DeformConv2dv2-mask-only"]
    assert (cfg.optimizer, cfg.batch_size, cfg.weight_decay, cfg.lr_schedule, cfg.augmentation) == ("sgd", 128, 5e-4, "cosine", "crop-flip")
    assert cfg.warmup_epochs >= 1 and cfg.test_size == 0.1 and cfg.train_subset is None
    assert cfg.outdir == "./result/resnet"
