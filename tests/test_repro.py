"""`robustrain repro`: the experiment list, the tiny mode end to end through the CLI, resuming
and accumulating entries, the budget, and verdicts against their thresholds."""

import json
import math

import pytest

from robustrain.cli import main
from robustrain.repro import REPRODUCTIONS, Claim, Experiment, StudyExperiment, Target, binomial_band, render, verdict

from .test_gpu_bench import image_folder

ENTRY_KEYS = {"name", "device", "torch", "commit", "settings", "metrics", "target", "verdict", "wall_s"}


def test_the_list_names_every_experiment_with_its_targets_and_cost(capsys):
    assert main(["repro", "--list"]) == 0
    listed = capsys.readouterr().out
    for experiment in REPRODUCTIONS.values():
        assert f"{experiment.name}: {experiment.summary}" in listed
    assert "clean_acc >= 83%" in listed and "on an H100" in listed and "on a 2-core CPU" in listed
    assert "arm aft: AFT, slow start fast decay, 1 epoch: configs/cpu/aft_ssfd_cifar10.yaml" in listed
    assert "(starts from pretrain)" in listed and "aft - pgd-at: pgd_acc not below" in listed
    assert "mechanism: ews: accuracy of 16 subnets its controller samples" in listed


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repro")
    data = image_folder(folder / "cifar10", {"train": 30, "test": 4})
    argv = ["repro", "--tiny", "--data-root", str(data), "--runs-dir", str(folder / "runs"),
            "--results", str(folder / "results"), "--device", "cpu", "--no-progress", "--jobs", "2"]
    assert main(argv) == 0
    return folder, argv


@pytest.mark.slow  # the tiny mode of every experiment: minutes
def test_the_tiny_mode_runs_every_experiment_and_writes_its_entry(tiny_results):
    folder, _ = tiny_results
    entries = json.loads((folder / "results" / "reproductions.json").read_text())
    assert [e["name"] for e in entries] == list(REPRODUCTIONS)
    for entry in entries:
        assert set(entry) == ENTRY_KEYS
        assert entry["verdict"] == "not comparable" and entry["device"] == "CPU"
        if isinstance(REPRODUCTIONS.get(entry["name"]), StudyExperiment):
            continue
        assert {"clean_acc", "pgd", "autoattack"} <= set(entry["metrics"])
        assert all(0 <= entry["metrics"][m]["acc"] <= 1 for m in ("clean_acc", "pgd", "autoattack"))
        assert entry["metrics"]["clean_acc"]["images"] == 40
    page = (folder / "results" / "reproductions.md").read_text()
    assert all(name in page for name in REPRODUCTIONS)


@pytest.mark.slow  # the tiny mode of every experiment: minutes
def test_a_second_call_reuses_finished_runs_and_keeps_other_entries(tiny_results, capsys):
    folder, argv = tiny_results
    first = {e["name"]: e for e in json.loads((folder / "results" / "reproductions.json").read_text())}
    metrics = folder / "runs" / "tiny" / "fast_at_cifar10_cpu" / "metrics.jsonl"
    trained = metrics.stat().st_mtime_ns
    assert main([*argv[:1], "fast_at_cifar10_cpu", *argv[1:]]) == 0
    again = {e["name"]: e for e in json.loads((folder / "results" / "reproductions.json").read_text())}
    assert metrics.stat().st_mtime_ns == trained  # not trained again
    assert again["fast_at_cifar10_cpu"]["metrics"] == first["fast_at_cifar10_cpu"]["metrics"]
    assert again["fast_at_cifar10"] == first["fast_at_cifar10"]  # not re-run: kept as it was
    made = json.loads((folder / "runs" / "tiny" / "fast_at_cifar10_cpu.made.json").read_text())
    assert again["fast_at_cifar10_cpu"]["commit"] == made["commit"] == first["fast_at_cifar10_cpu"]["commit"]
    # training (the call that finished it) plus AutoAttack (the call that ran it), not this call's time
    expected_wall = made["train_s"] + first["fast_at_cifar10_cpu"]["metrics"]["autoattack"]["seconds"]
    assert again["fast_at_cifar10_cpu"]["wall_s"] == first["fast_at_cifar10_cpu"]["wall_s"] == expected_wall


