"""The comparison's numbers, report and figures from given runs (report.py, figures.py, compare.environment):
statistics, per-machine times, where runs were trained and tested, the robustness copies every run shares."""
import warnings

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from scipy import stats

from utils.engine.robustness import TRANSFORMS
from utils.experiments import figures
from utils.experiments.compare import environment
from utils.experiments.report import control_differences, render, summarize
from utils.experiments.stats import holm, mean_ci, paired, welch
from utils.plumbing.config import CompareConfig, parse_config
from utils.plumbing.machine import in_words


def fake_run(seed, acc, val_accs, params=100):
    history = [{"epoch": i + 1, "train_loss": 2.0 - i * 0.1, "val_loss": 2.1 - i * 0.1, "val_accuracy": v, "train_seconds": 10.0 + i, "val_seconds": 1.0}
               for i, v in enumerate(val_accs)]
    per_class = {c: acc for c in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")}
    return {"seed": seed, "history": history,
            "metrics": {"accuracy": acc, "parameters": params, "images_per_second": 1000.0, "per_class_accuracy": per_class}}


def test_aggregation_math_and_significance():
    runs = {
        "Conv2d": [fake_run(s, a, [0.3, 0.4]) for s, a in enumerate((0.50, 0.52, 0.51))],
        "DeformConv2d": [fake_run(s, a, [0.3, 0.6]) for s, a in enumerate((0.60, 0.61, 0.62))],
        "DeformConv2dv2": [fake_run(s, a, [0.5, 0.45]) for s, a in enumerate((0.49, 0.53, 0.52))],
    }
    runs["Conv2d"][1]["record"] = {"segments": [
        {"host": {"device": "cpu", "cpu": "AMD EPYC", "cpus": 2, "cpu_isa": "avx512", "torch_threads": 2}, "versions": {"code": "abc"}},
        {"host": {"device": "cuda:0"}, "versions": {"code": "def"}}]}
    rows, pairs, per_run = summarize(runs)
    assert [(r["model"], r["seed"]) for r in per_run][:4] == [("Conv2d", 0), ("Conv2d", 1), ("Conv2d", 2), ("DeformConv2d", 0)]
    one = per_run[1]
    assert one["test_accuracy"] == 0.52 and one["best_val_accuracy"] == 0.4 and one["best_val_epoch"] == 2
    assert one["training_minutes"] == pytest.approx((11 + 12) / 60)  # training + validation
    assert one["train_seconds_fastest_epoch"] == 10.0 and one["train_seconds_per_epoch"] == 10.5  # training alone, like the variant rows
    assert one["segments"] == 2 and one["hosts"] == ["AMD EPYC (2 CPUs, avx512, 2 torch threads)", "cuda:0"] and one["code"] == ["abc", "def"]
    assert per_run[0]["segments"] == 0 and per_run[0]["hosts"] == []  # no run.json: nothing claimed
    assert per_run[8]["best_val_epoch"] == 1  # DeformConv2dv2's validation accuracy peaked at epoch 1
    conv = rows[0]
    assert conv["test_accuracy_mean"] == pytest.approx(0.51)
    assert conv["test_accuracy_std"] == pytest.approx(0.01)
    assert conv["test_accuracy_ci95"] == pytest.approx(4.302653 * 0.01 / 3 ** 0.5, rel=1e-6)  # t(0.975, 2) = 4.3027
    assert conv["best_val_accuracy_mean"] == pytest.approx(0.4)
    assert rows[2]["best_val_accuracy_mean"] == pytest.approx(0.5)
    assert conv["train_seconds_per_epoch"] == pytest.approx(10.5)  # median of 10, 11, 10, 11, 10, 11
    assert conv["train_seconds_fastest_epoch"] == 10.0
    by_pair = {(p["a"], p["b"]): p for p in pairs}
    dcn = by_pair[("Conv2d", "DeformConv2d")]
    assert dcn["difference"] == pytest.approx(-0.10) and dcn["paired_seeds"] == 3
    # Paired by seed: differences -0.10, -0.09, -0.11 -> t = -17.32 with 2 df.
    assert dcn["p_paired"] == pytest.approx(stats.ttest_rel([0.50, 0.52, 0.51], [0.60, 0.61, 0.62]).pvalue)
    assert dcn["p_paired_holm"] == pytest.approx(min(1, 3 * dcn["p_paired"]))  # the smallest of 3 p-values: times 3
    assert dcn["significant"]
    assert not by_pair[("Conv2d", "DeformConv2dv2")]["significant"]  # overlapping seeds


def test_as_trained_accuracies_get_their_own_paired_differences_and_holm_family(tmp_path):
    """With precise BN the as-trained accuracies are a second measure: paired by seed, tested, Holm-corrected over the
    same pairs, and shown beside the precise ones; without it (as trained is the accuracy) nothing is added."""
    def run(seed, precise_acc, trained_acc):
        r = fake_run(seed, precise_acc, [0.5])
        r["metrics"].update(bn_statistics="precise", as_trained={"accuracy": trained_acc})
        return r

    runs = {"Conv2d": [run(0, 0.50, 0.52), run(1, 0.52, 0.55), run(2, 0.51, 0.53)],
            "DeformConv2d": [run(0, 0.60, 0.58), run(1, 0.61, 0.62), run(2, 0.62, 0.60)],
            "DeformConv2dv2": [run(0, 0.60, 0.61), run(1, 0.62, 0.60), run(2, 0.61, 0.64)]}
    rows, pairs, per_run = summarize(runs)
    dcn = {(p["a"], p["b"]): p for p in pairs}[("Conv2d", "DeformConv2d")]
    assert dcn["paired_difference_as_trained"] == pytest.approx(np.mean([-0.06, -0.07, -0.07]))
    assert dcn["paired_difference_as_trained_ci95"] == pytest.approx(mean_ci([-0.06, -0.07, -0.07])[1])
    assert dcn["p_paired_as_trained"] == pytest.approx(stats.ttest_rel([0.52, 0.55, 0.53], [0.58, 0.62, 0.60]).pvalue)
    assert [p["p_paired_as_trained_holm"] for p in pairs] == pytest.approx(holm([p["p_paired_as_trained"] for p in pairs]))
    assert dcn["paired_difference"] == pytest.approx(-0.10)  # the precise measure is its own
    cfg = parse_config({"protocol": "t", "outdir": str(tmp_path), "models": list(runs), "seeds": [0, 1, 2]}, CompareConfig)
    md = render(cfg, rows, pairs, per_run, "")
    assert "| as trained: paired difference (95 % CI) | p (as trained, Holm) |" in md
    assert f"| {dcn['paired_difference_as_trained']:+.4f} ({dcn['paired_difference_as_trained'] - dcn['paired_difference_as_trained_ci95']:+.4f}" in md
    plain = {name: [fake_run(r["seed"], r["metrics"]["accuracy"], [0.5]) for r in rs] for name, rs in runs.items()}
    assert not any("paired_difference_as_trained" in p for p in summarize(plain)[1])
    assert "as trained: paired" not in render(cfg, *summarize(plain), "")


def test_a_pair_with_one_shared_seed_is_untested_and_outside_holms_family(tmp_path, monkeypatch):
    # A control with one finished seed (a queue half way): its pairs have no test, so "larger than the spread?" must not
    # read "no", and Holm's correction of the tested pairs must not count them (it would inflate their p).
    runs = {"Conv2d": [fake_run(s, a, [0.5]) for s, a in enumerate((0.50, 0.52, 0.51))],
            "DeformConv2d": [fake_run(s, a, [0.5]) for s, a in enumerate((0.60, 0.61, 0.63))],
            "Conv2d-params": [fake_run(0, 0.70, [0.5])]}
    rows, pairs, per_run = summarize(runs)
    by_pair = {(p["a"], p["b"]): p for p in pairs}
    tested = by_pair[("Conv2d", "DeformConv2d")]
    assert tested["p_paired_holm"] == pytest.approx(tested["p_paired"]) and tested["significant"]  # a family of one
    assert by_pair[("Conv2d", "Conv2d-params")]["significant"] is None
    cfg = parse_config({"protocol": "tiny", "outdir": str(tmp_path), "models": list(runs), "seeds": [0, 1, 2]}, CompareConfig, "test")
    md = render(cfg, rows, pairs, per_run, "")
    assert "a single pair tested, so Holm changes nothing (2 with one shared seed: untested)" in md
    row = next(line for line in md.splitlines() if line.startswith("| Conv2d − Conv2d-params | -0.1900 |"))
    assert row.endswith("| untested (1 seed) |")
    lone = {name: rs[:1] for name, rs in runs.items()}  # a protocol of one seed: nothing is tested at all
    assert "no pair tested (3 with one shared seed: untested)" in render(cfg, *summarize(lone), "")
    figs = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: figs.append(fig))
    assert figures.plot_controls(control_differences(rows, pairs), tmp_path / "c.png", "tiny")
    assert "1 shared seed (no CI with 1 seed)" in figs[0]._suptitle.get_text()  # a lone point has no interval to claim
    assert not any(bars.has_xerr for ax in figs[0].axes for bars in ax.containers)  # and no zero-width bar that reads as certainty
    figs.clear()
    figures.plot_comparison_accuracy(rows, tmp_path / "a.png", "tiny")
    assert [t.get_text() for t in figs[0].axes[0].texts] == ["0.510", "0.613", "0.700\n1 seed, no CI"]
    assert [t.get_text() for t in figs[0].axes[0].get_xticklabels()] == ["Conv2d\n(3 seeds)", "DeformConv2d\n(3 seeds)",
                                                                         "Conv2d-params\n(1 seed)"]  # what each bar rests on
    assert [c.errorbar is not None for c in figs[0].axes[0].containers if hasattr(c, "errorbar")] == [True, True, False]


