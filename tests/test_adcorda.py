"""AdCorDA: the correction attack, CORAL, weight quantization, the refinement run, `robustrain quantize`."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from robustrain.attacks import Correct
from robustrain.cli import main
from robustrain.config import from_dict
from robustrain.methods.adcorda import coral_loss
from robustrain.models import create_model
from robustrain.nn.quantize import channel_scales, quantize_weight
from robustrain.train import RunConfig, train
from robustrain.train.load import load_run
from robustrain.train.quantize import quantize_layers


class Linear2(nn.Module):
    """logits = W x.flatten() + b with two classes: the L-inf distance to the boundary is closed-form."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.w, self.b = nn.Parameter(w), nn.Parameter(b)

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b


def test_correction_stops_at_the_first_success_after_the_closed_form_number_of_steps():
    torch.manual_seed(0)
    w = torch.randn(2, 12)
    l1 = (w[0] - w[1]).abs().sum().item()
    x = torch.full((1, 3, 2, 2), 0.5)
    # Class 1 wins at x by the margin of an L-inf distance 0.013 to the boundary.
    b = torch.tensor([0.0, 0.013 * l1 - ((w[1] - w[0]) @ x.flatten()).item()])
    model = Linear2(w, b)
    margin = (model(x)[0, 1] - model(x)[0, 0]).item()
    assert margin == pytest.approx(0.013 * l1, rel=1e-4)
    alpha = 0.002
    needed = math.floor(margin / (alpha * l1)) + 1  # each step closes alpha * ||w0 - w1||_1 of the margin
    y = torch.tensor([0])
    result = Correct(0.05, alpha, 50).run(model, x, y)
    corrected = result.adversarial
    assert not result.fooled.item() and model(corrected).argmax(1).item() == 0
    assert (corrected - x).abs().max().item() == pytest.approx(needed * alpha, rel=1e-4)
    # An eps below the closed-form distance m / ||w0 - w1||_1 cannot correct it.
    assert Correct(0.9 * margin / l1, alpha, 200).run(model, x, y).fooled.item()
    # An image already classified correctly is returned as it is.
    unchanged = Correct(0.05, alpha, 50).run(model, x, torch.tensor([1]))
    assert not unchanged.fooled.item() and torch.equal(unchanged.adversarial, x)


def test_coral_matches_hand_computation():
    source = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # covariance [[2, 0], [0, 0]]
    target = torch.tensor([[0.0, 0.0], [0.0, 2.0]])  # covariance [[0, 0], [0, 2]]
    assert coral_loss(source, target).item() == pytest.approx((4 + 4) / (4 * 2 ** 2))
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(16, 5)), rng.normal(2, 3, size=(20, 5))
    expected = ((np.cov(s, rowvar=False) - np.cov(t, rowvar=False)) ** 2).sum() / (4 * 25)
    assert coral_loss(torch.tensor(s), torch.tensor(t)).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("bits", range(2, 9))
def test_quantization_error_is_at_most_half_a_step_and_levels_are_symmetric(bits):
    torch.manual_seed(bits)
    weight = torch.randn(6, 4, 3, 3) * torch.rand(6, 1, 1, 1)
    quantized = quantize_weight(weight, bits)
    scale = channel_scales(weight, bits)
    assert ((weight - quantized).abs() <= scale / 2 + 1e-6).all()
    levels = 2 ** (bits - 1) - 1
    steps = quantized / scale
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= levels + 1e-4
    for c in range(6):
        assert len(torch.unique(steps[c].round())) <= 2 * levels + 1
        assert quantized[c].abs().max() == pytest.approx(weight[c].abs().max().item(), rel=1e-6)
    assert torch.allclose(quantize_weight(quantized, bits), quantized, atol=1e-6)  # idempotent