def test_experiments_beyond_the_budget_are_skipped(tmp_path, capsys):
    assert main(["repro", "--tiny", "--budget", "1", "--results", str(tmp_path), "--device", "cpu"]) == 0
    assert "skipped fast_at_cifar10" in capsys.readouterr().out
    assert not (tmp_path / "reproductions.json").exists()
    assert main(["repro", "--budget", "0", "--results", str(tmp_path), "--device", "cpu"]) == 2
    assert "--budget must be a positive number of seconds, got 0.0" in capsys.readouterr().err


def test_a_verdict_is_met_only_when_every_target_is_reached():
    experiment = Experiment("x", "x", "config.yaml", targets=(Target("clean_acc", 0.83, "paper", "clean"),
                                                              Target("pgd", 0.45, "paper", "PGD-50")))
    reached = {"clean_acc": {"acc": 0.84, "images": 10_000}, "pgd": {"acc": 0.46, "images": 10_000}}
    assert verdict(experiment, reached, tiny=False)[0] == "met"
    short = {**reached, "pgd": {"acc": 0.44, "images": 10_000}}
    outcome, judged = verdict(experiment, short, tiny=False)
    assert outcome == "missed" and [t["met"] for t in judged] == [True, False]
    assert verdict(experiment, reached, tiny=True)[0] == "not comparable"
    assert binomial_band(0.5, 10_000) == pytest.approx(1.96 * 0.005)
    assert math.isclose(judged[1]["band_95"], 1.96 * math.sqrt(0.44 * 0.56 / 10_000))


def test_the_page_says_what_was_checked_for_a_missed_target_only():
    def entry(verdict_of: str) -> dict:
        return {"name": "fast_at_cifar10", "device": "GPU", "commit": "abc1234", "wall_s": 1.0, "verdict": verdict_of,
                "settings": {}, "metrics": {"clean_acc": {"acc": 0.77, "protocol": "all test images"}},
                "target": [{"metric": "clean_acc", "protocol": "clean", "measured": 0.77, "band_95": 0.01,
                            "at_least": 0.83, "source": "paper", "met": verdict_of == "met"}]}
    checked = REPRODUCTIONS.get("fast_at_cifar10").checked
    assert checked and checked in render([entry("missed")])
    assert checked not in render([entry("met")]) and "what was checked" not in render([entry("met")])


def test_render_rewrites_the_page_from_the_entries_without_running(tmp_path):
    entry = {"name": "fast_at_cifar10", "device": "GPU", "torch": "2.x", "commit": "abc1234", "wall_s": 1.0,
             "verdict": "missed", "settings": {}, "metrics": {"clean_acc": {"acc": 0.77, "protocol": "all"}},
             "target": [{"metric": "clean_acc", "protocol": "clean", "measured": 0.77, "band_95": 0.01,
                         "at_least": 0.83, "source": "paper", "met": False}]}
    (tmp_path / "reproductions.json").write_text(json.dumps([entry]))
    main(["repro", "--render", "--results", str(tmp_path)])
    assert REPRODUCTIONS.get("fast_at_cifar10").checked in (tmp_path / "reproductions.md").read_text()
    assert json.loads((tmp_path / "reproductions.json").read_text()) == [entry]
    assert "- pgd_at_cifar10_fastat_benchmark: PGD-AT" in (tmp_path / "reproductions.md").read_text()  # not run


