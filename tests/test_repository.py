"""The repository's own rules: lint-clean, the layout the README describes, `pytest` from the root."""
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

SOURCES = [p for p in ROOT.rglob("*.py") if ".git" not in p.parts and "result" not in p.parts]


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -r requirements.txt installs it)")
    proc = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_variants_are_never_checked_by_number():
    """Variants are named: integers appear only where old configs and checkpoints are read."""
    allowed = {"models/registry.py", "utils/plumbing/config.py", "utils/engine/checkpoint.py"}
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES
                 if "model_type ==" in p.read_text() or "model_type in" in p.read_text()]
    assert [p for p in offenders if p not in allowed and not p.startswith("tests/")] == []


@pytest.mark.slow
def test_plain_pytest_from_the_root_collects_only_the_test_suite():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    files = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    assert files and all(f.startswith("tests/") for f in files), sorted(files)


def test_no_shipped_config_names_a_data_folder():
    """Every config works where the user is: CIFAR-10 goes to the default folder, or $CIFAR10_DIR points at a copy."""
    named = [p.name for p in (ROOT / "config").glob("*.json") if "data_dir" in p.read_text() or "../shared" in p.read_text()]
    assert named == []