def test_each_control_is_set_against_each_model_of_the_question_with_the_right_sign(tmp_path, monkeypatch):
    # Variants in the order the config names them: a control may come before or after the model it is set against,
    # so its pair is stored either way round; the table always reads control − model.
    accuracies = {"Conv2d": (0.50, 0.52, 0.51), "Conv2d-params": (0.52, 0.53, 0.54), "DeformConv2d": (0.60, 0.61, 0.62),
                  "DeformConv2dv2": (0.63, 0.62, 0.66)}
    runs = {name: [fake_run(s, a, [0.5], params=100 + i) for s, a in enumerate(accs)] for i, (name, accs) in enumerate(accuracies.items())}
    rows, pairs, per_run = summarize(runs)
    cfg = parse_config({"protocol": "tiny", "outdir": str(tmp_path), "models": list(runs), "seeds": [0, 1, 2]}, CompareConfig, "test")
    md = render(cfg, rows, pairs, per_run, "").splitlines()
    header = md.index("| control | parameters | − Conv2d | − DeformConv2d | − DeformConv2dv2 |")
    cells = [c.strip() for c in md[header + 2].strip("|").split("|")]
    by_pair = {(p["a"], p["b"]): p for p in pairs}
    expected = []
    for base, diffs in (("Conv2d", (0.02, 0.01, 0.03)), ("DeformConv2d", (-0.08, -0.08, -0.08)), ("DeformConv2dv2", (-0.11, -0.09, -0.12))):
        mean, ci = mean_ci(diffs)
        pair = by_pair.get(("Conv2d-params", base)) or by_pair[(base, "Conv2d-params")]
        expected.append(f"{100 * mean:+.1f} ({100 * (mean - ci):+.1f} … {100 * (mean + ci):+.1f}), p {pair['p_paired_holm']:.3f}")
    assert cells == ["Conv2d-params", "101", *expected]
    assert cells[2].startswith("+2.0 (-0.5 … +4.5)") and cells[3].startswith("-8.0 (-8.0 … -8.0)")  # a control above Conv2d, below DCNv1
    assert md[header + 3:header + 4] in ([], [""])  # one control, one row
    # The figure draws the same differences: one panel per model, the control's point at control − model.
    figs = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: figs.append(fig))
    assert figures.plot_controls(control_differences(rows, pairs), tmp_path / "c.png", "tiny")
    drawn = [bars.lines[0].get_xdata()[0] for ax in figs[0].axes for bars in ax.containers]  # each error bar's point
    assert [ax.get_title() for ax in figs[0].axes] == ["control − Conv2d", "control − DeformConv2d", "control − DeformConv2dv2"]
    assert drawn == pytest.approx([2.0, -8.0, -32 / 3])
    assert [t.get_text() for t in figs[0].axes[0].get_yticklabels()] == ["Conv2d-params\n(3 seeds)"]  # what each row rests on
    # Only the three models, no control: no such table, no figure.
    rows, pairs, per_run = summarize({k: v for k, v in runs.items() if k != "Conv2d-params"})
    assert not any(line.startswith("| control |") for line in render(cfg, rows, pairs, per_run, "").splitlines())
    assert not figures.plot_controls(control_differences(rows, pairs), tmp_path / "c.png", "tiny")


