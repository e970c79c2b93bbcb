"""The verdicts of the results pages (per-seed paired differences and their 95% t interval) and how the
study scripts order their runs and name their comparisons."""

import json
import math
import time

import pytest

from robustrain import study
from robustrain.runs import RunFolder


def test_paired_difference_uses_students_t_with_n_minus_one_degrees_of_freedom():
    noisy = study.PairedDifference((0.01, 0.02, 0.03))
    # mean 0.02, sd 0.01, half-width t(0.975, 2) * sd / sqrt(3) = 4.303 * 0.01 / 1.732
    assert noisy.mean == pytest.approx(0.02) and noisy.spread == pytest.approx(0.01)
    assert noisy.half_width == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-4)
    assert noisy.verdict == "within the noise"
    assert study.PairedDifference((0.010, 0.011, 0.009)).verdict == "above"
    assert study.PairedDifference((-0.010, -0.011, -0.009)).verdict == "below"
    # Five seeds: t(0.975, 4) = 2.776.
    five = study.PairedDifference((0.0, 0.01, 0.02, 0.03, 0.04))
    assert five.half_width == pytest.approx(2.776 * five.spread / math.sqrt(5), rel=1e-4)
    assert study.PairedDifference((0.05,)).verdict == "within the noise"  # one seed says nothing



def test_a_study_trains_an_arm_after_the_arm_it_starts_from_with_the_same_seed():
    s = study.Study("demo", {"tuned": study.Arm("fine-tuned", "b.yaml", ("epochs=1",), starts_from="base"),
                             "base": study.Arm("base", "a.yaml")}, (), ("data.train_limit=8",))
    assert s.waves() == [["base"], ["tuned"]]
    spec = s.spec("tuned", 2, tiny=True)
    assert spec.after == "runs/demo-tiny/base-s2"
    assert spec.overrides == ("--seed", "2", "--init", "runs/demo-tiny/base-s2", "--set", "epochs=1",
                              "--set", "data.train_limit=8")
    looped = study.Study("loop", {"a": study.Arm("a", "a.yaml", starts_from="b"),
                                  "b": study.Arm("b", "b.yaml", starts_from="a")}, (), ())
    with pytest.raises(ValueError, match="start from an arm that is missing or from each other"):
        looped.waves()


def test_ensure_runs_starts_a_dependent_run_only_after_its_start_finished(monkeypatch):
    events = []

    def fake_run(config, run, *overrides, train, threads):
        events.append(("start", run))
        time.sleep(0.3 if run == "base" else 0.01)
        events.append(("end", run))
        return None if run == "never" else {"run": run}

    monkeypatch.setattr(study, "ensure_run", fake_run)
    # Two workers: "quick" frees one long before "base" ends, so "tuned" would start early if it did not wait.
    specs = [study.RunSpec("c", "base"), study.RunSpec("c", "quick"), study.RunSpec("c", "never"),
             study.RunSpec("c", "tuned", after="base"), study.RunSpec("c", "orphan", after="never")]
    results = study.ensure_runs(specs, train=True, jobs=2)
    assert events.index(("start", "tuned")) > events.index(("end", "base"))
    assert results["orphan"] is None and ("start", "orphan") not in events  # its start did not finish
    assert results["tuned"] == {"run": "tuned"}
    with pytest.raises(ValueError, match="not listed before it"):
        study.ensure_runs([study.RunSpec("c", "tuned", after="base")], train=True)