def test_fake_quant_forward_equals_the_quantized_model_and_gradients_pass_straight_through():
    torch.manual_seed(0)
    fake = create_model("small_cnn", 10, width=8, weight_bits=3)
    plain = create_model("small_cnn", 10, width=8)
    plain.load_state_dict(fake.state_dict())
    quantize_layers(plain, 3)
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(fake(x), plain(x), atol=1e-6)
    nn.functional.cross_entropy(fake(x), y).backward()
    nn.functional.cross_entropy(plain(x), y).backward()
    for (name, a), (_, b) in zip(fake.named_parameters(), plain.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    with pytest.raises(ValueError, match="from 2 to 8"):
        create_model("small_cnn", 10, weight_bits=1)


def digits_run(out, method, epochs, **extra):
    return {"data": {"name": "digits", "augment": "none"}, "model": {"name": "small_cnn", "width": 4},
            "method": method, "threat": {"eps": 0.1}, "optim": {"lr": 0.05}, "eval": {"pgd_steps": 2, "pgd_limit": 50},
            "epochs": epochs, "batch_size": 64, "device": "cpu", "out": str(out), **extra}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adcorda") / "standard"
    train(from_dict(RunConfig, digits_run(folder, {"name": "standard"}, 1)), progress=False)
    return folder


def test_refinement_corrects_the_misclassified_training_images_and_adapts(pretrained, tmp_path):
    source = load_run(pretrained)
    train_set = __import__("robustrain").load_dataset("digits", split="train")
    with torch.no_grad():
        wrong = source.model.eval()(train_set.images.float() / 255).argmax(1) != train_set.labels
    out = tmp_path / "refined"
    config = digits_run(out, {"name": "adcorda", "correction_eps": 0.1, "correction_step": 2 / 255,
                              "correction_steps": 20, "coral_weight": 1.0}, 1, init={"path": str(pretrained)})
    results = train(from_dict(RunConfig, config), progress=False)
    counts = json.loads((out / "corrected" / "counts.json").read_text())
    assert counts["misclassified"] == int(wrong.sum()) > 0
    assert counts["corrected"] + counts["failed"] == counts["misclassified"] and counts["corrected"] > 0
    saved = load_file(out / "corrected" / "images.safetensors")
    assert len(saved["labels"]) == len(train_set) == counts["corrected_set_images"]  # failures kept
    changed = (saved["images"] != train_set.images).flatten(1).any(1)
    assert int(changed.sum()) == counts["corrected"] and bool((changed <= wrong).all())
    assert (saved["images"].float() - train_set.images.float()).abs().max() <= round(0.1 * 255)
    with torch.no_grad():
        now = source.model(saved["images"][changed].float() / 255).argmax(1)
    assert torch.equal(now, saved["labels"][changed])  # every stored correction fools the initial model
    assert results.cost.forward_backward > len(train_set)  # the correction is counted in the run's cost
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["coral"] >= 0 and "source_loss" in metrics


def test_quantize_command_writes_a_quantized_run_whose_evaluation_names_its_bits(pretrained, tmp_path, capsys):
    out = tmp_path / "q4"
    assert main(["quantize", str(pretrained), "--bits", "4", "--out", str(out), "--device", "cpu"]) == 0
    run = load_run(out)
    assert run.model.weight_bits == 4
    weight = run.model.layers[0].conv.weight
    assert torch.allclose(quantize_weight(weight, 4), weight, atol=1e-6)  # stored already quantized
    results = json.loads((out / "results.json").read_text())
    assert results["init_cost"]["forward_backward"] > 0 and results["cost"]["forward_backward"] == 0
    assert main(["eval", str(out), "--suite", "quick", "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((out / "eval" / "quick.json").read_text())["header"]["weight_bits"] == 4
    capsys.readouterr()
    assert main(["quantize", str(pretrained), "--bits", "9", "--out", str(tmp_path / "q9")]) == 2
    assert "from 2 to 8, got 9" in capsys.readouterr().err and not (tmp_path / "q9").exists()
    assert main(["quantize", str(pretrained), "--bits", "4", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_partial_correction_picks_a_fixed_share_and_keeping_originals_adds_the_corrections(pretrained):
    from robustrain.methods.adcorda import AdCorDAOptions, corrected_set

    model = load_run(pretrained).model
    train_set = __import__("robustrain").load_dataset("digits", split="train")
    attack = Correct(0.1, 2 / 255, 20)
    full_images, _, full = corrected_set(model, train_set, attack, AdCorDAOptions(), torch.device("cpu"))
    half_images, _, half = corrected_set(model, train_set, attack, AdCorDAOptions(correct_fraction=0.5,
                                                                                  correction_batch_size=97),
                                         torch.device("cpu"))
    assert half["misclassified"] == full["misclassified"] > 20
    # A binomial share of the misclassified images: within 4 standard deviations of one half.
    assert abs(half["selected"] - full["misclassified"] / 2) <= 4 * math.sqrt(full["misclassified"] / 4)
    changed_half = (half_images != train_set.images).flatten(1).any(1)
    changed_full = (full_images != train_set.images).flatten(1).any(1)
    assert int(changed_half.sum()) == half["corrected"] and bool((changed_half <= changed_full).all())
    # The same share is picked whatever the batch size: its corrections are the full run's.
    assert torch.equal(half_images[changed_half], full_images[changed_half])
    both, both_labels, counts = corrected_set(model, train_set, attack, AdCorDAOptions(keep_originals=True),
                                              torch.device("cpu"))
    n = len(train_set)
    assert counts["corrected_set_images"] == len(both) == n + full["corrected"]
    assert torch.equal(both[:n], train_set.images) and torch.equal(both_labels[:n], train_set.labels)
    assert torch.equal(both[n:], full_images[changed_full])
    assert torch.equal(both_labels[n:], train_set.labels[changed_full])
    with pytest.raises(Exception, match="correct_fraction must be in"):
        AdCorDAOptions(correct_fraction=0)


def test_coral_on_logits_and_a_balanced_weight_measured_once():
    from robustrain.data import load_dataset
    from robustrain.methods import StepContext, Threat, create_method
    from robustrain.methods.adcorda import AdCorDAOptions, adaptation_terms

    torch.manual_seed(0)
    model = create_model("small_cnn", 10, width=4)
    xs, xt = torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16) * 0.5
    ys, yt = torch.randint(10, (8,)), torch.randint(10, (8,))
    ce = nn.functional.cross_entropy
    on_logits = adaptation_terms(model, xs, ys, xt, yt, AdCorDAOptions(coral_on="logits"), ce)
    expected = ((np.cov(model(xs).detach().numpy(), rowvar=False)
                 - np.cov(model(xt).detach().numpy(), rowvar=False)) ** 2).sum() / (4 * 10 ** 2)
    assert on_logits.coral.item() == pytest.approx(expected, rel=1e-4)
    assert on_logits.total(2.0).item() == pytest.approx(ce(model(xs), ys).item() + 2 * expected, rel=1e-4)
    labelled = adaptation_terms(model, xs, ys, xt, yt, AdCorDAOptions(target_labels=True), ce)
    assert labelled.total(0.0).item() == pytest.approx(ce(model(xs), ys).item() + ce(model(xt), yt).item(), rel=1e-5)

    # coral_balance: the weight makes the CORAL term half the CE term on the first step, then stays.
    digits = load_dataset("digits", split="train")
    model = create_model("small_cnn", 10, width=4, in_channels=1, mean=(0.5,), std=(0.25,))
    method = create_method("adcorda", {"coral_on": "logits", "coral_balance": True, "coral_weight": 0.5}, Threat())
    method.target = digits
    ctx = StepContext(torch.Generator().manual_seed(0))
    x, y = digits.images[:32].float() / 255, digits.labels[:32]
    first = method.step(model, x, y, ctx)
    weight = first.logs["coral_weight"].item()
    assert weight * first.logs["coral"].item() == pytest.approx(0.5 * first.logs["source_loss"].item(), rel=1e-4)
    assert first.loss.item() == pytest.approx(1.5 * first.logs["source_loss"].item(), rel=1e-4)
    ctx.step = 1  # as the trainer counts the steps taken
    second = method.step(model, digits.images[32:64].float() / 255, digits.labels[32:64], ctx)
    assert second.logs["coral_weight"].item() == weight and method.state_dict()["balanced_weight"].item() == weight
    assert second.loss.item() == pytest.approx(
        second.logs["source_loss"].item() + weight * second.logs["coral"].item(), rel=1e-4)
