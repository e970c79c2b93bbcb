import json
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from robustrain.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "robustrain", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_help_explains_commands_and_options():
    top = run_cli("--help")
    assert top.returncode == 0 and "train" in top.stdout and "demo" in top.stdout
    train = run_cli("train", "--help")
    for flag in ("--config", "--method", "--model", "--data-root", "--eps", "--resume", "--set", "--precision"):
        assert flag in train.stdout


def test_switch_flags_set_their_keys_only_when_given():
    from robustrain.cli import _settings, build_parser

    given = _settings(build_parser().parse_args(["train", "--channels-last", "--compile", "--set", "epochs=2"]))
    assert given == {"channels_last": True, "compile": True, "epochs": 2}
    assert _settings(build_parser().parse_args(["train", "--set", "epochs=2"])) == {"epochs": 2}


def test_bad_value_is_one_sentence_without_traceback_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--data", "digits", "--epochs", "0", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == "robustrain: error: epochs and batch_size must be at least 1, got 0 and 128."
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet19"], "unknown model 'resnet19'; available models are"),
    (["--method", "madry"], "unknown method 'madry'; available methods are"),
    (["--set", "optim.momentun=0.9"], "unknown option 'optim.momentun'"),
    (["--set", "method.steps=three", "--method", "pgd_at"], "method.steps must be an integer, got 'three'"),
    (["--data", "cifar10", "--data-root", "/nonexistent"], "cifar10 not found under /nonexistent"),
    (["--eps", "big"], "threat.eps must be a number or a fraction"),
    (["--set", 'init.key_map=[["^module\\.", ""]]'], "is not valid YAML"),
    (["--device", "cuda"], "has no CUDA device"),
    (["--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
])
def test_user_errors_name_the_bad_value(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(["train", "--data", "digits", "--epochs", "1", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_config_file_overrides_and_resume_rules(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"name": "digits", "train_limit": 64}, "epochs": 1,
                                      "model": {"name": "small_cnn", "width": 4}, "eval": {"pgd_steps": 1},
                                      "batch_size": 32, "device": "cpu"}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--set", "optim.lr=0.01", "--out", str(run), "--no-progress"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.01 and saved["data"]["train_limit"] == 64
    assert main(["train", "--config", str(config), "--out", str(run)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_bad_yaml_file_is_reported(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: [1,\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_prints_clean_and_pgd_accuracy_of_both_models(tmp_path, capsys):
    assert main(["demo", "--epochs", "2", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| standard |" in out and "| pgd_at   |" in out and "PGD-20 acc (eps 0.1, linf)" in out
    assert "mean corruption error (15 x 5)" in out
    assert (tmp_path / "standard" / "results.json").is_file() and (tmp_path / "pgd_at" / "results.json").is_file()
    assert f"The run folders are kept in {tmp_path}" in out
    # its evaluation holds PGD-20 as well, so a report of the two runs has the column
    assert main(["report", str(tmp_path / "standard"), str(tmp_path / "pgd_at"), "--out", str(tmp_path / "r")]) == 0
    assert "| PGD-20 |" in (tmp_path / "r" / "report.md").read_text()


def test_every_example_in_the_help_names_a_file_that_exists():
    import re
    from pathlib import Path

    from robustrain.cli import EXAMPLES, build_parser

    root = Path(__file__).resolve().parents[1]
    texts = [EXAMPLES] + [sub.epilog or "" for action in build_parser()._subparsers._group_actions
                          for sub in action.choices.values()]
    named = {m for text in texts for m in re.findall(r"configs/\S+\.yaml", text)}
    assert named and all((root / path).is_file() for path in named), named


def test_schedule_command_prints_and_plots_the_curve(tmp_path, capsys):
    plot = tmp_path / "lr.png"
    code = main(["schedule", "--schedule", "slow_start_fast_decay", "--epochs", "10", "--lr", "0.1",
                 "--set", "schedule.peak_fraction=0.8", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].endswith("%"):
            rows[parts[0]] = float(parts[2])
    assert rows["0%"] == 0 and rows["80%"] == 0.1 and rows["90%"] == 0.05 and rows["100%"] == 0
    assert main(["schedule", "--schedule", "slow_start_fast_decay", "--set", "schedule.peak_fraction=0.3"]) == 2
    assert "no faster than the rise" in capsys.readouterr().err


def test_eval_report_and_corrupt_commands(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--model", "small_cnn", "--epochs", "1", "--set", "model.width=4",
                 "--set", "eval.pgd_steps=1",
                 "--device", "cpu", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--suite", "quick", "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "clean" in out and "PGD-20" in out and (run / "eval" / "quick.json").is_file()
    results = json.loads((run / "eval" / "quick.json").read_text())
    assert results["header"]["threat"] == {"norm": "linf", "eps": 8 / 255}  # the run's threat model
    assert main(["eval", str(run), "--suite", "quick", "--eps", "4/255", "--device", "cpu", "--no-progress"]) == 0
    assert (run / "eval" / "quick-linf-eps4.json").is_file()  # another threat model: another file
    checkpoint = next((run / "checkpoints").glob("epoch-*.safetensors"))
    assert main(["eval", str(checkpoint), "--suite", "quick", "--eps", "0.1", "--out", str(tmp_path / "e.json"),
                 "--device", "cpu", "--no-progress"]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["header"]["threat"]["eps"] == 0.1
    assert main(["report", str(run), "--suite", "quick", "--out", str(tmp_path / "report")]) == 0
    # the same weights as a foreign state dict, saved as DataParallel would name them
    weights = load_file(checkpoint)
    torch.save({"state_dict": {"module." + k[len("model/"):]: v for k, v in weights.items()
                               if k.startswith("model/")}}, tmp_path / "mine.pt")
    assert main(["eval", str(tmp_path / "mine.pt"), "--suite", "quick", "--device", "cpu", "--no-progress"]) == 2
    assert "give --model and --data" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "mine.pt"), "--model", "small_cnn", "--model-option", "width=4", "--data",
                 "digits", "--rename", "^module\\.=", "--suite", "quick", "--device", "cpu", "--no-progress"]) == 0
    foreign = json.loads((tmp_path / "eval" / "mine-quick.json").read_text())
    assert foreign["header"]["weights_sha256"] == results["header"]["weights_sha256"]
    assert foreign["summary"] == results["summary"]
    assert (tmp_path / "report" / "report.md").is_file()
    corrupted = tmp_path / "digits-c"
    assert main(["corrupt", "--data", "digits", "--corruptions", "contrast,fog", "--out", str(corrupted),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in corrupted.iterdir()) == ["contrast.npy", "fog.npy", "labels.npy"]


@pytest.mark.parametrize("args, message", [
    (["eval", "/nonexistent/run"], "/nonexistent/run does not exist"),
    (["report", "/nonexistent/run", "--out", "x"], "/nonexistent/run is not a folder"),
    (["corrupt", "--data", "digits", "--corruptions", "rain", "--out", "x"], "unknown corruption 'rain'"),
])
def test_eval_report_corrupt_errors_are_one_sentence(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_every_command_the_parser_accepts_has_a_handler():
    import argparse

    from robustrain.cli import COMMANDS, build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == set(COMMANDS)
