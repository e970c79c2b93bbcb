"""The examples run as their docstrings say."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pgd_at_example_trains_and_evaluates_on_digits():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "pgd_at.py"), "--data", "digits", "--epochs",
                             "2", "--eps", "0.1"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    found = re.search(r"clean ([\d.]+)%, PGD-20 ([\d.]+)%", result.stdout)
    assert found, result.stdout
    clean, robust = map(float, found.groups())
    assert clean > 30 and 0 < robust < clean  # it learned, and the attack bites