def test_a_stopped_run_is_resumed_with_its_saved_settings_and_a_finished_one_is_left_alone(monkeypatch, tmp_path):
    """What lets a study longer than a session go on where the last one stopped (`train --resume` picks up
    the newest checkpoint and ends like an uninterrupted run: tests/test_ews.py, tests/test_stream.py)."""
    calls = []
    monkeypatch.setattr(study, "robustrain", lambda argv, threads=None: calls.append(argv))
    new, stopped, finished = (str(tmp_path / name) for name in ("new", "stopped", "finished"))
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "config.yaml").write_text("epochs: 10\n")
    (tmp_path / "finished").mkdir()
    (tmp_path / "finished" / "config.yaml").write_text("epochs: 10\n")
    monkeypatch.setattr(study.RunFolder, "results", lambda folder: "done" if folder.path.name == "finished" else None)
    assert study.ensure_run("c.yaml", new, "--seed", "1") is None
    assert study.ensure_run("c.yaml", stopped, "--seed", "1") is None
    assert study.ensure_run("c.yaml", finished, "--seed", "1") == "done"
    assert study.ensure_run("c.yaml", new, train=False) is None
    assert calls == [["train", "--config", "c.yaml", "--out", new, "--no-progress", "--seed", "1"],
                     ["train", "--resume", stopped, "--no-progress"]]


def test_each_run_is_evaluated_as_soon_as_it_finishes_so_a_study_cut_off_keeps_it(monkeypatch):
    events = []
    monkeypatch.setattr(study, "ensure_run", lambda config, run, *overrides, train, threads:
                        events.append(("trained", run)) or (None if run == "stopped" else {"run": run}))
    monkeypatch.setattr(study, "ensure_evaluation", lambda run, suite, evaluate=True, threads=None:
                        events.append(("evaluated", run, suite)))
    study.ensure_runs([study.RunSpec("c", "a"), study.RunSpec("c", "stopped"), study.RunSpec("c", "b")],
                      train=True, jobs=1, suite="corruptions")
    assert events == [("trained", "a"), ("evaluated", "a", "corruptions"), ("trained", "stopped"), ("trained", "b"),
                      ("evaluated", "b", "corruptions")]


