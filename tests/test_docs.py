"""The README and docs/: every relative link resolves, and the README's answer is what the committed report says."""
import json
import re

import numpy as np
import pytest
from conftest import ROOT

from models.registry import BASE
from utils.experiments.stats import mean_ci

PAGES = [ROOT / "README.md", ROOT / "result" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = [line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert broken == []


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024


def test_the_readme_answer_is_the_committed_report():
    """Each model's row of the README's answer: seeds, mean ± std, CI, parameters and the as-trained mean ± std as
    result/full/comparison.json has them."""
    report = json.loads((ROOT / "result/full/comparison.json").read_text())
    readme = (ROOT / "README.md").read_text()
    names = {"Conv2d": "Conv2d", "DeformConv2d": "DeformConv2d (DCNv1)", "DeformConv2dv2": "DeformConv2dv2 (DCNv2)"}
    for row in report["models"]:
        if row["model"] not in names:
            continue
        line = next(line for line in readme.splitlines() if line.startswith(f"| {names[row['model']]} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == str(row["seeds"]), line  # seeds 3-4 arrive one model at a time
        assert cells[2] == f"**{row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f}**", line
        assert cells[3] == f"± {row['test_accuracy_ci95']:.4f}", line
        assert cells[4] == f"{row['parameters']:,}", line
        assert cells[5] == f"{row['test_accuracy_as_trained_mean']:.4f} ± {row['test_accuracy_as_trained_std']:.4f}", line


def markdown_table(header, page=ROOT / "README.md"):
    """{first cell: cells} of the table in `page` (by default the README) whose header row starts with `header`."""
    lines = page.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2:]:  # past the header and the |---| row
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def points(x):
    return f"{100 * x:+.1f}".replace("-", "−")


def fraction(x):
    return f"{x:+.3f}".replace("-", "−")


def paired(report, model, other, key=None, form=points):
    """model − other over their shared seeds as the README writes it: the difference and its 95 % CI, or the
    difference alone where they share one seed; `key`: a robustness measure instead of test accuracy."""
    pair = next(p for p in report["pairs"] if {p["a"], p["b"]} == {model, other})
    sign = 1 if pair["a"] == model else -1
    d, ci = (pair["paired_difference"], pair["paired_difference_ci95"]) if key is None else (pair[key]["difference"], pair[key]["ci95"])
    d *= sign
    return form(d) if pair["paired_seeds"] < 2 else f"{form(d)} ({form(d - ci)} to {form(d + ci)})"


def test_the_readme_controls_are_the_committed_report():
    """Each control's row of the README's "Is it the deformation?" table: seeds, mean test accuracy, and control −
    model in points with its paired 95 % CI, as the report has them."""
    report = json.loads((ROOT / "result/full/comparison.json").read_text())
    models = {row["model"]: row for row in report["models"]}
    rows = markdown_table("| control | what it changes |")
    controls = [name for name in models if name not in BASE]
    assert controls and set(rows) == set(controls), "a row for every control the report has, and no other"
    for control in controls:
        cells = rows[control]
        assert cells[2] == str(models[control]["seeds"]), cells
        assert cells[3] == f"{models[control]['test_accuracy_mean']:.4f}", cells
        assert cells[4:7] == [paired(report, control, m) for m in BASE], cells


def test_the_robustness_table_is_the_committed_report():
    """Each variant's row of docs/results.md's robustness table (the README links it): points lost and fraction kept
    (mean ± CI), and their paired differences to Conv2d, as the report has them."""
    report = json.loads((ROOT / "result/full/comparison.json").read_text())
    rows = markdown_table("| model | seeds | points lost |", ROOT / "docs" / "results.md")
    assert set(rows) == {row["model"] for row in report["models"]}
    for row in report["models"]:
        cells, lost, kept, one = rows[row["model"]], row["robustness"]["drop"], row["robustness"]["retained"], row["seeds"] < 2
        assert cells[1] == str(row["seeds"]), cells
        assert cells[2] == f"{100 * lost['mean']:.1f}" + ("" if one else f" ± {100 * lost['ci95']:.1f}"), cells
        assert cells[3] == f"{kept['mean']:.3f}" + ("" if one else f" ± {kept['ci95']:.3f}"), cells
        if row["model"] != "Conv2d":
            assert cells[4] == paired(report, row["model"], "Conv2d", "robustness_drop"), cells
            assert cells[5] == paired(report, row["model"], "Conv2d", "robustness_retained", fraction), cells


def named_seeds(cell):
    """The seeds a README row names: "0", "0, 1" or "0–2"."""
    if "–" in cell:
        first, last = cell.split("–")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in cell.split(",")]


def test_the_readme_residual_table_is_the_committed_report():
    """Each row of the README's residual table, over the seeds it names (a run that lands later leaves the row true,
    only behind): the test accuracy with precise BN and as trained (one seed: its value; more: mean ± std), − Conv2d
    in points paired by seed (more seeds: with the 95 % CI) for both, as result/resnet/comparison.json has them; and
    the median training epoch on the one machine the header names (every epoch the variant trained there, whatever
    the row's seeds: runs that resume on another CPU must not mix two machines' seconds) with its ratio to Conv2d's."""
    report = json.loads((ROOT / "result/resnet/comparison.json").read_text())
    runs = {(r["model"], r["seed"]): r for r in report["runs"]}
    rows = markdown_table("| model | seeds | test accuracy, precise BN |")
    machine = re.search(r"\| train s/epoch on the (.+?), median \(× Conv2d\) \|", (ROOT / "README.md").read_text()).group(1)
    by_host = {m["model"]: next(v["median"] for host, v in m["train_seconds_by_host"].items() if host.startswith(machine))
               for m in report["models"]}  # a StopIteration: a variant never trained on that machine
    names = {"Conv2d": "Conv2d", "DeformConv2d": "DeformConv2d (DCNv1)", "DeformConv2dv2": "DeformConv2dv2 (DCNv2)",
             "DeformConv2dv2-mask-only": "DeformConv2dv2-mask-only"}
    assert "Conv2d" in rows and set(rows) <= set(names.values()), rows

    def accuracy(values):
        return f"{np.mean(values):.4f}" + (f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else "")

    def difference(a, b):
        mean, ci = mean_ci(np.array(a) - np.array(b))
        return points(mean) + ("" if len(a) < 2 else f" ({points(mean - ci)} to {points(mean + ci)})")

    for model, name in names.items():
        if name not in rows:
            continue
        cells, seeds = rows[name], named_seeds(rows[name][1])
        mine = [runs[(model, s)] for s in seeds]
        base = [runs[("Conv2d", s)] for s in seeds]  # a KeyError: the README names a seed the report lacks
        precise, trained = [r["test_accuracy"] for r in mine], [r["test_accuracy_as_trained"] for r in mine]
        assert cells[2:4] == [accuracy(precise), accuracy(trained)], cells
        seconds = by_host[model]
        if model == "Conv2d":
            assert cells[4:6] == ["—", f"{seconds:.0f}"], cells
            continue
        expected = (f"{difference(precise, [r['test_accuracy'] for r in base])} / "
                    f"{difference(trained, [r['test_accuracy_as_trained'] for r in base])}")
        assert cells[4:6] == [expected, f"{seconds:.0f} ({seconds / by_host['Conv2d']:.2f}x)"], cells


def test_the_batchnorm_check_table_is_the_committed_files():
    """docs/results.md's check of the residual runs: as trained and the report's precise figure from each run's own
    metrics.json, the crop-flip one from the check's metrics.json, which says it was estimated over crops."""
    rows = markdown_table("| run | as trained | precise BN, un-augmented", ROOT / "docs" / "results.md")
    assert len(rows) >= 5
    for run, cells in rows.items():
        model, seed = run.split(" seed ")
        tested = json.loads((ROOT / f"result/resnet/{model}/seed_{seed}/test/metrics.json").read_text())
        check = json.loads((ROOT / f"result/resnet-precise-bn-check/{model}/seed_{seed}/test/metrics.json").read_text())
        assert "augmentation" not in tested["precise_bn"] and check["precise_bn"]["augmentation"] == "crop-flip"
        assert check["as_trained"]["correct"] == tested["as_trained"]["correct"]  # the same weights, the same test
        expected = [f"{tested['as_trained']['accuracy']:.4f}", f"{tested['precise_bn']['accuracy']:.4f}", f"{check['precise_bn']['accuracy']:.4f}"]
        assert cells[1:] == expected, cells
