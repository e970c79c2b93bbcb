"""scripts/oat.py: its verdict on OAT against the dedicated models names each λ and metric where OAT is
below (and above) beyond the noise, and says the claim holds only where it is nowhere below."""

from pathlib import Path

import pytest


@pytest.fixture
def oat(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import oat

    return oat


def comparisons(verdicts: dict[str, tuple[str, str]]) -> dict:
    """{key: (clean verdict, PGD-20 verdict)} as a study's JSON holds them (only the verdicts read)."""
    return {key: {"clean_acc": {"verdict": clean}, "pgd_acc": {"verdict": pgd}}
            for key, (clean, pgd) in verdicts.items()}


def test_the_verdict_names_where_oat_is_below_and_above_its_dedicated_models(oat):
    keys = ["a@lambda=0 - standard", "a@lambda=1 - pgd-at"]
    traded = comparisons({keys[0]: ("within the noise", "within the noise"), keys[1]: ("above", "below")})
    assert oat.against_dedicated(traded, keys) == (
        "Below them beyond the noise in PGD-20 acc at λ = 1 (above in clean acc at λ = 1): the claim (at least as "
        "good at every λ) does not hold here.")
    worse = comparisons({keys[0]: ("below", "within the noise"), keys[1]: ("within the noise", "below")})
    assert oat.against_dedicated(worse, keys) == (
        "Below them beyond the noise in clean acc at λ = 0, PGD-20 acc at λ = 1: the claim (at least as good at "
        "every λ) does not hold here.")
    matched = comparisons({keys[0]: ("within the noise", "above"), keys[1]: ("within the noise", "within the noise")})
    assert oat.against_dedicated(matched, keys).startswith("Nowhere below them beyond the noise")