@pytest.mark.parametrize("threads, expected", [(None, 1), (3, 3)])  # None: 2 cores shared by 2 jobs
def test_every_run_and_evaluation_gets_the_threads_asked_for_or_a_share_of_the_cores(monkeypatch, threads, expected):
    seen = []
    monkeypatch.setattr(study.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(study, "ensure_run", lambda config, run, *overrides, train, threads:
                        seen.append(threads) or {"run": run})
    monkeypatch.setattr(study, "ensure_evaluation", lambda run, suite, evaluate=True, threads=None:
                        seen.append(threads))
    study.ensure_runs([study.RunSpec("c", "a"), study.RunSpec("c", "b")], train=True, jobs=2, suite="quick",
                      threads=threads)
    assert seen == [expected] * 4


def test_a_run_folders_saved_configuration_has_the_fingerprint_of_the_spec_that_trained_it(tmp_path):
    from robustrain.cli import train_config
    from robustrain.runs import RunFolder
    from robustrain.train.run_config import read_run_config

    config = str(study.PROJECT / "configs/cpu/oat_resnet20.yaml")  # fractions (8/255) and lists pass through YAML
    spec = study.RunSpec(config, str(tmp_path / "run"), ("--seed", "2", "--set", "epochs=3"))
    folder = RunFolder(tmp_path / "run")
    folder.write_config(train_config(["--config", config, "--out", spec.run, *spec.overrides]))  # as train saves it
    assert study.fingerprint(read_run_config(folder)) == spec.fingerprint()
    for changed in (("--seed", "1", "--set", "epochs=3"), ("--seed", "2", "--set", "epochs=4"),
                    ("--seed", "2", "--set", "epochs=3", "--init", "runs/other"),
                    ("--seed", "2", "--set", "epochs=3", "--set", "data.train_limit=500")):
        assert study.RunSpec(config, spec.run, changed).fingerprint() != spec.fingerprint()
    elsewhere = ("--seed", "2", "--set", "epochs=3", "--set", "data.root=/elsewhere/cifar10-jpeg")
    assert study.RunSpec(config, spec.run, elsewhere).fingerprint() == spec.fingerprint()  # where, not what


def test_a_study_takes_a_run_whose_folder_is_gone_from_its_record_while_it_would_train_the_same(monkeypatch):
    config = str(study.PROJECT / "configs/cpu/pgd_at_lambda_resnet20.yaml")
    s = study.Study("no-such-study", {"kept": study.Arm("K", config), "changed": study.Arm("C", config, ("epochs=2",)),
                                      "tuned": study.Arm("T", config, starts_from="changed"),
                                      "new": study.Arm("N", config, ("epochs=3",))},
                    (), (), seeds=(0,), suite=None, metrics=("clean_acc",))

    def record(arm: str, trained_as: str | None = None) -> dict:
        return {"run": s.spec(arm, 0).run, "clean_acc": 0.5, "trained_at": ["abc1234"],
                "config_sha256": s.spec(trained_as or arm, 0).fingerprint()}

    kept = {"kept@lambda=0": {"0": record("kept")}, "kept@lambda=1": {"0": record("kept")},
            "changed": {"0": record("changed", trained_as="kept")},  # recorded before its epochs changed
            "tuned": {"0": record("tuned")}}  # its own settings unchanged, but it started from the old run
    trained = []

    def ensure_runs(specs, *args):
        trained.extend(spec.run for spec in specs)
        return {spec.run: None for spec in specs}

    monkeypatch.setattr(study, "ensure_runs", ensure_runs)
    result = s.run(train=True, tiny=False, record=lambda *args: {}, kept=kept)
    assert trained == [s.spec(arm, 0).run for arm in ("changed", "new", "tuned")]
    assert result["arms"] == {"kept@lambda=0": {0: kept["kept@lambda=0"]["0"]},
                              "kept@lambda=1": {0: kept["kept@lambda=1"]["0"]}}
    assert "runs trained at commit abc1234;" in result["provenance"]


def test_conditioned_arms_compare_per_setting_with_paired_differences():
    s = study.Study("demo", {"oat": study.Arm("OAT", "o.yaml"), "standard": study.Arm("standard", "s.yaml")},
                    (("oat@lambda=0", "standard"),), (), suite=None, metrics=("clean_acc", "pgd_acc"))
    arms = {"oat@lambda=0": {0: {"clean_acc": 0.80, "pgd_acc": 0.10}, 1: {"clean_acc": 0.82, "pgd_acc": 0.12},
                             2: {"clean_acc": 0.81, "pgd_acc": 0.11}},
            "standard": {0: {"clean_acc": 0.78, "pgd_acc": 0.0}, 1: {"clean_acc": 0.79, "pgd_acc": 0.0},
                         2: {"clean_acc": 0.80, "pgd_acc": 0.0}}}
    comparison = s.compare(arms)["oat@lambda=0 - standard"]
    assert comparison["clean_acc"]["differences"] == pytest.approx([0.02, 0.03, 0.01])
    assert comparison["clean_acc"]["ci95_half_width"] == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-4)
    assert comparison["pgd_acc"]["verdict"] == "above"
    assert s.label("oat@lambda=0") == "OAT at λ = 0"


def test_the_page_states_the_t_quantile_of_each_seed_count_its_verdicts_use():
    rule = " ".join(study.verdict_rule([2, 3]))
    # t(0.975, 1) = 12.706 and t(0.975, 2) = 4.303.
    assert "t = 12.71 with 2 seeds, t = 4.30 with 3 seeds" in rule
    assert study.verdict_rule([]) == []


