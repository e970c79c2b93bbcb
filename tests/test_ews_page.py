"""scripts/ews.py's mechanism check: it loads a finished EWS run's trained controller and tests its
subnets against random ones, and the page states the seeds' paired difference with its verdict."""

from pathlib import Path

import pytest
import torch

from robustrain.config import from_dict
from robustrain.train import RunConfig, train


@pytest.fixture
def ews_script(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import ews

    return ews


def study_with_checks(found: list[float], drawn: list[float]) -> dict:
    """The EWS arm's records as the study's JSON holds them, one subnet per side and seed."""
    return {"arms": {"ews": {str(seed): {"subnet_check": {"images": 512, "full_acc": 0.9, "controller_subnet_acc": [f],
                                                          "random_subnet_acc": [d]}}
                             for seed, (f, d) in enumerate(zip(found, drawn))}}}


def test_the_page_states_whether_the_controllers_subnets_are_weaker_than_random_ones(ews_script):
    # differences -0.10, -0.09, -0.11: mean -10 points, sd 1 point, 95% half-width 4.303 / sqrt(3) = 2.48 points
    [*_, weaker] = ews_script.mechanism(study_with_checks([0.50, 0.52, 0.48], [0.60, 0.61, 0.59]))
    assert ews_script.mechanism(study_with_checks([0.5], [0.6]))[:3] == ["", "## Does the search act?", ""]
    assert "reach 50.00 ± 2.00% against 60.00 ± 1.00% for 16 uniformly random" in weaker
    assert "full network 90.00 ± 0.00% (mean ± sd over 3 seeds)" in weaker
    assert weaker.endswith("Controller − random: -10.00 ± 2.48 points (below); the controller's subnets are weaker "
                           "than random ones beyond the noise: the search acts.")
    [*_, unsure] = ews_script.mechanism(study_with_checks([0.50, 0.62], [0.60, 0.61]))
    assert "(within the noise); the controller's subnets are not weaker than random ones beyond the noise: the " \
           "search is not shown to act. Provisional: 2 of 3 seeds." in unsure
    [*_, one] = ews_script.mechanism(study_with_checks([0.50], [0.60]))
    assert one.endswith("(mean ± sd over 1 seed). One seed so far: no interval yet.")
    assert ews_script.mechanism({"arms": {"augmix": {}}}) == []


def test_the_check_of_a_finished_run_tests_its_trained_controller(ews_script, tmp_path, monkeypatch):
    from robustrain.methods import ews as ews_method
    from robustrain.train.checkpoint import load_latest
    from robustrain.train.load import load_run

    config = {"data": {"name": "digits", "augment": "none", "train_limit": 128}, "model": {"name": "resnet20"},
              "method": {"name": "ews", "base": {"name": "standard"}, "controller_interval": 1, "controller_lr": 0.1},
              "eval": {"pgd_steps": 1, "pgd_limit": 20}, "epochs": 1, "batch_size": 32, "device": "cpu",
              "out": str(tmp_path / "run")}
    train(from_dict(RunConfig, config), progress=False)
    checked, check_subnets = [], ews_method.check_subnets
    monkeypatch.setattr(ews_method, "check_subnets", lambda model, method, *args: checked.append(method) or
                        check_subnets(model, method, *args))
    check = ews_script.subnet_check(str(tmp_path / "run"))
    saved = {k.removeprefix("method/controller."): v for k, v in load_latest(tmp_path / "run")[0].items()
             if k.startswith("method/controller.")}
    assert saved and all(torch.equal(v, checked[0].controller.state_dict()[k]) for k, v in saved.items())
    trained = load_run(tmp_path / "run")
    rows = torch.randperm(len(trained.test_set.labels), generator=torch.Generator().manual_seed(0))[:512]
    images = trained.test_set.images[rows].float() / 255
    with torch.no_grad():  # the full network with the statistics of batches of 128, as the reward measures it
        full = torch.cat([trained.model.train()(images[i:i + 128]).argmax(1) for i in range(0, len(rows), 128)])
    assert check["images"] == len(rows)
    assert check["full_acc"] == int((full == trained.test_set.labels[rows]).sum()) / len(rows)
    assert len(check["controller_subnet_acc"]) == len(check["random_subnet_acc"]) == 16