def test_epoch_times_are_reported_per_machine_when_a_protocol_moved(tmp_path):
    # Epoch seconds mean something only beside the CPU that ran them: a protocol trained on two machines gets a
    # table of them per machine, each epoch counted under the segment that trained it.
    amd = {"device": "cpu", "cpu": "AMD EPYC", "cpus": 2, "cpu_isa": "avx512", "torch_threads": 2}
    xeon = {**amd, "cpu": "Intel Xeon"}
    runs = {"Conv2d": [fake_run(0, 0.5, [0.3, 0.4, 0.5]), fake_run(1, 0.5, [0.3, 0.4, 0.5])],
            "DeformConv2d": [fake_run(0, 0.6, [0.3, 0.4, 0.5])]}  # epochs take 10, 11, 12 s
    runs["Conv2d"][0]["record"] = {"segments": [{"host": amd, "epochs": [1, 3]}]}
    runs["Conv2d"][1]["record"] = {"segments": [{"host": amd, "epochs": [1, 1]}, {"host": xeon, "epochs": [2, 3]},
                                                {"note": "no machine recorded", "epochs": [1, 1]}]}
    runs["DeformConv2d"][0]["record"] = {"segments": [{"host": xeon, "epochs": [1, 3]}]}
    rows, pairs, per_run = summarize(runs)
    amd_name, xeon_name = (in_words(h) for h in (amd, xeon))
    assert rows[0]["train_seconds_by_host"] == {amd_name: {"median": 10.5, "fastest": 10.0, "epochs": 4},
                                                xeon_name: {"median": 11.5, "fastest": 11.0, "epochs": 2}}
    assert rows[1]["train_seconds_by_host"] == {xeon_name: {"median": 11.0, "fastest": 10.0, "epochs": 3}}
    cfg = parse_config({"protocol": "tiny", "outdir": str(tmp_path), "models": ["Conv2d", "DeformConv2d"], "seeds": [0, 1]}, CompareConfig, "test")
    md = render(cfg, rows, pairs, per_run, "").splitlines()
    header = md.index(f"| model | {amd_name} | {xeon_name} |")
    assert md[header + 2:header + 4] == ["| Conv2d | 10 / 10 (4) | 12 / 11 (2) |", "| DeformConv2d | — | 11 / 10 (3) |"]
    # One machine: no such table (the main table's times are that machine's).
    runs["Conv2d"][1]["record"]["segments"][1]["host"] = amd
    runs["DeformConv2d"][0]["record"]["segments"][0]["host"] = amd
    rows, pairs, per_run = summarize(runs)
    assert not any(line.startswith("Training seconds per epoch on each machine") for line in render(cfg, rows, pairs, per_run, "").splitlines())