def test_the_reading_states_each_run_comparison_with_its_band_and_names_those_not_run():
    s = study.Study("demo", {arm: study.Arm(arm.upper(), f"{arm}.yaml") for arm in "abc"}, (("a", "b"), ("a", "c")), (),
                    suite=None, metrics=("clean_acc",))
    arms = {"a": {0: {"clean_acc": 0.80}, 1: {"clean_acc": 0.82}, 2: {"clean_acc": 0.81}},
            "b": {0: {"clean_acc": 0.78}, 1: {"clean_acc": 0.79}, 2: {"clean_acc": 0.80}}}
    planned = {"arms": {arm: {"seeds": [0, 1, 2]} for arm in "abc"}}
    page = {"settings": planned, "comparisons": s.compare(arms)}  # c never ran
    lines = s.reading(page, {("a", "c"): "A − C", ("a", "b"): "A − B"}, ["- Limits."])
    # differences 2, 3, 1 points: mean 2, half-width 4.303 * 1 / sqrt(3) = 2.48
    assert "- A − B: clean acc +2.00 ± 2.48 points (within the noise)." in lines
    assert lines[-2:] == ["- Not run yet: A − C.", "- Limits."]
    assert not any(line.startswith("- A − C") for line in lines)
    assert s.reading(page, {("a", "c"): "A − C"}, ["- Limits."]) == []
    two_seeds = {"settings": planned, "comparisons": s.compare({arm: {0: r[0], 1: r[1]} for arm, r in arms.items()})}
    # differences 2, 3 points: mean 2.5, half-width 12.706 * 0.7071 / sqrt(2) = 6.35
    assert ("- A − B: clean acc +2.50 ± 6.35 points (within the noise). Provisional: 2 of 3 seeds."
            in s.reading(two_seeds, {("a", "b"): "A − B"}, []))


def test_a_reading_that_describes_a_comparison_the_study_does_not_make_is_refused():
    s = study.Study("demo", {"a": study.Arm("A", "a.yaml"), "b": study.Arm("B", "b.yaml")}, (("a", "b"),), (),
                    suite=None, metrics=("clean_acc",))
    with pytest.raises(ValueError, match=r"\('b', 'a'\)"):
        s.reading({"settings": {}, "comparisons": {}}, {("b", "a"): "B − A"}, [])


def test_an_arm_not_run_yet_has_a_row_as_wide_as_the_header():
    s = study.Study("demo", {"a": study.Arm("A", "a.yaml"), "b": study.Arm("B", "b.yaml")}, (), (),
                    suite=None, metrics=("clean_acc", "pgd_acc"))
    records = {0: {"clean_acc": 0.8, "pgd_acc": 0.3, "budget_passes": 11.0}}
    header, _, ran, not_run = s.tables({"arms": {"a": records}, "comparisons": {}})[:4]
    assert "not run yet" in not_run
    assert header.count("|") == ran.count("|") == not_run.count("|")


def test_a_run_that_fails_is_one_sentence_naming_the_command_and_its_status(tmp_path):
    from robustrain.errors import RobustrainError

    missing = tmp_path / "missing.yaml"
    with pytest.raises(RobustrainError, match=r"robustrain train --config .* exited with status 2; its own message"):
        study.ensure_run(str(missing), str(tmp_path / "run"))


def test_a_study_page_names_the_commits_that_trained_its_runs_and_the_runs_that_did_not_say(monkeypatch):
    monkeypatch.setenv("ROBUSTRAIN_COMMIT", "page123")
    line = study.provenance([["abc1234"], ["abc1234", "def5678"], []])
    assert line.startswith("Code: runs trained at commits abc1234, def5678; 1 of 3 runs trained before runs "
                           "recorded their commit; this page made at commit page123. Machine: ")
    assert study.provenance([["abc1234"]]).startswith("Code: runs trained at commit abc1234; this page made at")
    assert study.provenance().startswith("Code: commit page123. Machine: ")
    assert study.provenance([["abc1234"]] * 2, [["CPU"]] * 2).startswith("Code: runs trained at commit abc1234 on CPU;")
    mixed = study.provenance([["abc1234"]] * 3, [["CPU"], ["NVIDIA H100"], ["NVIDIA H100"]])
    assert mixed.startswith("Code: runs trained at commit abc1234 on CPU (1 run) and NVIDIA H100 (2 runs);")


