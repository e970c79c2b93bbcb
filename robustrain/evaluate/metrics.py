"""Corruption metrics (Hendrycks & Dietterich, ICLR 2019; the AugMix/EWS conventions for CIFAR).

errors: {corruption: [error at severity 1, ..., 5]}, errors as fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..corruptions import BENCHMARK
from ..errors import ConfigError

# AlexNet's top-1 error on each ImageNet-C corruption, averaged over the five severities: the
# normalizers of mCE, as embedded in the AugMix and EWS ImageNet scripts.
ALEXNET_ERRORS = dict(zip(BENCHMARK, (
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572, 0.819324,
    0.564592, 0.853204, 0.646056, 0.717840, 0.606500)))


def _require(errors: Mapping[str, Sequence[float]], names: Sequence[str]) -> None:
    missing = [n for n in names if n not in errors]
    if missing:
        raise ConfigError(f"corruption errors are missing for {', '.join(missing)}")


def mean_corruption_error(errors: Mapping[str, Sequence[float]], names: Sequence[str] = BENCHMARK) -> float:
    """CIFAR convention: the unnormalized mean error over the corruptions x severities (EWS's "mE")."""
    _require(errors, names)
    values = [e for n in names for e in errors[n]]
    return sum(values) / len(values)


def mce(errors: Mapping[str, Sequence[float]], reference: Mapping[str, float] = ALEXNET_ERRORS) -> float:
    """ImageNet convention: mean over the 15 corruptions of (mean error over severities) / AlexNet's."""
    names = list(reference)
    _require(errors, names)
    return sum(sum(errors[n]) / len(errors[n]) / reference[n] for n in names) / len(names)


def relative_mce(errors: Mapping[str, Sequence[float]], clean_error: float, reference: Mapping[str, float],
                 reference_clean_error: float) -> float:
    """Mean over corruptions of (E_c - E_clean) / (E^ref_c - E^ref_clean), E_c averaged over severities:
    how much accuracy a model loses under corruption, relative to the reference model's loss."""
    names = list(reference)
    _require(errors, names)
    return sum((sum(errors[n]) / len(errors[n]) - clean_error) / (reference[n] - reference_clean_error)
               for n in names) / len(names)
