"""The effective receptive field (receptive_field.py): maps whose support is known exactly, the statistics drawn from
them, eval mode with BatchNorm untouched, and a protocol's runs analysed and reported."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from test_compare_and_offsets import tiny_compare_config

from models.factory import build_model
from utils.experiments.compare import compare
from utils.experiments.receptive_field import erf_maps, grid_covers_image, map_statistics
from utils.plumbing.runs import ProtocolLayout


def one_layer(variant, weight):
    """A one-block network on [0, 1] images whose BatchNorm is the identity (up to its eps): the map is the kernel's."""
    model = build_model(variant, [1], inputs="unit")
    conv = model.features[0]
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.zero_()
    return model.eval()


WEIGHT = torch.tensor([[[1.0, -2.0, 0.5], [0.25, 3.0, -1.0], [2.0, 0.0, -0.5]]]).repeat(1, 3, 1, 1) * torch.tensor([1.0, -0.5, 2.0]).view(1, 3, 1, 1)
SCALE = 1 / np.sqrt(1 + 1e-5)  # BatchNorm in eval mode: running variance 1, eps 1e-5


def support(erf):
    return {tuple(p) for p in np.argwhere(erf > 0)}


def test_one_plain_convolution_maps_its_kernel_exactly():
    maps, units = erf_maps(one_layer("Conv2d", WEIGHT), torch.rand(4, 3, 32, 32))
    expected = np.zeros((32, 32))
    expected[15:18, 15:18] = WEIGHT[0].abs().sum(0).numpy() * SCALE  # |w| summed over the colour channels, around the unit
    np.testing.assert_allclose(maps["centre"], expected, rtol=1e-6, atol=0)
    assert units["centre"] == (16, 16) and support(maps["centre"]) == {(y, x) for y in (15, 16, 17) for x in (15, 16, 17)} - {(17, 16)}  # a zero tap
    corner = np.zeros((32, 32))
    corner[:2, :2] = WEIGHT[0].abs().sum(0).numpy()[1:, 1:] * SCALE  # zero padding: the taps outside the image see nothing
    np.testing.assert_allclose(maps["corner"], corner, rtol=1e-6, atol=0)


def test_a_dilated_convolution_reaches_5x5_with_holes():
    maps, _ = erf_maps(one_layer("Conv2d-dilated", torch.ones(1, 3, 3, 3)), torch.rand(2, 3, 32, 32))
    assert support(maps["centre"]) == {(16 + dy, 16 + dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2)}


def test_offsets_that_shift_every_tap_move_the_support():
    plain, _ = erf_maps(one_layer("Conv2d", WEIGHT), torch.rand(2, 3, 32, 32))
    model = one_layer("DeformConv2d", WEIGHT)
    layer = model.deformable_convs()[0]
    with torch.no_grad():
        layer.offset.bias.view(9, 2)[:, 1] = 2.0  # (dy, dx) per tap: every tap 2 px to the right
    moved, _ = erf_maps(model, torch.rand(2, 3, 32, 32))
    np.testing.assert_allclose(moved["centre"], np.roll(plain["centre"], 2, axis=1), rtol=1e-5, atol=1e-7)
    assert min(x for _, x in support(moved["centre"])) == 17


def test_the_gradient_is_taken_in_eval_mode_with_batchnorm_untouched():
    torch.manual_seed(0)
    model = build_model("DeformConv2dv2", [4, 8], zero_predictors=False)
    model.train()
    model(torch.rand(8, 3, 32, 32))  # move the running statistics away from their start
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(6, 3, 32, 32)
    together, _ = erf_maps(model, images, batch_size=6)
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Each image's gradient is its own (in training mode the batch's statistics would couple them).
    alone = [erf_maps(model, images[i : i + 1])[0]["centre"] for i in range(6)]
    np.testing.assert_allclose(together["centre"], np.mean(alone, axis=0), rtol=1e-5, atol=1e-9)


def test_radii_and_the_share_outside_the_fixed_grid():
    delta = np.zeros((32, 32))
    delta[16, 16] = 1
    assert map_statistics(delta, (16, 16), 5) == {"radius_50": 0.0, "radius_90": 0.0, "share_outside_fixed": 0.0}
    square = np.zeros((32, 32))
    square[15:18, 15:18] = 1  # 1/9 at 0 px, 4/9 at 1 px, 4/9 at 1.41 px
    stats = map_statistics(square, (16, 16), 5)
    assert stats["radius_50"] == 1.0 and stats["radius_90"] == pytest.approx(np.sqrt(2)) and stats["share_outside_fixed"] == 0.0
    assert map_statistics(square, (16, 16), 1)["share_outside_fixed"] == pytest.approx(8 / 9)


