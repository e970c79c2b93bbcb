"""The verdicts of the results pages: per-seed paired differences and their 95% t interval."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("study_common", Path(__file__).resolve().parents[1] / "scripts/common.py")
common = importlib.util.module_from_spec(spec)
sys.modules["study_common"] = common  # dataclasses look their module up there
spec.loader.exec_module(common)


def test_paired_difference_uses_students_t_with_n_minus_one_degrees_of_freedom():
    noisy = common.PairedDifference((0.01, 0.02, 0.03))
    # mean 0.02, sd 0.01, half-width t(0.975, 2) * sd / sqrt(3) = 4.303 * 0.01 / 1.732
    assert noisy.mean == pytest.approx(0.02) and noisy.spread == pytest.approx(0.01)
    assert noisy.half_width == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-4)
    assert noisy.verdict == "within the noise"
    assert common.PairedDifference((0.010, 0.011, 0.009)).verdict == "above"
    assert common.PairedDifference((-0.010, -0.011, -0.009)).verdict == "below"
    # Five seeds: t(0.975, 4) = 2.776.
    five = common.PairedDifference((0.0, 0.01, 0.02, 0.03, 0.04))
    assert five.half_width == pytest.approx(2.776 * five.spread / math.sqrt(5), rel=1e-4)
    assert common.PairedDifference((0.05,)).verdict == "within the noise"  # one seed says nothing
