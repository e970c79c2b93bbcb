"""What a user gets for bad input, driven through the CLI as a user would: one sentence, a non-zero
exit, no traceback, and the files in the watched folders unchanged (or, where robustrain can
recover, a warning and a result)."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from robustrain.cli import main
from robustrain.data import load_dataset
from robustrain.errors import DataError

TINY_RUN = ["--data", "digits", "--model", "small_cnn", "--set", "model.width=4", "--set",
            "eval.pgd_steps=1", "--device", "cpu", "--no-progress"]


def snapshot(folder):
    """Every file under `folder` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_sentence_error(capsys, code, expected):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and expected in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("robustrain: error:")]
    assert len(lines) == 1, err
    return err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A two-epoch run on digits (two checkpoints)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", *TINY_RUN, "--epochs", "2", "--out", str(run)]) == 0
    return run


@pytest.fixture()
def run_copy(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def truncate(path):
    path.write_bytes(path.read_bytes()[:100])


# --- probes: (arguments, the sentence's key words); each must leave the watched folder as it was ------

TRAIN_PROBES = [
    (["--epochs", "0"], "epochs and batch_size must be at least 1"),
    (["--model", "resnet19"], "unknown model 'resnet19'"),
    (["--method", "madry"], "unknown method 'madry'"),
    (["--set", "optim.momentun=0.9"], "unknown option 'optim.momentun'"),
    (["--eps", "big"], "threat.eps must be a number or a fraction"),
    (["--eps", "2"], "threat.eps 2 is larger than the whole pixel range"),
    (["--device", "cuda"], "has no CUDA device"),
    (["--precision", "fp16"], "fp16 needs a CUDA device"),
    (["--method", "auxiliary"], "method auxiliary needs a last feature map of at least 3x3"),
    (["--method", "standard", "--set", "method.views=[fog/6]"], "needs a severity from 1 to 5"),
    (["--set", "data.train_limit=0"], "data.train_limit must be at least 1"),
    (["--set", "data.color=purple"], "data.color"),
]


def test_a_model_setting_without_a_model_name_says_what_to_add(tmp_path, capsys):
    code = main(["train", "--data", "digits", "--set", "model.width=4", "--out", str(tmp_path / "run")])
    one_sentence_error(capsys, code, "has no name: a model section or --set model.KEY replaces the default model whole")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, expected", TRAIN_PROBES)
def test_train_refuses_bad_settings_before_writing(tmp_path, capsys, args, expected):
    out = tmp_path / "run"
    one_sentence_error(capsys, main(["train", *TINY_RUN, "--epochs", "1", "--out", str(out), *args]), expected)
    assert not out.exists()


def test_settings_are_checked_before_any_data_is_read(tmp_path, capsys):
    # the data root does not exist: the method's bad setting must be named first
    code = main(["train", "--data", "imagefolder", "--data-root", str(tmp_path / "nowhere"), "--method", "pgd_at",
                 "--set", "method.steps=0", "--out", str(tmp_path / "run")])
    one_sentence_error(capsys, code, "steps and restarts must be at least 1")


def test_ews_with_a_base_it_cannot_wrap_is_refused_before_any_data_is_read(tmp_path, capsys):
    code = main(["train", "--data", "imagefolder", "--data-root", str(tmp_path / "nowhere"), "--method", "ews",
                 "--set", "method.base.name=fast_at", "--out", str(tmp_path / "run")])
    one_sentence_error(capsys, code, "method.base must name the method EWS strengthens, one of standard, augmix")


def test_an_existing_folder_of_the_users_files_is_never_trained_into(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.json").write_text("my own results")
    (out / "metrics.jsonl").write_text("my own metrics")
    before = snapshot(out)
    one_sentence_error(capsys, main(["train", *TINY_RUN, "--epochs", "1", "--out", str(out)]),
                       "exists and is not an empty folder")
    assert snapshot(out) == before


def test_an_existing_run_is_not_overwritten(trained_run, capsys):
    before = snapshot(trained_run)
    one_sentence_error(capsys, main(["train", *TINY_RUN, "--epochs", "1", "--out", str(trained_run)]),
                       "already holds a run; pass --resume")
    assert snapshot(trained_run) == before


def test_print_config_validates_everything_and_reads_no_data(tmp_path, capsys):
    code = main(["train", "--data", "imagefolder", "--data-root", str(tmp_path / "nowhere"), "--epochs", "3",
                 "--print-config"])
    out = capsys.readouterr().out
    assert code == 0 and "epochs: 3" in out and "name: imagefolder" in out
    one_sentence_error(capsys, main(["train", "--method", "pgd_at", "--set", "method.steps=0", "--print-config"]),
                       "steps and restarts must be at least 1")


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(run_copy, capsys):
    truncate(run_copy / "checkpoints" / "epoch-0001.safetensors")
    assert main(["eval", str(run_copy), "--suite", "quick", "--device", "cpu", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: the newest checkpoint cannot be read" in err and "using epoch-0000" in err
    assert "Traceback" not in err
    # --resume trains the lost epoch again from the one before
    assert main(["train", "--resume", str(run_copy), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "clean accuracy" in out and "results in" in out
    assert load_file(run_copy / "checkpoints" / "epoch-0001.safetensors")  # rewritten whole


def test_a_run_whose_only_checkpoints_are_damaged_says_so(run_copy, capsys):
    for path in (run_copy / "checkpoints").glob("*.safetensors"):
        truncate(path)
    before = snapshot(run_copy)
    for args in (["eval", str(run_copy), "--device", "cpu"], ["train", "--resume", str(run_copy)]):
        one_sentence_error(capsys, main(args), "no checkpoint in")
    assert snapshot(run_copy) == before


def test_resuming_a_finished_run_says_so_and_prints_its_results(trained_run, capsys):
    before = snapshot(trained_run)
    assert main(["train", "--resume", str(trained_run)]) == 0
    captured = capsys.readouterr()
    assert "finished all 2 epochs already; nothing to train" in captured.out and "clean accuracy" in captured.out
    assert snapshot(trained_run) == before


def test_eval_shows_progress_and_labels_what_it_prints(trained_run, tmp_path, capsys):
    assert main(["eval", str(trained_run), "--suite", "quick", "--out", str(tmp_path / "q.json"),
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "[quick] PGD" in captured.err  # a progress bar while the attack runs
    assert "corruption/snow/3: accuracy " in captured.err  # each measurement says what it printed
    assert captured.out.startswith("run: clean accuracy ")  # the summary names the run, and errors as errors


def test_an_image_that_disappears_while_a_folder_is_read_is_named(tmp_path, monkeypatch):
    from robustrain.data import imagefolder, registry

    write(tmp_path / "train" / "a" / "0.png", np.zeros((2, 2), np.uint8))
    listed = imagefolder.list_image_folder(tmp_path, "train")
    (tmp_path / "train" / "a" / "0.png").unlink()
    write(tmp_path / "train" / "a" / "1.png", np.zeros((2, 2), np.uint8))
    monkeypatch.setattr(registry, "list_image_folder", lambda root, split: listed)
    with pytest.raises(DataError, match="0.png disappeared while .* was being read"):
        load_dataset("imagefolder", tmp_path, "train")


def test_eval_refuses_a_batch_size_of_zero(trained_run, capsys):
    before = snapshot(trained_run)
    one_sentence_error(capsys, main(["eval", str(trained_run), "--batch-size", "0"]), "--batch-size must be at least 1")
    assert snapshot(trained_run) == before


class CustomObject:
    """Something a checkpoint may pickle besides tensors."""


def test_state_dicts_robustrain_will_not_unpickle_get_a_safe_message(tmp_path, capsys):
    torch.save({"weights": torch.zeros(2), "object": CustomObject()}, tmp_path / "objects.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    for name in ("objects.pt", "text.pt"):
        err = one_sentence_error(capsys, main(["eval", str(tmp_path / name), "--model", "small_cnn", "--data",
                                               "digits"]), str(tmp_path / name))
        assert "weights_only=False" not in err and "\x1b" not in err
    assert "does not unpickle" in one_sentence_error(
        capsys, main(["eval", str(tmp_path / "objects.pt"), "--model", "small_cnn", "--data", "digits"]), "objects")


def test_prefixed_keys_in_eval_point_to_rename(trained_run, tmp_path, capsys):
    weights = load_file(next((trained_run / "checkpoints").glob("*.safetensors")))
    torch.save({"module." + k[len("model/"):]: v for k, v in weights.items() if k.startswith("model/")},
               tmp_path / "dp.pt")
    err = one_sentence_error(capsys, main(["eval", str(tmp_path / "dp.pt"), "--model", "small_cnn", "--model-option",
                                           "width=4", "--data", "digits"]), "do not fit the model")
    assert "--rename" in err and "init.key_map" not in err


def test_quantize_on_a_conditioned_run_reports_every_setting(tmp_path, capsys):
    run = tmp_path / "oat"
    assert main(["train", *TINY_RUN, "--epochs", "1", "--method", "oat", "--set", "method.steps=1",
                 "--set", "model.lambdas=[0.0,1.0]", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["quantize", str(run), "--bits", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("4-bit weights: ") == 2 and "results in" in out


def test_corrupt_with_an_unknown_table_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["corrupt", "--data", "digits", "--table", "bogus", "--out", str(tmp_path / "c")])
    assert exit_.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_report_finds_the_evaluation_the_runs_have(trained_run, tmp_path, capsys):
    assert main(["eval", str(trained_run), "--suite", "quick", "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", str(trained_run), "--out", str(tmp_path / "report")]) == 0  # quick, the one it has
    err = one_sentence_error(capsys, main(["report", str(trained_run), "--suite", "standard", "--out",
                                           str(tmp_path / "other")]), "has no eval/standard.json")
    assert "it holds quick" in err
    assert not (tmp_path / "other").exists()


# --- data read as it is meant ---------------------------------------------------------------------------

def write(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_sixteen_bit_grey_images_are_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257 * 100], [32896, 65535]], dtype=np.uint16)
    write(tmp_path / "train" / "a" / "0.png", levels)
    images = load_dataset("imagefolder", tmp_path, "train").images
    assert images.flatten().tolist() == [0, 100, 128, 255]


def test_splits_must_agree_in_colour_and_size(tmp_path):
    write(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    write(tmp_path / "test" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="holds 4x4 RGB images but .*train holds 4x4 grayscale ones"):
        load_dataset("imagefolder", tmp_path, "test")
    assert load_dataset("imagefolder", tmp_path, "test", color="rgb").images.shape == (1, 3, 4, 4)
    write(tmp_path / "test" / "a" / "0.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match="holds 5x5 grayscale images but .*train holds 4x4 grayscale ones"):
        load_dataset("imagefolder", tmp_path, "test")


def test_grey_among_rgb_images_are_named_and_can_be_converted(tmp_path):
    for k in range(3):
        write(tmp_path / "train" / "a" / f"{k}.png", np.full((2, 2, 3), 50 * k, np.uint8))
    write(tmp_path / "train" / "a" / "grey.png", np.full((2, 2), 77, np.uint8))
    with pytest.raises(DataError, match=r"image .*grey.png is grayscale but .*0.png is RGB; set data.color"):
        load_dataset("imagefolder", tmp_path, "train")
    converted = load_dataset("imagefolder", tmp_path, "train", color="rgb").images
    assert converted.shape == (4, 3, 2, 2) and converted[3].unique().tolist() == [77]


def test_the_results_file_names_its_radius_as_people_write_it(tmp_path):
    from robustrain.attacks.norms import format_radius

    assert [format_radius(8 / 255), format_radius(0.3), format_radius(0.5, "l2")] == ["8/255", "0.3", "0.5"]


def test_a_report_without_attacks_is_a_well_formed_table(tmp_path):
    from robustrain.evaluate import Suite, evaluate
    from robustrain.models import create_model
    from robustrain.report import write_report

    data = load_dataset("digits", split="test")
    model = create_model("small_cnn", 10, in_channels=1, width=4, mean=data.info.mean, std=data.info.std)
    suite = Suite("corrupted", ("fog",), (1,), 50, (), None, ())
    evaluate(model, data, suite, out=tmp_path / "run" / "eval" / "corrupted.json", progress=False)
    write_report([tmp_path / "run"], tmp_path / "report")
    table = [line for line in (tmp_path / "report" / "report.md").read_text().splitlines() if line.startswith("|")]
    header, rule, row = table[:3]
    assert header.count("|") == rule.count("|") == row.count("|")
    assert "|  |" not in header and "worst case" not in header
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report


@pytest.mark.parametrize("option, expected", [
    ('model.dropout="0.3"', "model.dropout must be a number, got '0.3'"),
    ("model.width=abc", "model.width must be an integer, got 'abc'"),
    ("model.lambdas=[0, x]", "model.lambdas must be a list of which each is a number"),
])
def test_a_model_option_of_the_wrong_type_is_named(tmp_path, capsys, option, expected):
    model = "wrn16_8" if "dropout" in option else "small_cnn"
    code = main(["train", "--data", "digits", "--model", model, "--set", option, "--out", str(tmp_path / "run")])
    one_sentence_error(capsys, code, expected)
    assert not (tmp_path / "run").exists()