def test_environment_names_where_runs_were_trained_and_tested():
    amd = {"device": "cpu", "cpu": "AMD EPYC", "cpus": 2, "cpu_isa": "avx512", "torch_threads": 2}
    xeon = {**amd, "cpu": "Intel Xeon"}
    runs = {"Conv2d": [fake_run(0, 0.5, [0.5]), fake_run(1, 0.5, [0.5])]}
    for r in runs["Conv2d"]:
        r["record"] = {"segments": [{"host": amd, "epochs": [1, 1], "versions": {"torch": "2.14.1"}}]}
    runs["Conv2d"][0]["metrics"]["host"] = xeon  # tested again elsewhere; the other run's test predates the record
    env = environment(runs)
    assert env.startswith("Trained on: AMD EPYC (2 CPUs, avx512, 2 torch threads), torch 2.14.1.")
    assert "Tested on: Intel Xeon (2 CPUs, avx512, 2 torch threads) (1 run tested before tests recorded their machine)." in env
    del runs["Conv2d"][0]["metrics"]["host"]
    assert "Tested on" not in environment(runs)


def test_statistics_helpers():
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2)
    assert np.isnan(mean_ci([0.5])[1])
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3*0.01, max(2*0.03, .03), max(1*0.04, .06)
    assert np.isnan(holm([float("nan"), 0.2])[0]) and holm([float("nan"), 0.2])[1] == 0.2  # nan does not count
    assert np.isnan(welch([0.5], [0.6])) and np.isnan(paired([0.5], [0.6]))  # one seed: undefined, never "significant"
    assert paired([0.5, 0.6], [0.4, 0.5]) == 0.0 and paired([0.5, 0.6], [0.5, 0.6]) == 1.0  # no spread in the differences
    # Equal up to floating-point rounding is equal: a p-value of rounding noise would pass for a result.
    assert welch([0.3, 0.1 + 0.2, 0.3], [0.3, 0.3, 0.30000000000000004]) == 1.0
    assert paired([0.1 + 0.2, 0.3], [0.3, 0.30000000000000004]) == 1.0
    assert paired([0.3, 0.4, 0.5], [0.2, 0.3, 0.4]) == 0.0  # every difference is 0.1, up to rounding
    assert welch([0.3, 0.3], [0.2, 0.2]) == 0.0
    with warnings.catch_warnings():  # one sample without spread: Welch's test is exact, and says so without a warning
        warnings.simplefilter("error")
        assert welch([0.5, 0.5, 0.5], [0.6, 0.62, 0.61]) == pytest.approx(2 * stats.t.sf(0.11 / np.sqrt(0.0001 / 3), 2))
    assert 0 < paired([0.5, 0.61, 0.7], [0.4, 0.5, 0.6]) < 0.05 and 0 < welch([0.5, 0.52], [0.4, 0.41]) < 0.05  # a real spread is tested


