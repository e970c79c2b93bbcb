"""scripts/ews.py's page: its mechanism section (the seeds' paired difference between the controller's
subnets and random ones, robustrain.methods.ews.check_run, tests/test_ews.py; the distillation's KL
during training against the random-subnet control's), with bands and verdicts, the verdict on the
paper's claim, and what it says of the threads of runs that did not record them."""

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


def test_the_page_compares_the_distillations_kl_during_training_with_the_random_subnet_controls(ews_script):
    def arm(means: list[float]) -> dict:
        # two epochs per run, whose mean is the seed's value
        return {str(seed): {"subnet_kl_per_epoch": [m - 0.01, m + 0.01]} for seed, m in enumerate(means)}

    # differences +0.02, +0.03, +0.01: mean +0.02, sd 0.01, 95% half-width 4.303 * 0.01 / sqrt(3) = 0.0248
    farther = ews_script.during_training({"arms": {"ews": arm([0.12, 0.13, 0.11]),
                                                   "random-subnets": arm([0.10, 0.10, 0.10])}})
    assert "is 0.1200 ± 0.0100 for EWS + AugMix against 0.1000 ± 0.0000 for the same distillation into random " \
           "subnets (mean ± sd over 3 seeds, paired by seed)" in farther
    assert farther.endswith("EWS − random: +0.0200 ± 0.0248 (within the noise); EWS's subnets are not farther from "
                            "the full network than random ones beyond the noise: the search is not shown to act "
                            "during training.")
    clearly = ews_script.during_training({"arms": {"ews": arm([0.15, 0.16]), "random-subnets": arm([0.10, 0.11])}})
    assert clearly.endswith("EWS − random: +0.0500 ± 0.0000 (above); EWS distils into subnets farther from the full "
                            "network than random ones beyond the noise: the search acts during training. "
                            "Provisional: 2 of 3 seeds.")
    # only seeds that both arms have are paired; none yet: nothing to say
    assert "over 1 seed" in ews_script.during_training({"arms": {"ews": arm([0.12, 0.13]),
                                                                 "random-subnets": arm([0.10])}})
    assert ews_script.during_training({"arms": {"ews": arm([0.12])}}) == ""
    checked = study_with_checks([0.5, 0.5], [0.6, 0.6])["arms"]["ews"]
    ews = {seed: {**checked[seed], **kl} for seed, kl in arm([0.12, 0.13]).items()}
    both = ews_script.mechanism({"arms": {"ews": ews, "random-subnets": arm([0.10, 0.10])}})
    assert both[:3] == ["", "## Does the search act?", ""] and both[-1].startswith("The two readings hold")


def test_the_verdict_judges_the_claim_on_the_three_comparisons_that_decide_it(ews_script):
    def study(seeds: list[int], **errors: tuple[float, float, str]) -> dict:
        planned = {arm: {"seeds": [0, 1, 2]} for arm in ("ews", "augmix", "augmix-equal-cost", "random-subnets")}
        return {"settings": {"arms": planned},
                "comparisons": {f"ews - {baseline.replace('_', '-')}": {
                    "seeds": seeds, "corruption_error": {"mean": mean, "ci95_half_width": band, "verdict": verdict}}
                    for baseline, (mean, band, verdict) in errors.items()}}

    [_, heading, _, claim, _, checked] = ews_script.verdict(study(
        [0, 1, 2], augmix=(-0.02, 0.01, "below"), augmix_equal_cost=(0.01, 0.02, "within the noise"),
        random_subnets=(0.001, 0.005, "within the noise")))
    assert heading == "## Verdict"
    assert claim == ("The paper's claim, that EWS lowers AugMix's corruption error, holds at this scale: EWS + "
                     "AugMix's corruption error is -2.00 ± 1.00 points (below) against AugMix for the same epochs (the "
                     "paper's comparison), +1.00 ± 2.00 points (within the noise) against AugMix given EWS + AugMix's "
                     "passes, and +0.10 ± 0.50 points (within the noise) against the same distillation into random "
                     "subnets: the controller's choice of subnets makes no difference beyond the noise.")
    assert "`tests/test_ews.py`" in checked
    [*_, claim, _, _] = ews_script.verdict(study(
        [0, 1], augmix=(0.003, 0.01, "within the noise"), augmix_equal_cost=(0.03, 0.01, "above"),
        random_subnets=(-0.02, 0.01, "below")))
    assert claim.startswith("The paper's claim, that EWS lowers AugMix's corruption error, does not hold at this scale")
    assert claim.endswith("random subnets: choosing the subnets lowers the error beyond what the distillation does "
                          "alone. Provisional: 2 of 3 seeds.")
    assert ews_script.verdict(study([0, 1, 2], augmix=(-0.02, 0.01, "below"),
                                    augmix_equal_cost=(0.01, 0.02, "within the noise"))) == []


def test_the_page_says_how_narrow_the_controllers_choice_is(ews_script):
    study = study_with_checks([0.50, 0.52, 0.48], [0.60, 0.61, 0.59])
    assert "keep" not in ews_script.at_the_end(study)  # records from before the check measured it
    # differences +0.10, +0.09, +0.11: mean +10 points, 95% half-width 4.303 * 1 / sqrt(3) = 2.48 points
    for check, (found, drawn) in zip(study["arms"]["ews"].values(), [(0.82, 0.72), (0.80, 0.71), (0.82, 0.71)]):
        check["subnet_check"].update(controller_shared=found, random_shared=drawn)
    assert ews_script.at_the_end(study).endswith(
        " Two of those subnets from one controller keep 81.33 ± 1.15% of the same channels, two random ones 71.33 "
        "± 0.58%; controller − random: +10.00 ± 2.48 points (above): the controller has narrowed its choice beyond "
        "the noise, so its run's distillation trained on a narrower set of subnets than the random-subnet control's.")
    del study["arms"]["ews"]["1"], study["arms"]["ews"]["2"]
    assert ews_script.at_the_end(study).endswith("keep 82.00% of the same channels, two random ones 72.00%.")