@pytest.mark.slow  # the tiny mode of every experiment: minutes
def test_a_method_against_baseline_experiment_trains_its_arms_in_order_and_judges_each_claim(tiny_results):
    folder, _ = tiny_results
    entries = {e["name"]: e for e in json.loads((folder / "results" / "reproductions.json").read_text())}
    entry = entries["aft_vs_pgd_at"]
    runs = folder / "runs" / "tiny" / "aft_vs_pgd_at-tiny"
    # the fine-tuning run of each seed starts from the standard run of the same seed
    for seed in (0, 1):
        config = (runs / f"aft-s{seed}" / "config.yaml").read_text()
        assert str(runs / f"pretrain-s{seed}") in config
    assert set(entry["metrics"]) == {"pretrain", "aft", "pgd-at"}
    recorded = json.loads((runs / "aft-s0" / "provenance.jsonl").read_text().splitlines()[0])
    assert entry["commit"] == recorded["commit"]  # the code that trained the runs
    for arm in entry["metrics"].values():
        assert set(arm["clean_acc"]["per_seed"]) == {"0", "1"}
    assert [(t.get("comparison"), t.get("metric")) for t in entry["target"]] == [("aft - pgd-at", "pgd_acc"),
                                                                                 ("aft - pgd-at", "clean_acc"),
                                                                                 (None, None)]
    # the mechanisms, measured in the runs: fine-tuning's PGD-20 against its start's, OAT's two λ
    assert entry["target"][2]["mechanism"].startswith("aft: PGD-20 accuracy after the fine-tuning")
    oat = [(t["mechanism"].split(" at λ")[0], t["seeds"]) for t in entries["oat_vs_dedicated"]["target"]
           if "mechanism" in t]
    assert oat == [("oat: clean accuracy", 2), ("oat: PGD-20 accuracy", 2)]
    [merging] = [t for t in entries["auxiliary_vs_standard"]["target"] if "mechanism" in t]
    assert merging["mechanism"].startswith("auxiliary: the heads' mean distance") and merging["seeds"] == 2
    pgd = entry["metrics"]["aft"]["pgd_acc"]["per_seed"], entry["metrics"]["pgd-at"]["pgd_acc"]["per_seed"]
    assert entry["target"][0]["measured"] == pytest.approx((pgd[0]["0"] - pgd[1]["0"] + pgd[0]["1"] - pgd[1]["1"]) / 2)
    assert {"oat@lambda=0", "oat@lambda=1", "standard", "pgd-at"} == set(entries["oat_vs_dedicated"]["metrics"])
    # a study with an evaluation suite: corruption error measured for every arm
    assert all(0 <= arm["corruption_error"]["mean"] <= 1 for arm in entries["ews_vs_augmix"]["metrics"].values())
    # EWS's mechanism, measured in the trained runs: their controllers' subnets against random ones
    [mechanism] = [t for t in entries["ews_vs_augmix"]["target"] if "mechanism" in t]
    assert mechanism["mechanism"].startswith("ews: accuracy of 16 subnets") and mechanism["seeds"] == 2
    assert -1 <= mechanism["measured"] <= 1 and mechanism["verdict"] in ("above", "below", "within the noise")


@pytest.mark.parametrize(("expected", "verdicts_met"), [
    ("above", {"above"}), ("below", {"below"}), ("not below", {"above", "within the noise"}),
    ("not above", {"below", "within the noise"})])
def test_a_claim_is_met_by_the_verdicts_its_expectation_allows(expected, verdicts_met):
    claim = Claim(("a", "b"), "pgd_acc", expected, "paper")
    assert {v for v in ("above", "below", "within the noise") if claim.met(v)} == verdicts_met


@pytest.mark.parametrize(("comparison", "metric"), [(("aft", "pretrain"), "pgd_acc"), (("pgd-at", "aft"), "pgd_acc"),
                                                    (("aft", "pgd-at"), "corruption_error")])
def test_a_claim_on_a_comparison_or_metric_the_study_does_not_make_is_refused(comparison, metric):
    """Such a claim would never be judged, and its experiment would read "missed" with nothing to say why."""
    study = REPRODUCTIONS.get("aft_vs_pgd_at").study
    StudyExperiment("s", study, (Claim(("aft", "pgd-at"), "pgd_acc", "not below", "paper"),))
    with pytest.raises(ValueError, match=f"the claim on {comparison[0]} - {comparison[1]} \\({metric}\\) is not one"):
        StudyExperiment("s", study, (Claim(comparison, metric, "not below", "paper"),))


def test_a_method_against_baseline_verdict_is_met_only_when_every_claim_is(monkeypatch, tmp_path):
    import dataclasses

    from robustrain.repro import run_study_experiment

    experiment = dataclasses.replace(REPRODUCTIONS.get("aft_vs_pgd_at"), mechanisms=())  # claims alone

    def measured(pgd_differences, clean_differences):
        def run(self, train, tiny, record, runs, extra, jobs):
            comparison = {"seeds": [0, 1, 2]}
            for metric, differences in (("pgd_acc", pgd_differences), ("clean_acc", clean_differences)):
                comparison[metric] = {"mean": sum(differences) / 3, "ci95_half_width": 0.01,
                                      "verdict": "below" if max(differences) < -0.01 else "within the noise"}
            arms = {arm: {seed: {"trained_at": [], "budget_passes": 22.0, "clean_acc": 0.5, "pgd_acc": 0.3}
                          for seed in (0, 1, 2)} for arm in ("aft", "pgd-at")}
            return {"settings": {}, "arms": arms, "comparisons": {"aft - pgd-at": comparison}}
        monkeypatch.setattr(type(experiment.study), "run", run)
        return run_study_experiment(experiment, tmp_path, "cpu", None, tiny=False, jobs=1)

    assert measured((0.0, 0.01, -0.01), (0.0, 0.0, 0.0)).verdict == "met"
    below = measured((-0.03, -0.04, -0.035), (0.0, 0.0, 0.0))
    assert below.verdict == "missed" and [t["met"] for t in below.target] == [False, True]
    assert below.target[0]["budget_passes"] == [22.0, 22.0]
    page = render([{**vars(below), "settings": {"study": {}}}])
    assert "Δ pgd_acc: aft - pgd-at (3 seeds; 22.0 against 22.0 passes per image) | -3.50 ± 1.00 (below) |" in page


