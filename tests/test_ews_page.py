"""scripts/ews.py's mechanism section: the seeds' paired difference between the controller's subnets
and random ones (robustrain.methods.ews.check_run, tests/test_ews.py), with its band and verdict."""

from pathlib import Path

import pytest


@pytest.fixture
def ews_script(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import ews

    return ews


def study_with_checks(found: list[float], drawn: list[float]) -> dict:
    """The EWS arm's records as the study's JSON holds them: per seed, two subnets per side whose mean
    accuracies are `found` and `drawn`."""
    return {"arms": {"ews": {str(seed): {"subnet_check": {"images": 500, "full_acc": 0.9,
                                                          "controller_subnet_acc": [f - 0.01, f + 0.01],
                                                          "random_subnet_acc": [d + 0.02, d - 0.02]}}
                             for seed, (f, d) in enumerate(zip(found, drawn))}}}


def test_the_page_states_whether_the_controllers_subnets_are_weaker_than_random_ones(ews_script):
    # differences -0.10, -0.09, -0.11: mean -10 points, sd 1 point, 95% half-width 4.303 / sqrt(3) = 2.48 points
    [*_, weaker] = ews_script.mechanism(study_with_checks([0.50, 0.52, 0.48], [0.60, 0.61, 0.59]))
    assert ews_script.mechanism(study_with_checks([0.5], [0.6]))[:3] == ["", "## Does the search act?", ""]
    assert "on a fixed 500 test images" in weaker
    assert "2 subnets sampled from each EWS run's controller reach 50.00 ± 2.00% against 60.00 ± 1.00% for 2 " \
           "uniformly random" in weaker
    assert "full network 90.00 ± 0.00% (mean ± sd over 3 seeds)" in weaker
    assert weaker.endswith("Controller − random: -10.00 ± 2.48 points (below); the controller's subnets are weaker "
                           "than random ones beyond the noise: the search acts.")
    [*_, unsure] = ews_script.mechanism(study_with_checks([0.50, 0.62], [0.60, 0.61]))
    assert "(within the noise); the controller's subnets are not weaker than random ones beyond the noise: the " \
           "search is not shown to act. Provisional: 2 of 3 seeds." in unsure
    [*_, one] = ews_script.mechanism(study_with_checks([0.50], [0.60]))
    assert one.endswith("(mean ± sd over 1 seed). One seed so far: no interval yet.")
    assert ews_script.mechanism({"arms": {"augmix": {}}}) == []


def test_the_page_says_how_many_threads_the_runs_that_did_not_record_them_had(ews_script):
    def study(**threads):
        return {"arms": {"ews": {str(seed): {"run": f"runs/ews/ews-s{seed}", **extra}
                                 for seed, extra in enumerate(threads.values())}}}

    assert ews_script.unrecorded_threads(study(s0={"threads": [1]}, s1={"threads": [2]})) == ""
    assert ews_script.unrecorded_threads(study(s0={"threads": [1]}, s1={})) == (
        " The runs that did not record their threads had one thread, on one core, each.")
    # the first seed's first process had two threads and did not say so; a later one said it had one
    assert ews_script.unrecorded_threads(study(s0={"threads": [None, 1]})) == (
        " The runs that did not record their threads had one thread, on one core, each, except the first seed of "
        "EWS + AugMix (its first 2 of 10 epochs, at the end of a session), which had two.")
