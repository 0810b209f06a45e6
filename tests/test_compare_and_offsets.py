"""compare.py end to end (its numbers: test_report.py); visualize_offsets for v1/v2 and its refusal for Conv2d."""
import json

import pytest
from conftest import ROOT, make_train_config, run_script, write_config

from models.deform_ops import cpp
from utils.engine.robustness import TRANSFORMS
from utils.experiments.compare import compare
from utils.experiments.offsets import visualize
from utils.plumbing.config import BenchmarkConfig, CompareConfig, parse_config
from utils.plumbing.errors import UserError


def tiny_compare_config(tmp_path, **overrides):
    raw = {"protocol": "tiny", "outdir": str(tmp_path / "cmp"), "seeds": [0, 1], "conv_ch": [4, 8], "batch_size": 32,
           "test_size": 0.2, "learning_rate": 0.01, "weight_decay": 0.0, "num_epoch": 2, "eval_batch_size": 25,
           "data_dir": str(tmp_path / "data"), "download": False, "device": "cpu"}
    raw.update(overrides)
    return parse_config(raw, CompareConfig)



@pytest.mark.slow
def test_compare_end_to_end_then_resumes_only_what_is_missing(tmp_path, synthetic_data, capsys):
    cfg = tiny_compare_config(tmp_path)
    compare(cfg)
    out = tmp_path / "cmp"
    for name in ("comparison.md", "comparison.json", "comparison.csv", "comparison_curves.png", "comparison_accuracy.png",
                 "comparison_per_class.png", "comparison_robustness.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "comparison.json").read_text())
    assert [m["model"] for m in report["models"]] == ["Conv2d", "DeformConv2d", "DeformConv2dv2"]
    assert all(m["seeds"] == 2 and m["epochs"] == 2 for m in report["models"])
    assert len(report["pairs"]) == 3 and all(p["paired_seeds"] == 2 for p in report["pairs"])
    assert all(m["robustness"]["images"] == 50 and set(m["robustness"]["accuracy"]) == {"clean", *TRANSFORMS} for m in report["models"])
    assert [(r["model"], r["seed"]) for r in report["runs"]][:3] == [("Conv2d", 0), ("Conv2d", 1), ("DeformConv2d", 0)]
    assert all(r["segments"] == 1 and r["hosts"] and r["test_images"] == 50 for r in report["runs"])  # from each run.json
    md = (out / "comparison.md").read_text()
    assert "| DeformConv2dv2 | 1 | " in md.split("Every run")[1]
    assert "protocol `tiny`" in md and "Holm-corrected over the 3 pairs" in md and "| DeformConv2dv2 | " in md.split("Geometric robustness")[1]
    written = {name: (out / name).read_bytes() for name in ("comparison.json", "comparison.md")}
    compare(tiny_compare_config(tmp_path, aggregate_only=True))  # aggregating again (a fresh clone, the watcher) ...
    assert {name: (out / name).read_bytes() for name in written} == written  # ... writes the same report, byte for byte

    # Remove one run's test results and interrupt another run's training: only those are redone.
    (out / "Conv2d/seed_1/test/metrics.json").unlink()
    before = (out / "DeformConv2d/seed_0/train/history.json").stat().st_mtime_ns
    capsys.readouterr()
    compare(cfg)
    log = capsys.readouterr().out
    assert log.count("trained already, skipping") == 6
    assert (out / "Conv2d/seed_1/test/metrics.json").exists()
    assert (out / "DeformConv2d/seed_0/train/history.json").stat().st_mtime_ns == before

    only = tiny_compare_config(tmp_path, aggregate_only=True, seeds=[0, 1, 2])
    rows, _ = compare(only)  # seed 2 was never run: aggregated over the seeds that exist
    assert all(r["seeds"] == 2 for r in rows)


def test_aggregate_only_with_nothing_to_aggregate(tmp_path):
    with pytest.raises(UserError, match="no finished runs"):
        compare(tiny_compare_config(tmp_path, aggregate_only=True))


@pytest.mark.parametrize("variant", ["DeformConv2d", "DeformConv2dv2"])
def test_offset_figure_for_deformable_checkpoints(tmp_path, synthetic_data, variant):
    assert run_script("train", variant, write_config(tmp_path / "t.json", make_train_config(tmp_path, variant, num_epoch=1))) == 0
    out = tmp_path / "offsets.png"
    report = visualize(tmp_path / "run/train/weights.pth", None, False, [0, 1], (16, 16), out, summary_images=20)
    assert out.stat().st_size > 0 and out.with_suffix(".json").exists()
    assert [row["layer"] for row in report["layers"]] == [1, 2]
    assert all(row["mean_offset_magnitude_px"] > 0 for row in report["layers"])  # training moved the offsets
    assert ("mask_mean" in report["layers"][0]) == (variant == "DeformConv2dv2")


def test_offset_figure_for_a_resnet_is_drawn_on_its_last_stage(tmp_path, synthetic_data):
    cfg = make_train_config(tmp_path, "DeformConv2dv2", num_epoch=1, network="resnet20", conv_ch=[4, 8, 16])
    assert run_script("train", "DeformConv2dv2", write_config(tmp_path / "t.json", cfg)) == 0
    report = visualize(tmp_path / "run/train/weights.pth", None, False, [0], None, tmp_path / "o.png", summary_images=20)
    assert report["location"] == [4, 4] and [row["layer"] for row in report["layers"]] == [1, 2, 3, 4, 5, 6]  # the 8x8 grid's centre
    with pytest.raises(UserError, match="outside the 8x8 output grid of the last deformable layer"):
        visualize(tmp_path / "run/train/weights.pth", None, False, [0], (16, 16), tmp_path / "o2.png", summary_images=20)


def test_sampling_points_on_a_coarser_grid_are_drawn_at_the_pixels_they_are_centred_on():
    import torch

    from models.deformable_conv import DeformableConv
    from utils.experiments.offsets import sampling_points

    layer = DeformableConv(2, 2, 3)
    off = torch.zeros(1, 9, 2, 8, 8)
    off[0, :, 1] = 0.5  # every tap half a grid step to the right
    points, weights = sampling_points([(layer, off, None)], 0, 4, 4, stride=4)
    grid = [(4 + i, 4 + j + 0.5) for i in (-1, 0, 1) for j in (-1, 0, 1)]
    assert points.tolist() == [[y * 4, x * 4] for y, x in grid] and weights.tolist() == [1.0] * 9


@pytest.mark.parametrize("network, inputs", [("convnet", "standardized"), ("convnet", "unit"), ("resnet20", "standardized")])
def test_the_offsets_shown_are_the_ones_the_forward_pass_samples_with(network, inputs):
    """offsets_and_masks must give each layer what forward() gives it (standardized images, the residual path)."""
    import torch

    from models.factory import build_model
    from utils.experiments.offsets import offsets_and_masks

    torch.manual_seed(0)
    model = build_model("DeformConv2dv2", [4, 8] if network == "convnet" else [4, 8, 8], network=network, inputs=inputs, zero_predictors=False).eval()
    seen = []
    for layer in model.deformable_convs():
        layer.register_forward_hook(lambda m, inp, out: seen.append(m.predict(inp[0])))
    images = torch.rand(2, 3, 32, 32)
    model(images)
    for (_, off, mask), (fwd_off, fwd_mask) in zip(offsets_and_masks(model, images), seen):
        torch.testing.assert_close(off.flatten(1), fwd_off.flatten(1), rtol=0, atol=0)
        torch.testing.assert_close(mask, fwd_mask, rtol=0, atol=0)


def test_offset_figure_refused_for_conv2d(tmp_path, synthetic_data):
    assert run_script("train", "Conv2d", write_config(tmp_path / "t.json", make_train_config(tmp_path, num_epoch=1))) == 0
    with pytest.raises(UserError, match="is a Conv2d model: it has no offsets to show; pass a checkpoint of DeformConv2d, DeformConv2dv2"):
        visualize(tmp_path / "run/train/ckpt/model_1.pth", None, False, [0], (16, 16), tmp_path / "o.png", summary_images=10)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.slow
def test_benchmark_writes_its_report(tmp_path, cpp_kernel):
    from utils.cost.models import run_benchmark

    cfg = parse_config({"outdir": str(tmp_path), "batch_size": 2, "conv_ch": [4, 8], "warmup": 0, "repeats": 1, "device": "cpu",
                        "compile": False, "data_dir": str(tmp_path / "none"), "data_batches": 2,
                        "models": ["DeformConv2d", "DeformConv2dv2", "Conv2d-params"]}, BenchmarkConfig)
    result = run_benchmark(cfg)
    rows = result["results"]
    backends = ["torchvision", "gather", "cpp"]
    assert [(r["model"], r["backend"]) for r in rows] == ([("Conv2d", "-")] + [(m, b) for m in ("DeformConv2d", "DeformConv2dv2") for b in backends]
                                                          + [("Conv2d-params", "-")])
    matched = result["parameter_matched"][0]
    assert matched["model"] == "Conv2d-params" and abs(matched["parameters"] / matched["target_parameters"] - 1) <= 0.03
    assert rows[0]["train_step_vs_conv2d"] == 1.0 and all(r["train_step_ms"] > 0 and r["parameters"] > 0 for r in rows)
    assert 0 < result["data_pipeline"]["data_share"] < 1
    md = (tmp_path / "benchmark.md").read_text()
    assert f"Conv2d-params: widths {matched['widths']} (conv_ch [4, 8] scaled by one factor), {matched['parameters']:,} parameters = " in md
    assert "| DeformConv2dv2 | gather |" in md and json.loads((tmp_path / "benchmark.json").read_text())["environment"]["torch_threads"] >= 1
    ops = {r["op"]: r for r in result["op_inference"]["rows"]}  # the op alone, forward, against ONNX Runtime
    assert set(ops) == {"deform_conv2d, torchvision", "deform_conv2d, gather", "deform_conv2d, cpp", "ONNX Runtime DeformConv", "F.conv2d, NCHW",
                        "F.conv2d, channels-last", "ONNX Runtime Conv"}
    assert all(r["forward_ms"] > 0 and r["max_abs_difference"] <= 1e-4 for r in ops.values())  # all compute the same output
    assert "| ONNX Runtime DeformConv |" in md
    breakdown = result["layer_breakdown"]  # per block and deformable model: where the cpp layer's time goes
    assert [(r["block"], r["model"], r["shape"]) for r in breakdown] == [(1, "DeformConv2d", [2, 3, 4, 32]), (1, "DeformConv2dv2", [2, 3, 4, 32]),
                                                                         (2, "DeformConv2d", [2, 4, 8, 32]), (2, "DeformConv2dv2", [2, 4, 8, 32])]
    assert all(r[k] > 0 for r in breakdown for k in ("nn.Conv2d", "predictor conv", "op forward", "op forward+backward", "layer"))
    assert "Where the time goes" in md and "| 2 | 2, 4→8, 32x32 | DeformConv2dv2 |" in md


@pytest.mark.slow
def test_benchmark_adds_compiled_rows(tmp_path, cpp_kernel):
    from utils.cost.models import run_benchmark

    cfg = parse_config({"outdir": str(tmp_path), "batch_size": 2, "conv_ch": [4], "warmup": 2, "repeats": 1, "device": "cpu", "report_name": "bench_x",
                        "backends": ["cpp"], "models": ["DeformConv2dv2"], "data_dir": str(tmp_path / "none"), "data_batches": 1}, BenchmarkConfig)
    rows = run_benchmark(cfg)["results"]
    assert [(r["model"], r["backend"], r["compiled"]) for r in rows] == [("Conv2d", "-", False), ("DeformConv2dv2", "cpp", False),
                                                                        ("Conv2d", "-", True), ("DeformConv2dv2", "cpp", True)]
    assert all(r["train_step_ms"] > 0 for r in rows) and rows[0]["train_step_vs_conv2d"] == 1.0
    assert "| DeformConv2dv2 | cpp, compiled |" in (tmp_path / "bench_x.md").read_text()  # report_name names the files
    assert (tmp_path / "bench_x.json").exists() and not (tmp_path / "benchmark.md").exists()


@pytest.mark.slow
def test_benchmark_skips_a_backend_it_cannot_run(tmp_path, monkeypatch, capsys):
    from utils.cost.models import run_benchmark

    monkeypatch.setattr(cpp, "_state", {"error": "no compiler"})
    cfg = parse_config({"outdir": str(tmp_path), "batch_size": 2, "conv_ch": [4], "warmup": 0, "repeats": 1, "device": "cpu",
                        "backends": ["gather", "cpp"], "compile": False, "data_dir": str(tmp_path / "none"), "data_batches": 1}, BenchmarkConfig)
    rows = run_benchmark(cfg)["results"]
    assert [(r["model"], r["backend"]) for r in rows] == [("Conv2d", "-"), ("DeformConv2d", "gather"), ("DeformConv2dv2", "gather")]
    assert 'skipping dcn_backend cpp: "dcn_backend": "cpp" could not be built here (no compiler)' in capsys.readouterr().out


@pytest.mark.parametrize("stem", ["benchmark", "benchmark_gpu", "benchmark_gpu_b256"])
def test_published_benchmark_reports_are_what_their_measurements_render(stem):
    """result/<stem>.md is the report of result/<stem>.json (no hand edits), and a speed ratio below 1 reads
    as "slower", never as "0.1x faster" (on a GPU, gather is far slower than torchvision's CUDA kernel)."""
    from utils.cost.report import _speed, render_markdown

    result = json.loads((ROOT / "result" / f"{stem}.json").read_text())
    assert (ROOT / "result" / f"{stem}.md").read_text() == render_markdown(result)
    assert (_speed(2.0), _speed(0.1)) == ("2.0x faster", "10.0x slower")
