"""AutoAttack against numbers computed once from the reference implementation (fra31/auto-attack, run
locally; tests/data/autoattack_reference.json) on models whose gradients are masked, where
AutoAttack's black-box Square decides the result."""

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustrain.attacks import AutoAttack
from robustrain.data import load_dataset

from .conftest import load_bench_script, shared_data, train_digits_model

REFERENCE = json.loads((Path(__file__).parent / "data" / "autoattack_reference.json").read_text())


class RoundedInput(nn.Module):
    """Rounds its input to `levels` + 1 grey levels: zero input gradient almost everywhere."""

    def __init__(self, model: nn.Module, levels: int):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, images):
        return self.model((images * self.levels).round() / self.levels)


def robust_share(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.slow
def test_autoattack_on_a_gradient_masked_model_agrees_with_the_reference():
    setting = REFERENCE["digits_masked"]
    model = RoundedInput(train_digits_model(), setting["levels"]).eval()
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    x = torch.cat([train.images, test.images])[:setting["images"]].float() / 255
    y = torch.cat([train.labels, test.labels])[:setting["images"]]
    ours = [AutoAttack(setting["eps"]).run(model, x, y, torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    assert all(r.robust_accuracy_after["apgd-ce"] > r.clean_accuracy - 0.01 for r in ours)  # the gradients are masked
    reference = setting["reference_robust_accuracy"]
    spread = statistics.stdev(reference)  # Square's seed-to-seed spread (the gradient attacks break nothing)
    mean = statistics.mean(r.robust_accuracy for r in ours)
    assert abs(mean - statistics.mean(reference)) <= 2 * spread, (mean, reference)


@pytest.mark.slow
def test_autoattacks_square_follows_the_reference_schedule_where_rescaling_would_show():
    setting = REFERENCE["cifar_masked_square"]
    bench = load_bench_script("fidelity")
    clean, labels = bench.exact_test_images(shared_data("cifar10-exact") / "cifar10_exact_subset.npz")
    model = RoundedInput(bench.fixed_model(), setting["levels"]).eval()
    x = torch.from_numpy(clean[:setting["images"]]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(labels[:setting["images"]])
    square = dict(AutoAttack(setting["eps"]).attacks)["square"]
    ours = robust_share(model, square(model, x, y, torch.Generator().manual_seed(0)), y)
    not_rescaled, rescaled = (float(np.mean(setting[k])) for k in ("reference_not_rescaled", "reference_rescaled"))
    assert rescaled < not_rescaled - 0.06  # the setting tells the two schedules apart
    assert abs(ours - not_rescaled) <= 0.03, (ours, setting)
