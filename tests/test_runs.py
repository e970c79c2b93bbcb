"""The run folder: its layout in one place, and loading a run without the training loop."""

import json
import subprocess
import sys

import pytest

from robustrain.config import from_dict
from robustrain.errors import RobustrainError
from robustrain.runs import RunFolder
from robustrain.train import RunConfig, read_run_config, train


def test_loading_a_run_for_evaluation_does_not_import_the_training_loop(tmp_path):
    out = tmp_path / "run"
    train(from_dict(RunConfig, {"data": {"name": "digits", "augment": "none", "train_limit": 64},
                                "model": {"name": "small_cnn", "width": 4}, "eval": {"pgd_steps": 1, "pgd_limit": 8},
                                "epochs": 1, "batch_size": 32, "device": "cpu", "out": str(out)}), progress=False)
    program = ("import sys\n"
               "from robustrain.train.load import load_run\n"
               f"run = load_run({str(out)!r})\n"
               "import robustrain\n"
               "assert callable(robustrain.train), robustrain.train\n"
               "print(sorted(m for m in sys.modules if m.startswith('robustrain.train')))\n")
    loaded = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    assert "robustrain.train.load" in loaded and "robustrain.train.trainer" not in loaded
    folder = RunFolder(out)
    assert folder.holds_run() and read_run_config(folder).epochs == 1 and folder.results().test_images > 0
    assert [m["epoch"] for m in folder.metrics()] == [0]
    assert RunFolder.of_checkpoint(out / "checkpoints" / "epoch-0000.safetensors") == folder
    assert RunFolder.of_checkpoint(out / "model.safetensors") is None


def test_resuming_keeps_the_metrics_of_earlier_epochs_and_stops_at_a_damaged_line(tmp_path):
    folder = RunFolder(tmp_path)
    for epoch in range(3):
        folder.append_metrics({"epoch": epoch, "train_loss": 1.0 / (epoch + 1)})
    folder.keep_metrics_before(2)
    assert [m["epoch"] for m in folder.metrics()] == [0, 1]
    with open(folder.metrics_file, "a") as f:
        f.write('{"epoch": 2, "train_lo')  # a process killed while writing
    folder.keep_metrics_before(5)
    assert [m["epoch"] for m in folder.metrics()] == [0, 1]
    assert folder.results() is None and folder.evaluation("quick") is None and folder.evaluations() == []


def test_a_new_run_needs_an_empty_folder_and_a_resumed_one_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RobustrainError, match="exists and is not an empty folder"):
        RunFolder(tmp_path).check_new()
    with pytest.raises(RobustrainError, match="config.yaml is missing"):
        RunFolder(tmp_path).check_resumable()
    with pytest.raises(RobustrainError, match="is not a run folder: it has no config.yaml"):
        read_run_config(RunFolder(tmp_path))
    RunFolder(tmp_path / "new").check_new()
    evaluation = RunFolder(tmp_path).evaluation_file("quick")
    evaluation.parent.mkdir()
    evaluation.write_text(json.dumps({"summary": {}}))
    assert RunFolder(tmp_path).evaluations() == ["quick"] and RunFolder(tmp_path).evaluation("quick") == {"summary": {}}
