"""The README and docs/: every relative link resolves, and the README's answer is what the committed report says."""
import json
import re

import pytest
from conftest import ROOT

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