def test_robustness_compares_only_the_copies_every_run_measured_alike(tmp_path, monkeypatch):
    # Two machines that round one rotation differently: that copy is left out for every variant (its accuracies
    # are of different images), the rest stay, and the report and figure say what was left out.
    def with_robustness(run, rotated_on):
        names = ["clean", *TRANSFORMS]
        run["metrics"]["robustness"] = {"subset": None, "images": 50, "accuracy": {n: 0.4 + 0.01 * i for i, n in enumerate(names)},
                                        "checksums": {n: rotated_on if n == "rotate+15" else f"same-{n}" for n in names}}
        return run
    runs = {"Conv2d": [with_robustness(fake_run(0, 0.5, [0.5]), "amd"), with_robustness(fake_run(1, 0.52, [0.5]), "amd")],
            "DeformConv2d": [with_robustness(fake_run(0, 0.6, [0.6]), "amd"), with_robustness(fake_run(1, 0.62, [0.6]), "intel")]}
    rows, pairs, per_run = summarize(runs)
    kept = [n for n in ["clean", *TRANSFORMS] if n != "rotate+15"]
    assert all(list(r["robustness"]["accuracy"]) == kept for r in rows)
    assert rows[0]["robustness"]["accuracy"]["clean"]["values"] == [0.4, 0.4]
    cfg = parse_config({"protocol": "tiny", "outdir": str(tmp_path), "models": ["Conv2d", "DeformConv2d"], "seeds": [0, 1]}, CompareConfig, "test")
    md = render(cfg, rows, pairs, per_run, "")
    header = next(line for line in md.splitlines() if line.startswith("| model | clean"))
    assert "Left out: rotate+15 —" in md and [c.strip() for c in header.strip("|").split("|")] == ["model", *kept]
    figs = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: figs.append(fig))
    figures.plot_robustness(rows, tmp_path / "r.png", "tiny")
    rotation = figs[0].axes[0]
    assert "left out" in rotation.get_title() and all(len(line.get_xdata()) == 4 for line in rotation.get_lines() if len(line.get_xdata()) > 1)
    # Every rotation rounded differently (what the full protocol met): no rotation panel with a lone clean point,
    # the title says why; with only the clean images in common there is no figure at all.
    for rotation_name in [n for n in TRANSFORMS if n.startswith("rotate")]:
        runs["DeformConv2d"][1]["metrics"]["robustness"]["checksums"][rotation_name] = "intel"
    figs.clear()
    assert figures.plot_robustness(summarize(runs)[0], tmp_path / "r.png", "tiny")
    assert [ax.get_xlabel() for ax in figs[0].axes] == ["scale", "horizontal shift (px)", "vertical shift (px)"]
    assert "no rotation:" in figs[0]._suptitle.get_text()
    for name in TRANSFORMS:
        runs["DeformConv2d"][1]["metrics"]["robustness"]["checksums"][name] = "intel"
    figs.clear()
    assert not figures.plot_robustness(summarize(runs)[0], tmp_path / "r.png", "tiny") and not figs
    # One run without robustness at all: nothing is compared.
    del runs["DeformConv2d"][1]["metrics"]["robustness"]
    assert all(r["robustness"] is None for r in summarize(runs)[0])