def test_a_page_whose_render_fails_leaves_the_page_and_its_source_as_they_were(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "PROJECT", tmp_path)
    doc, source = tmp_path / "study.md", tmp_path / "study.json"
    doc.write_text("old page")
    source.write_text('{"arms": {}}')

    def broken(measured):
        raise KeyError("ews")

    with pytest.raises(KeyError):
        study.write_study({"arms": {"ews": {}}}, broken, doc, source)
    assert doc.read_text() == "old page" and source.read_text() == '{"arms": {}}'
    study.write_study({"arms": {"ews": {}}}, lambda measured: f"{len(measured['arms'])} arm", doc, source)
    assert doc.read_text() == "1 arm" and json.loads(source.read_text()) == {"arms": {"ews": {}}}


def test_rendering_without_training_never_drops_runs_the_committed_json_holds(monkeypatch, tmp_path):
    s = study.Study("no-such-study", {"a": study.Arm("A", "a.yaml")}, (), (), suite=None, metrics=("clean_acc",))
    source, doc = tmp_path / "study.json", tmp_path / "study.md"
    source.write_text('{"arms": {"a": {"0": {"run": "runs/x/a-s0"}}}}')
    monkeypatch.setattr(study.Study, "run", lambda *args, **kwargs: {"arms": {}})
    monkeypatch.setattr(study, "write_study", lambda *args: doc.write_text("rendered"))
    monkeypatch.setattr("sys.argv", ["script", "--no-train"])
    with pytest.raises(SystemExit, match=r"1 run that study.json holds \(runs/x/a-s0\) is neither finished"):
        s.main(lambda *args: {}, str, doc, source)
    assert not doc.exists()
    monkeypatch.setattr("sys.argv", ["script"])  # training: the runs were trained again or left the study
    s.main(lambda *args: {}, str, doc, source)
    assert doc.read_text() == "rendered"


def test_training_minutes_count_each_cpu_run_once_and_leave_out_runs_a_gpu_trained():
    s = study.Study("demo", {"oat": study.Arm("OAT", "o.yaml"), "pgd": study.Arm("PGD-AT", "p.yaml"),
                             "new": study.Arm("new", "n.yaml")}, (), ())
    cpu = {"trained_on": ["CPU"], "threads": [1]}
    oat = {0: {"run": "oat-s0", "train_time_s": 600, **cpu}, 1: {"run": "oat-s1", "train_time_s": 1200, **cpu}}
    arms = {"oat@lambda=0": oat, "oat@lambda=1": oat,  # one run, two settings
            "pgd": {0: {"run": "pgd-s0", "train_time_s": 120, **cpu},
                    1: {"run": "pgd-s1", "train_time_s": 6, "trained_on": ["NVIDIA H100"], "threads": [1]}}}
    assert s.training_minutes({"arms": arms}) == "OAT: 15 min (2 runs, 1 thread); PGD-AT: 2 min (1 run, 1 thread)"
    assert s.training_minutes({"arms": {}}) == "none finished yet"


def test_training_minutes_are_apart_for_each_number_of_threads_the_runs_had():
    s = study.Study("demo", {"augmix": study.Arm("AugMix", "a.yaml")}, (), ())
    runs = {0: {"run": "a-s0", "train_time_s": 5400, "trained_on": ["CPU"]},  # before runs recorded threads
            1: {"run": "a-s1", "train_time_s": 4800, "trained_on": ["CPU"], "threads": [None]},
            2: {"run": "a-s2", "train_time_s": 2400, "trained_on": ["CPU"], "threads": [2]},
            3: {"run": "a-s3", "train_time_s": 3000, "trained_on": ["CPU"], "threads": [1, 2]},
            4: {"run": "a-s4", "train_time_s": 3600, "trained_on": ["CPU"], "threads": [None, 2]}}
    assert s.training_minutes({"arms": {"augmix": runs}}) == (
        "AugMix: 85 min (2 runs, threads not recorded), 40 min (1 run, 2 threads), 50 min (1 run, 1 and 2 threads), "
        "60 min (1 run, 2 threads, partly not recorded)")


