"""The cost-curve sweep of benchmark.py (utils/cost/sweep.py): its shapes, skip rule, special
cases, report and figure on tiny layers, and the growth fit on exact power laws. No timing is judged."""
import json

import pytest

from utils.cost.sweep_report import growth_exponent, growth_table
from utils.plumbing.config import BenchmarkConfig, parse_config
from utils.plumbing.errors import UserError

TINY = {"sweep": True, "batch_size": 2, "sweep_batch": [1, 2], "sweep_channels": [4, 8], "sweep_resolution": [4, 8], "sweep_threads": [1],
        "sweep_base_channels": 4, "sweep_base_resolution": 4, "sweep_large": [2, 8, 8], "repeats": 1, "sweep_min_time_s": 0}


def test_growth_exponent_recovers_a_power_law():
    assert growth_exponent([(1, 2.0), (2, 16.0), (4, 128.0)]) == pytest.approx(3.0)
    assert growth_exponent([(16, 5.0), (64, 5.0)]) == pytest.approx(0.0, abs=1e-12)
    assert growth_exponent([(8, 1.0)]) is None
    rows = [{"axis": "batch", "impl": "Conv2d", "threads": 2, "batch": b, "forward_ms": 0.5 * b, "forward_backward_ms": None} for b in (1, 8, 32)]
    table = growth_table(rows, ["Conv2d"], 2)
    assert len(table) == 1 and table[0]["kind"] == "forward" and table[0]["batch"] == pytest.approx(1.0) and table[0]["channels"] is None


@pytest.mark.slow
def test_sweep_measures_every_point_and_writes_its_report(tmp_path, cpp_kernel):
    from utils.cost.models import run_benchmark

    cfg = parse_config({**TINY, "outdir": str(tmp_path), "backends": ["gather", "cpp"]}, BenchmarkConfig)
    result = run_benchmark(cfg)
    sweep = result["sweep"]
    impls = ["Conv2d", "DCNv2, gather", "DCNv2, cpp", "op, cpp", "op, ONNX Runtime"]
    assert sweep["implementations"] == impls
    # Three axes of two values each, at one thread count, for every implementation.
    assert len(sweep["rows"]) == 3 * 2 * len(impls)
    for row in sweep["rows"]:
        assert row["forward_ms"] > 0 and not row["skipped"], row
        assert (row["forward_backward_ms"] is None) == row["impl"].startswith("op"), row
    # The base point is measured once and shared by the three axes.
    base = [r for r in sweep["rows"] if (r["batch"], r["channels"], r["resolution"]) == (2, 4, 4) and r["impl"] == "DCNv2, cpp"]
    assert len(base) == 3 and len({r["forward_ms"] for r in base}) == 1
    cases = {(s["case"], s["impl"]): s for s in sweep["special"]}
    assert len(cases) == 2 * len(impls)
    for s in cases.values():
        assert "error" not in s and s["forward_ms"] > 0 and s["peak_memory_mb"] >= 0, s
    assert cases[("1x1 output, batch 1", "DCNv2, cpp")]["resolution"] == 1
    md = (tmp_path / "benchmark_sweep.md").read_text()
    for section in ("## batch", "## channels", "## resolution", "## Growth", "## Special cases", "against ONNX Runtime"):
        assert section in md
    assert json.loads((tmp_path / "benchmark_sweep.json").read_text())["sweep"]["base"] == {"batch": 2, "channels": 4, "resolution": 4}
    assert (tmp_path / "benchmark_sweep.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_slow_call_is_timed_once_and_its_axis_stops_there(tmp_path):
    from utils.cost.sweep import measure_sweep, special_cases

    cfg = parse_config({**TINY, "outdir": str(tmp_path), "sweep_max_call_s": 1e-9, "backends": ["gather"]}, BenchmarkConfig)
    rows = measure_sweep(cfg, ["gather"])
    for row in (r for r in rows if r["impl"] == "DCNv2, gather"):
        smallest = row[row["axis"]] == min(r[row["axis"]] for r in rows if r["axis"] == row["axis"])
        if smallest:  # the first point of each axis: one call, recorded
            assert row["calls"] == {"forward": 1, "forward_backward": 1} and row["forward_ms"] > 0
        else:  # beyond it: skipped, and said why
            assert row["forward_ms"] is None and "took over" in row["skipped"]["forward"], row
    large = [s for s in special_cases(cfg, ["gather"], rows) if s["case"] == "large"]
    assert all("skipped" in s for s in large)


@pytest.mark.parametrize("raw, words", [
    ({"sweep": True, "device": "cuda"}, '"sweep" measures CPU implementations'),
    ({"sweep": True, "sweep_large": [128, 256]}, "sweep_large"),
    ({"sweep": True, "sweep_threads": []}, "sweep_threads"),
])
def test_bad_sweep_keys_are_one_line(raw, words):
    with pytest.raises(UserError, match=words) as err:
        parse_config(raw, BenchmarkConfig)
    assert "\n" not in str(err.value)


def test_the_shipped_benchmark_configs_parse():
    from pathlib import Path

    from utils.plumbing.config import load_config

    root = Path(__file__).resolve().parents[1] / "config"
    assert load_config(str(root / "benchmark_sweep.json"), BenchmarkConfig).sweep
    gpu = load_config(str(root / "benchmark_gpu.json"), BenchmarkConfig)
    assert (gpu.device, gpu.report_name) == ("cuda", "benchmark_gpu") and "cpp" not in gpu.backends  # cpp is a CPU kernel


@pytest.mark.slow
def test_a_spawned_measurement_sees_its_own_peak_memory_not_its_parents():
    """getrusage's ru_maxrss would start a spawned child at the parent's resident size (and show 0 MB growth);
    the child's own peak must show its tensors however large the parent is."""
    import torch

    from utils.cost.sweep import measure_special
    from utils.plumbing.isolated import call_in_process

    ballast = torch.ones(96 * 2**20)  # 384 MB resident in this (the parent) process
    ok, row = call_in_process(measure_special, "Conv2d", 2, 64, 128, 1, 1, 60.0, 0.0)
    assert ok and ballast.sum() > 0, row
    # The input (8 MB), the output and their gradients at least.
    assert row["input_mb"] == 8 and row["peak_memory_mb"] >= 2 * row["input_mb"], row