def test_a_study_whose_mechanism_does_not_act_is_missed_even_where_its_claims_hold(monkeypatch, tmp_path):
    import dataclasses

    from robustrain.repro import Mechanism, run_study_experiment

    def with_mechanism(differences):
        values = {f"/runs/aft-s{seed}": (0.5 + d, 0.5) for seed, d in enumerate(differences)}
        return dataclasses.replace(REPRODUCTIONS.get("aft_vs_pgd_at"), mechanisms=(
            Mechanism("aft", "what acts", lambda run: values[str(run)], "below", "paper"),))

    def run(self, train, tiny, record, runs, extra, jobs):
        level = {metric: {"mean": 0.0, "ci95_half_width": 0.01, "verdict": "within the noise"}
                 for metric in ("pgd_acc", "clean_acc")}
        arms = {arm: {seed: {"run": f"/runs/{arm}-s{seed}", "trained_at": [], "budget_passes": 22.0, "clean_acc": 0.5,
                             "pgd_acc": 0.3} for seed in (2, 0, 1)} for arm in ("aft", "pgd-at")}
        return {"settings": {}, "arms": arms, "comparisons": {"aft - pgd-at": {"seeds": [0, 1, 2], **level}}}

    monkeypatch.setattr(type(REPRODUCTIONS.get("aft_vs_pgd_at").study), "run", run)
    # differences -0.10, -0.09, -0.11: mean -10 points, 95% half-width 4.303 x 1 / sqrt(3) = 2.48 points
    acts = run_study_experiment(with_mechanism((-0.10, -0.09, -0.11)), tmp_path, "cpu", None, tiny=False, jobs=1)
    assert acts.verdict == "met"
    assert acts.target[-1] == {"mechanism": "aft: what acts", "seeds": 3, "expected": "below", "source": "paper",
                               "measured": pytest.approx(-0.10), "band_95": pytest.approx(0.024843, abs=1e-6),
                               "verdict": "below", "met": True}
    inert = run_study_experiment(with_mechanism((-0.10, 0.05, 0.02)), tmp_path, "cpu", None, tiny=False, jobs=1)
    assert inert.verdict == "missed" and [t["met"] for t in inert.target] == [True, True, False]
    page = render([{**vars(acts), "settings": {"study": {}}}])
    assert "| mechanism: aft: what acts (3 seeds) | -10.00 ± 2.48 (below) | below | paper | met |" in page
    with pytest.raises(ValueError, match="the mechanism of arm 'augmix' is not measured in one of its arms"):
        dataclasses.replace(with_mechanism(()), mechanisms=(Mechanism("augmix", "x", len, "below", "paper"),))


@pytest.mark.parametrize("name", [e.name for e in REPRODUCTIONS.values() if isinstance(e, StudyExperiment)])
def test_every_arm_of_a_method_against_baseline_experiment_builds_at_full_size(name):
    """The tiny mode swaps in a ResNet-20: the arms' own settings (PreAct-ResNet-18, all images, bf16)
    are only checked here."""
    from robustrain.config import from_dict, load_yaml, set_dotted
    from robustrain.data import DatasetInfo
    from robustrain.methods import method_from_section
    from robustrain.study import PROJECT
    from robustrain.train import RunConfig, build_model

    info = DatasetInfo(name="cifar10", num_classes=10, channels=3, image_size=(32, 32), mean=(0.5, 0.5, 0.5),
                       std=(0.25, 0.25, 0.25))
    for arm in REPRODUCTIONS.get(name).study.arms.values():
        settings = load_yaml(PROJECT / arm.config)
        for assignment in arm.overrides:
            set_dotted(settings, assignment)
        config = from_dict(RunConfig, settings)
        assert config.model["name"] == "preact_resnet18" and config.data.train_limit is None
        method_from_section(config.method, config.threat).attach(build_model(config, info))
