"""The controls and ablations: parameter-matched and dilated plain convolutions, mask-only DCNv2,
deformable layers in the last block only, the predictors' learning-rate multiplier, and the geometric
robustness test."""
import json

import pytest
import torch
from conftest import make_test_config, make_train_config, run_script, synthetic_set, write_config
from torch import nn

from models.deformable_conv import DeformableConv
from models.factory import build_model
from models.network import count_parameters
from models.registry import BASE, VARIANTS
from utils.engine.checkpoint import load_checkpoint, model_from_checkpoint
from utils.engine.robustness import TRANSFORMS, checksum, transformed


@pytest.mark.parametrize("conv_ch", [[64, 128], [32, 64], [16, 32, 64], [8]])
def test_the_parameter_matched_control_is_within_3_percent(conv_ch):
    target = count_parameters(build_model("DeformConv2dv2", conv_ch))
    matched = count_parameters(build_model("Conv2d-params", conv_ch))
    assert abs(matched - target) / target <= 0.03, (matched, target)
    assert all(isinstance(m, nn.Conv2d) for m in build_model("Conv2d-params", conv_ch).features if not isinstance(m, (nn.BatchNorm2d, nn.ReLU)))


def test_the_dilated_control_keeps_the_output_size():
    convs = [m for m in build_model("Conv2d-dilated", [4, 8]).features if isinstance(m, nn.Conv2d)]
    assert [(c.dilation, c.padding) for c in convs] == [((2, 2), (2, 2))] * 2
    assert convs[0](torch.randn(1, 3, 32, 32)).shape == (1, 4, 32, 32)


@pytest.mark.parametrize("variant, deformable", [("DeformConv2d-last", [False, True]), ("DeformConv2dv2-last", [False, True]),
                                                 ("DeformConv2d", [True, True]), ("Conv2d", [False, False])])
def test_which_blocks_are_deformable(variant, deformable):
    convs = [m for m in build_model(variant, [4, 8]).features if isinstance(m, (nn.Conv2d, DeformableConv))]
    assert [isinstance(m, DeformableConv) for m in convs] == deformable


def test_deformable_layers_overrides_the_variant_and_rebuilds_from_the_checkpoint():
    model = build_model("DeformConv2d", [4, 8, 16], deformable_layers=[1, 3])
    assert [isinstance(m, DeformableConv) for m in model.features if isinstance(m, (nn.Conv2d, DeformableConv))] == [True, False, True]
    again = build_model(**model.model_args)
    again.load_state_dict(model.state_dict())  # same parameters: rebuilt from its own arguments


def test_mask_only_has_no_offset_predictor_and_zero_offsets():
    layer = build_model("DeformConv2dv2-mask-only", [4, 8]).deformable_convs()[0]
    assert layer.offset is None and layer.mask is not None
    offset, mask = layer.predict(torch.randn(2, 3, 8, 8))
    assert offset.shape == (2, 18, 8, 8) and not offset.any() and mask.shape == (2, 9, 8, 8)


def test_frozen_offsets_are_exactly_zero_after_training(tmp_path, synthetic_data):
    cfg = make_train_config(tmp_path, "DeformConv2dv2-mask-only", num_epoch=2)
    assert run_script("train", "DeformConv2dv2", write_config(tmp_path / "t.json", cfg)) == 0
    state = load_checkpoint(tmp_path / "run/train/weights.pth")
    model = model_from_checkpoint(state, "weights.pth", "gather").eval()
    x = (synthetic_set(8, seed=5).images.float() - 128) / 64
    masks_moved = False
    for layer in model.deformable_convs():
        offset, mask = layer.predict(x)
        assert torch.equal(offset, torch.zeros_like(offset))
        masks_moved |= bool((mask - 0.5).abs().max() > 0)
        x = layer(x)
    assert masks_moved  # the mask did train


def test_offset_lr_mult_zero_keeps_the_predictors_at_their_start(tmp_path, synthetic_data, capsys):
    cfg = make_train_config(tmp_path, "DeformConv2dv2", num_epoch=1, offset_lr_mult=0.0)
    assert run_script("train", "DeformConv2dv2", write_config(tmp_path / "t.json", cfg)) == 0
    assert "adamw lr 0.01 (offset/mask predictors x0);" in capsys.readouterr().out  # the log says how it trained
    state = load_checkpoint(tmp_path / "run/train/ckpt/last.pth")
    predictors = {k: v for k, v in state["model"].items() if ".offset." in k or ".mask." in k}
    assert predictors and all(not v.any() for v in predictors.values())  # zero-initialised, never moved
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.01, 0.0]
    record = json.loads((tmp_path / "run/run.json").read_text())
    assert record["settings"]["offset_lr_mult"] == 0.0 and state["config"]["offset_lr_mult"] == 0.0


def test_a_control_runs_through_its_models_scripts(tmp_path, synthetic_data):
    cfg = write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=1))
    assert run_script("train", "Conv2d", cfg, "--set", "variant=Conv2d-params") == 0
    assert run_script("test", "Conv2d", write_config(tmp_path / "test.json", make_test_config(tmp_path, epoch=1))) == 0
    metrics = json.loads((tmp_path / "run/test/metrics.json").read_text())
    assert metrics["variant"] == "Conv2d-params" and metrics["parameters"] == count_parameters(build_model("Conv2d-params", [8, 16]))


def test_transformed_test_sets_are_the_same_bytes_every_time():
    images = synthetic_set(20, seed=3).images
    first, second = transformed(images), transformed(images.clone())
    assert list(first) == list(TRANSFORMS)
    assert {n: checksum(x) for n, x in first.items()} == {n: checksum(x) for n, x in second.items()}
    assert len({checksum(x) for x in first.values()} | {checksum(images)}) == len(TRANSFORMS) + 1  # every copy differs
    shifted = first["shift_x+4"]
    assert torch.equal(shifted[..., 4:], images[..., :-4]) and not shifted[..., :4].any()  # 4 px right, black fill


def test_robustness_is_reported_with_identical_images_for_every_variant(tmp_path, synthetic_data):
    reports = {}
    for variant in ("Conv2d", "DeformConv2d"):
        run = tmp_path / variant
        cfg = make_train_config(tmp_path, variant, outdir=str(run), num_epoch=1)
        assert run_script("train", variant, write_config(tmp_path / "t.json", cfg)) == 0
        test_cfg = make_test_config(tmp_path, epoch=1, model=str(run / "train/weights.pth"))
        assert run_script("test", variant, write_config(tmp_path / "test.json", test_cfg)) == 0
        reports[variant] = json.loads((run / "test/metrics.json").read_text())
    a, b = (reports[v]["robustness"] for v in ("Conv2d", "DeformConv2d"))
    assert a["checksums"] == b["checksums"] and list(a["accuracy"]) == ["clean", *TRANSFORMS]
    assert a["images"] == 50 and a["accuracy"]["clean"] == reports["Conv2d"]["accuracy"]  # all 50 synthetic test images


def test_every_variant_has_a_script_and_the_base_three_come_first():
    assert list(VARIANTS)[:3] == list(BASE)
    assert all(v.family in BASE for v in VARIANTS.values())
