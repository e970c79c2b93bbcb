"""The evaluation suite, its metrics and the report, on small models and data."""

import json

import pytest
import torch
from torch import nn

from robustrain import evaluate
from robustrain.corruptions import BENCHMARK, write_corrupted
from robustrain.data.dataset import DatasetInfo, ImageDataset
from robustrain.errors import ConfigError, RobustrainError
from robustrain.evaluate import ALEXNET_ERRORS, Suite, fixed_subset, mce, mean_corruption_error, relative_mce
from robustrain.models import create_model
from robustrain.nn import Condition
from robustrain.report import write_report

TINY = Suite("tiny", ("gaussian_noise", "contrast"), (1, 5), None, ("fgsm", "pgd20"), 24, (0.5,))


def dataset(n=32, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 3, (n,), generator=generator)
    info = DatasetInfo("toy", 3, 3, (size, size), (0.5,) * 3, (0.25,) * 3)
    return ImageDataset(images, labels, ("a", "b", "c"), info, "test")


def model(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", 3, mean=(0.5,) * 3, std=(0.25,) * 3, width=4)


class CountingModel(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


# --- metrics against hand-computed cases -------------------------------------------------------------

def test_mean_corruption_error_is_the_plain_mean_over_corruptions_and_severities():
    errors = {"a": [0.1, 0.2], "b": [0.3, 0.6]}
    assert mean_corruption_error(errors, ["a", "b"]) == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="missing for gaussian_noise"):
        mean_corruption_error(errors)


def test_mce_is_one_for_alexnet_itself_and_scales_with_the_errors():
    alexnet = {n: [e] * 5 for n, e in ALEXNET_ERRORS.items()}
    assert mce(alexnet) == pytest.approx(1.0)
    assert mce({n: [e / 2] * 5 for n, e in ALEXNET_ERRORS.items()}) == pytest.approx(0.5)
    assert ALEXNET_ERRORS["gaussian_noise"] == 0.886428 and ALEXNET_ERRORS["jpeg_compression"] == 0.6065


def test_relative_mce_compares_the_drop_from_clean_error():
    reference = {"a": 0.6, "b": 0.8}
    errors = {"a": [0.3, 0.5], "b": [0.4, 0.4]}  # means 0.4 and 0.4
    # ((0.4 - 0.2) / (0.6 - 0.4) + (0.4 - 0.2) / (0.8 - 0.4)) / 2 = (1 + 0.5) / 2
    assert relative_mce(errors, 0.2, reference, 0.4) == pytest.approx(0.75)


def test_fixed_subset_is_seeded_sorted_and_all_when_large():
    a, b = fixed_subset(100, 10, 3), fixed_subset(100, 10, 3)
    assert torch.equal(a, b) and torch.equal(a, a.sort().values) and len(a.unique()) == 10
    assert not torch.equal(a, fixed_subset(100, 10, 4))
    assert torch.equal(fixed_subset(5, 10, 0), torch.arange(5))


# --- the suite ----------------------------------------------------------------------------------------

def test_suite_numbers_match_direct_counts_and_carry_their_protocol(tmp_path):
    data, net = dataset(), model()
    results = evaluate(net, data, TINY, eps=8 / 255, out=tmp_path / "r.json", progress=False)
    summary = results["summary"]["model"]
    with torch.no_grad():
        expected_clean = (net.eval()(data.images.float() / 255).argmax(1) == data.labels).float().mean().item()
    assert summary["clean_accuracy"] == pytest.approx(expected_clean)
    assert set(summary["corruption_accuracy"]) == {"gaussian_noise", "contrast"}
    assert len(summary["corruption_accuracy"]["contrast"]) == 2
    masks = [torch.tensor([c == "1" for c in results["entries"][f"attack/{a}"]["result"]["robust"]])
             for a in ("fgsm", "pgd20")]
    assert summary["worst_case_accuracy"] == pytest.approx((masks[0] & masks[1]).float().mean().item())
    assert results["entries"]["attack/fgsm"]["protocol"]["step_size"] == 8 / 255
    pgd = results["entries"]["attack/pgd20"]["protocol"]
    assert pgd == {"kind": "attack", "norm": "linf", "eps": 8 / 255, "attack": "pgd", "steps": 20,
                   "step_size": 2 / 255, "restarts": 1, "random_start": "uniform", "loss": "ce", "images": 24,
                   "subset_seed": 0, "seed": 0}
    assert len(results["entries"]["attack/pgd20"]["result"]["robust"]) == 24
    assert [e for e, _ in summary["eps_curve"]] == [4 / 255, 8 / 255]
    assert "mean_corruption_error" not in summary  # only 2 of the 15 corruptions
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == results["summary"]


def test_an_interrupted_evaluation_resumes_and_other_results_are_never_overwritten(tmp_path):
    data, out = dataset(), tmp_path / "r.json"
    counting = CountingModel(model())
    first = evaluate(counting, data, TINY, out=out, progress=False)
    assert counting.calls > 0
    counting.calls = 0
    again = evaluate(counting, data, TINY, out=out, progress=False)
    assert counting.calls == 0 and again["summary"] == first["summary"]
    saved = json.loads(out.read_text())
    del saved["entries"]["corruption/contrast/5"]
    out.write_text(json.dumps(saved))
    evaluate(counting, data, TINY, out=out, progress=False)
    assert 0 < counting.calls <= 2  # one batch of 32 images, after checks that are also cached
    kept = out.read_text()
    with pytest.raises(RobustrainError, match="holds an evaluation with other weights_sha256"):
        evaluate(CountingModel(model(seed=1)), data, TINY, out=out, progress=False)
    with pytest.raises(RobustrainError, match="other threat"):
        evaluate(counting, data, TINY, eps=4 / 255, out=out, progress=False)
    assert out.read_text() == kept


def test_released_files_give_the_same_numbers_as_generated_corruptions(tmp_path):
    data, net = dataset(), model()
    write_corrupted(tmp_path / "c", data.images, data.labels, ["gaussian_noise", "contrast"], seed=0)
    generated = evaluate(net, data, TINY, progress=False)["summary"]["model"]["corruption_accuracy"]
    from_files = evaluate(net, data, TINY, corruptions_dir=tmp_path / "c",
                          progress=False)["summary"]["model"]["corruption_accuracy"]
    assert generated == from_files


def test_every_condition_of_a_conditioned_model_is_evaluated_and_reported(tmp_path):
    class TwoSettings(nn.Module):
        """A conditioned model: route 1 adds a constant to class 0's logit."""

        def __init__(self):
            super().__init__()
            self.net = model()

        def forward(self, x, cond=Condition()):
            logits = self.net(x)
            return logits + torch.tensor([100.0, 0, 0]) * float(cond.route == 1)

        def bind(self, cond):
            return _Bound(self, cond)

        def evaluation_conditions(self):
            return {"plain": Condition(route=0), "biased": Condition(route=1)}

    class _Bound(nn.Module):
        def __init__(self, model, cond):
            super().__init__()
            self.model, self.cond = model, cond

        def forward(self, x):
            return self.model(x, self.cond)

    data = dataset()
    suite = Suite("c", ("contrast",), (1,), None, ("pgd20",), 8, ())
    summary = evaluate(TwoSettings(), data, suite, out=tmp_path / "run" / "eval" / "c.json", progress=False)["summary"]
    assert set(summary) == {"plain", "biased"}
    assert summary["biased"]["clean_accuracy"] == pytest.approx((data.labels == 0).float().mean().item())
    write_report([tmp_path / "run"], tmp_path / "report", suite="c", names=["oat"])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| oat [plain] |" in markdown and "| oat [biased] |" in markdown


def test_gradient_masking_is_flagged_for_a_softmax_model():
    masked = nn.Sequential(model(), nn.Softmax(dim=1))
    summary = evaluate(masked, dataset(), Suite("c", (), (), None, ("pgd20",), 16, ()), progress=False)["summary"]
    fired = {f["name"] for f in summary["model"]["gradient_masking"] if f["fired"]}
    assert "softmax outputs" in fired


def test_bad_suite_settings_are_named():
    with pytest.raises(ConfigError, match="unknown suite 'huge'"):
        evaluate(model(), dataset(), "huge", progress=False)
    with pytest.raises(ConfigError, match="norm 'l1'"):
        evaluate(model(), dataset(), TINY, norm="l1", progress=False)


def test_a_complete_benchmark_gives_the_mean_corruption_error():
    data = dataset(n=8, size=32)
    suite = Suite("b", BENCHMARK, (1,), None, (), None, ())
    summary = evaluate(model(), data, suite, progress=False)["summary"]["model"]
    assert "mean_corruption_error" not in summary  # severity 1 only
    errors = [1 - a[0] for a in summary["corruption_accuracy"].values()]
    assert summary["corruption_error"] == pytest.approx(sum(errors) / 15)


# --- the report ----------------------------------------------------------------------------------------

def test_report_puts_runs_side_by_side_with_plots(tmp_path):
    data = dataset()
    runs = []
    for k in range(2):
        run = tmp_path / f"run{k}"
        evaluate(model(seed=k), data, TINY, out=run / "eval" / "tiny.json", progress=False)
        runs.append(run)
    written = write_report(runs, tmp_path / "report", suite="tiny", names=["first", "second"])
    names = {p.name for p in written}
    assert {"report.md", "report.json", "clean_vs_robust.png", "clean_vs_corruption.png", "corruption_errors.png",
            "accuracy_vs_eps.png"} <= names
    markdown = (tmp_path / "report" / "report.md").read_text()
    clean = json.loads((runs[1] / "eval" / "tiny.json").read_text())["summary"]["model"]["clean_accuracy"]
    assert "| second | " + f"{100 * clean:.2f}" in markdown
    assert "pgd20: L-inf, eps 8/255, 20 step(s) of 2/255, 1 restart(s), uniform random start" in markdown


def test_report_on_an_unevaluated_run_says_what_to_run(tmp_path):
    with pytest.raises(RobustrainError, match="robustrain eval"):
        write_report([tmp_path], tmp_path / "out", suite="standard")


def test_only_the_imagenet_table_gets_the_alexnet_normalized_mce():
    suite = Suite("i", BENCHMARK, (1, 2, 3, 4, 5), None, (), None, ())
    tiny = evaluate(model(), dataset(n=2, size=40), suite, progress=False)  # up to 64x64: Tiny-ImageNet-C's table
    assert "mce" not in tiny["summary"]["model"] and "mean_corruption_error" in tiny["summary"]["model"]
    assert {e["protocol"]["generated"]["table"] for e in tiny["entries"].values()
            if e["protocol"]["kind"] == "corruption"} == {"tinyimagenet"}
    data = dataset(n=2, size=40)
    result = evaluate(model(), data, suite, table="imagenet", progress=False)
    assert {e["protocol"]["generated"]["table"] for e in result["entries"].values()
            if e["protocol"]["kind"] == "corruption"} == {"imagenet"}
    summary = result["summary"]["model"]
    errors = {n: [1 - a for a in accs] for n, accs in summary["corruption_accuracy"].items()}
    by_hand = sum(sum(errors[n]) / 5 / ALEXNET_ERRORS[n] for n in BENCHMARK) / 15
    assert summary["mce"] == pytest.approx(by_hand)
    assert summary["mean_corruption_error"] == pytest.approx(sum(sum(e) for e in errors.values()) / 75)