def test_a_run_records_the_torch_threads_a_study_gives_it(tmp_path):
    # one thread: not torch's default (every core) on the 2-core machines the tests run on
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"data": {"name": "digits", "train_limit": 64},
                                  "model": {"name": "small_cnn", "width": 4}, "method": {"name": "standard"},
                                  "eval": {"pgd_steps": 1, "pgd_limit": 8},
                                  "epochs": 1, "batch_size": 32, "device": "cpu", "out": str(tmp_path / "run")}))
    study.robustrain(["train", "--config", str(config), "--no-progress"], threads=1)
    assert RunFolder(tmp_path / "run").threads() == [1]


def test_with_a_deadline_only_runs_expected_to_finish_before_it_start(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(study, "ensure_run", lambda config, run, *overrides, train, threads:
                        started.append(run) or {"run": run})
    specs = [study.RunSpec("c", "runs/no-such-study/long"), study.RunSpec("c", "runs/no-such-study/short"),
             study.RunSpec("c", "runs/no-such-study/unknown")]
    expected = {"runs/no-such-study/long": 3600.0, "runs/no-such-study/short": 60.0}
    results = study.ensure_runs(specs, True, 1, None, time.monotonic() + 600, expected)
    assert started == ["runs/no-such-study/short", "runs/no-such-study/unknown"]
    assert results["runs/no-such-study/long"] is None
    assert "runs/no-such-study/long: not started: expected to take 60 min, 10 min left" in capsys.readouterr().out
    started.clear()
    study.ensure_runs(specs, True, 1, None, time.monotonic() - 1, expected)  # past it: nothing starts
    assert started == []


def test_a_runs_expected_time_is_the_mean_wall_time_of_its_arms_runs_on_the_same_device():
    cpu, gpu = {"trained_on": ["CPU"]}, {"trained_on": ["NVIDIA H100"]}
    oat = {0: {"run": "oat-s0", "wall_time_s": 100.0, **cpu}, 1: {"run": "oat-s1", "wall_time_s": 300.0, **cpu},
           2: {"run": "oat-s2", "wall_time_s": 9.0, **gpu}}
    kept = {"oat@lambda=0": oat, "oat@lambda=1": oat, "pgd": {0: {"run": "pgd-s0", "wall_time_s": 5.0, **gpu}},
            "old": {0: {"run": "old-s0", **cpu}}}  # recorded before runs kept their wall time
    assert study.expected_wall_s(kept, "CPU") == {"oat": 200.0}
    assert study.expected_wall_s(kept, "NVIDIA H100") == {"oat": 9.0, "pgd": 5.0}


def test_a_runs_wall_time_runs_from_its_first_process_start_to_its_results(tmp_path):
    import os

    from robustrain.runs import RunFolder

    folder = RunFolder(tmp_path)
    assert folder.wall_time_s() is None
    folder.append_provenance({"started": "2026-11-27T10:00:00Z"})
    folder.append_provenance({"started": "2026-11-27T10:30:00Z"})  # a resume
    folder.results_file.write_text("{}")
    os.utime(folder.results_file, (0, 1795773600.0 + 1234.5))  # 2026-11-27T10:00:00Z + 1234.5 s
    assert folder.wall_time_s() == pytest.approx(1234.5)


def test_a_verdict_of_fewer_seeds_than_planned_is_called_provisional():
    page = {"settings": {"arms": {"oat": {"seeds": [0, 1, 2]}, "standard": {"seeds": [0, 1, 2]},
                                  "pilot": {"seeds": [0, 1]}}},
            "comparisons": {"oat@lambda=0 - standard": {"seeds": [0, 1]},
                            "oat@lambda=1 - standard": {"seeds": [0, 1, 2]}, "pilot - standard": {"seeds": [0, 1]}}}
    assert study.provisional(page, "oat@lambda=0 - standard") == " Provisional: 2 of 3 seeds."
    assert study.provisional(page, "oat@lambda=1 - standard") == ""
    both = study.provisional(page, "oat@lambda=0 - standard", "oat@lambda=1 - standard")
    assert both == " Provisional: 2 of 3 seeds."
    assert study.provisional(page, "pilot - standard") == ""  # all the seeds its arm plans