def test_accuracy_figure_keeps_wide_error_bars_and_their_labels_inside(tmp_path, monkeypatch):
    # Two seeds far apart give a 95 % CI wider than the seeds' own range: the axis must still hold the whole bar,
    # the whole error bar and the mean's label above it.
    rows, _, _ = summarize({"Conv2d": [fake_run(0, 0.52, [0.5]), fake_run(1, 0.53, [0.5])],
                            "DeformConv2d": [fake_run(0, 0.65, [0.6]), fake_run(1, 0.63, [0.6])]})
    kept = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: kept.append(fig))
    figures.plot_comparison_accuracy(rows, tmp_path / "acc.png", "test")
    ax = kept[0].axes[0]
    low, high = ax.get_ylim()
    for r in rows:
        assert low <= r["test_accuracy_mean"] - r["test_accuracy_ci95"] and r["test_accuracy_mean"] + r["test_accuracy_ci95"] < high
    assert all(low <= t.get_position()[1] < high for t in ax.texts) and len(ax.texts) == 2


def test_accuracy_figure_shows_every_seed_as_its_own_dot(tmp_path, monkeypatch):
    # Two seeds with the same accuracy (Conv2d's seeds 0 and 1 at 30 epochs both test 0.5417) must not print as one dot.
    def precise(run, as_trained):
        run["metrics"].update(bn_statistics="precise", as_trained={"accuracy": as_trained})
        return run
    rows, _, _ = summarize({"Conv2d": [precise(fake_run(0, 0.54, [0.5]), 0.52), precise(fake_run(1, 0.54, [0.5]), 0.52),
                                       precise(fake_run(2, 0.55, [0.5]), 0.53)],
                            "DeformConv2d": [precise(fake_run(0, 0.65, [0.6]), 0.64)]})
    kept = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: kept.append(fig))
    figures.plot_comparison_accuracy(rows, tmp_path / "acc.png", "test")
    conv, conv_as_trained, dcn, _ = (c.get_offsets() for c in kept[0].axes[0].collections if isinstance(c, PathCollection))
    for dots in (conv, conv_as_trained):
        assert len({tuple(xy) for xy in dots.tolist()}) == 3 and all(-0.4 < x < 0.4 for x in dots[:, 0])  # over its bar
    assert list(conv[:, 1]) == [0.54, 0.54, 0.55] and list(conv_as_trained[:, 1]) == [0.52, 0.52, 0.53] and 0.6 < dcn[0, 0] < 1.4


def test_robustness_drop_in_points_and_as_the_fraction_kept():
    """Per run: the points lost over the transformed copies and the fraction of clean accuracy kept; per pair: the
    paired difference seed by seed. A model twice as accurate that loses twice the points keeps the same fraction."""
    names = ["clean", *TRANSFORMS]

    def with_robustness(run, clean, lost):  # every transformed copy `lost` below clean
        run["metrics"]["robustness"] = {"subset": None, "images": 50, "accuracy": {n: clean - (lost if n != "clean" else 0) for n in names},
                                        "checksums": {n: "same" for n in names}}
        return run
    runs = {"Conv2d": [with_robustness(fake_run(0, 0.3, [0.3]), 0.30, 0.10), with_robustness(fake_run(1, 0.3, [0.3]), 0.30, 0.12)],
            "DeformConv2d": [with_robustness(fake_run(0, 0.6, [0.6]), 0.60, 0.20), with_robustness(fake_run(1, 0.6, [0.6]), 0.60, 0.21)]}
    rows, pairs, per_run = summarize(runs)
    conv, dcn = (r["robustness"] for r in rows)
    assert conv["drop"]["values"] == pytest.approx([0.10, 0.12]) and dcn["drop"]["values"] == pytest.approx([0.20, 0.21])
    assert conv["retained"]["values"] == pytest.approx([2 / 3, 0.6]) and dcn["retained"]["values"] == pytest.approx([2 / 3, 0.65])
    assert conv["drop"]["ci95"] == pytest.approx(mean_ci([0.10, 0.12])[1])
    (pair,) = pairs
    assert pair["robustness_drop"]["difference"] == pytest.approx(-0.095)  # Conv2d loses fewer points ...
    assert pair["robustness_retained"]["difference"] == pytest.approx(-0.025)  # ... and keeps a smaller fraction
    assert pair["robustness_drop"]["p_paired"] == pytest.approx(stats.ttest_rel([0.10, 0.12], [0.20, 0.21]).pvalue)
    cfg = parse_config({"protocol": "tiny", "outdir": "x", "models": ["Conv2d", "DeformConv2d"], "seeds": [0, 1]}, CompareConfig, "test")
    md = render(cfg, rows, pairs, per_run, "")
    assert "| Conv2d | 11.0 ± " in md and "| DeformConv2d | 20.5 ± " in md
    assert "| Conv2d − DeformConv2d | -9.5 ± " in md
