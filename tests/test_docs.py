"""The README and docs/: every relative link resolves, and the README's answer is what the committed report says."""
import json
import re

import pytest
from conftest import ROOT

from models.registry import BASE

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
    """Each model's row of the README's answer: mean ± std, CI, parameters and the as-trained mean ± std as
    result/full/comparison.json has them."""
    report = json.loads((ROOT / "result/full/comparison.json").read_text())
    readme = (ROOT / "README.md").read_text()
    names = {"Conv2d": "Conv2d", "DeformConv2d": "DeformConv2d (DCNv1)", "DeformConv2dv2": "DeformConv2dv2 (DCNv2)"}
    for row in report["models"]:
        if row["model"] not in names:
            continue
        line = next(line for line in readme.splitlines() if line.startswith(f"| {names[row['model']]} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"**{row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f}**", line
        assert cells[2] == f"± {row['test_accuracy_ci95']:.4f}", line
        assert cells[3] == f"{row['parameters']:,}", line
        assert cells[4] == f"{row['test_accuracy_as_trained_mean']:.4f} ± {row['test_accuracy_as_trained_std']:.4f}", line


def test_the_readme_controls_are_the_committed_report():
    """Each control's row of the README's "Is it the deformation?" table: seeds, mean test accuracy, and control −
    model in points with its paired 95 % CI (the difference alone where they share one seed), as the report has them."""
    report = json.loads((ROOT / "result/full/comparison.json").read_text())
    readme = (ROOT / "README.md").read_text()
    models = {row["model"]: row for row in report["models"]}

    def points(x):
        return f"{100 * x:+.1f}".replace("-", "−")

    def control_minus(model, control):
        pair = next(p for p in report["pairs"] if {p["a"], p["b"]} == {model, control})
        sign = 1 if pair["a"] == control else -1
        d, ci = sign * pair["paired_difference"], pair["paired_difference_ci95"]
        return points(d) if pair["paired_seeds"] < 2 else f"{points(d)} ({points(d - ci)} to {points(d + ci)})"

    controls = [name for name in models if name not in BASE]
    assert controls, "the report has no control yet"
    for control in controls:
        line = next(line for line in readme.splitlines() if line.startswith(f"| {control} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == str(models[control]["seeds"]), line
        assert cells[3] == f"{models[control]['test_accuracy_mean']:.4f}", line
        assert cells[4:7] == [control_minus(m, control) for m in BASE], line