def test_a_grid_covers_the_image_only_when_it_reaches_every_pixel_from_a_corner():
    assert grid_covers_image(81, (32, 32)) and grid_covers_image(63, (32, 32))  # half 31: from pixel 0 it reaches 31
    assert not grid_covers_image(61, (32, 32)) and not grid_covers_image(5, (32, 32)) and not grid_covers_image(81, (32, 42))


def test_a_resnet_unit_is_centred_on_its_stride_and_sees_the_whole_image():
    model = build_model("DeformConv2dv2", [4, 8, 8], network="resnet20")
    assert model.feature_stride == 4 and model.fixed_receptive_field() == 81
    maps, units = erf_maps(model, torch.rand(3, 3, 32, 32))
    assert units == {"centre": (4, 4), "border": (0, 4), "corner": (0, 0)} and maps["centre"].shape == (32, 32)


@pytest.mark.slow
def test_a_protocols_runs_are_analysed_and_reported(tmp_path, synthetic_data):
    cfg = tiny_compare_config(tmp_path, seeds=[0, 1], models=["Conv2d", "DeformConv2dv2"], robustness=False, precise_bn=False)
    compare(cfg)
    layout = ProtocolLayout(cfg.outdir)
    for name in cfg.models:
        run = layout.run(name, 0)
        field = json.loads(run.receptive_field_json.read_text())
        assert field["images"] == 50 and field["checkpoint_epoch"] == 2 and set(field["positions"]) == {"centre", "border", "corner"}
        assert run.receptive_field_json in run.result_files() and run.offsets_json.exists() == (name == "DeformConv2dv2")
    assert json.loads(layout.run("Conv2d", 0).receptive_field_json.read_text())["positions"]["centre"]["share_outside_fixed"] == 0.0  # plain: 5x5
    report = json.loads(layout.file("comparison.json").read_text())
    rows = {r["model"]: r for r in report["models"]}
    assert rows["Conv2d"]["receptive_field"]["runs"] == 2 and "offsets" not in rows["Conv2d"]
    assert "grid_covers_image" not in rows["Conv2d"]["receptive_field"]  # 5x5: the key stays out, old reports unchanged
    layer = rows["DeformConv2dv2"]["offsets"]["layers"][0]
    assert len(layer["mask_mean_per_tap"]) == 9 and len(layer["share_moved_over_1px"]["values"]) == 2
    md = layout.file("comparison.md").read_text()
    assert "Effective receptive field" in md and "| DeformConv2dv2 | 2 | 2 |" in md  # the offsets table: layer 2 of 2 runs
    assert layout.file("comparison_receptive_field.png").stat().st_size > 0
    before = layout.run("Conv2d", 0).receptive_field_json.stat().st_mtime_ns
    compare(cfg)  # analysed already: not again
    assert layout.run("Conv2d", 0).receptive_field_json.stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_residual_protocol_runs_end_to_end_with_its_analysis(tmp_path, synthetic_data):
    """The path the residual queue takes after each run: the recipe's training, test, robustness, analysis and report
    for ResNet-20, whose fixed-grid receptive field (81x81) is larger than the image and whose last stage has six
    deformable convs."""
    cfg = tiny_compare_config(tmp_path, seeds=[0], models=["Conv2d", "DeformConv2d"], network="resnet20", conv_ch=[4, 8, 8],
                              optimizer="sgd", learning_rate=0.1, lr_schedule="cosine", warmup_epochs=1, augmentation="crop-flip")
    compare(cfg)
    layout = ProtocolLayout(cfg.outdir)
    report = json.loads(layout.file("comparison.json").read_text())
    rows = {r["model"]: r for r in report["models"]}
    assert rows["Conv2d"]["receptive_field"]["runs"] == 1 and "robustness" in rows["Conv2d"]
    field = json.loads(layout.run("DeformConv2d", 0).receptive_field_json.read_text())
    assert field["fixed_receptive_field"] == 81 and field["positions"]["centre"]["share_outside_fixed"] == 0.0
    assert len(rows["DeformConv2d"]["offsets"]["layers"]) == 6
    md = layout.file("comparison.md").read_text()
    assert rows["Conv2d"]["receptive_field"]["grid_covers_image"] is True
    assert "receptive field, 81x81, covers the whole image" in md and "outside 81x81" not in md  # zero by construction: no column
    assert "training saw random crops" in md and "no augmentation in training" not in md  # the robustness copies' caveat
    assert layout.file("comparison_receptive_field.png").stat().st_size > 0


@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path):
    for args, message in ((["--checkpoint", str(tmp_path / "none.pth"), "--images", "0"], "--images 0: the test set has 10,000 images"),
                          (["--checkpoint", str(tmp_path / "none.pth")], "does not exist")):
        done = subprocess.run([sys.executable, "receptive_field.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
