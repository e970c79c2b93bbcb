"""AutoAttack against numbers computed once from the reference implementation (fra31/auto-attack, run
locally; tests/data/autoattack_reference.json) on models whose gradients are masked, where
AutoAttack's black-box Square decides the result. The settings are bench/autoattack_reference.py's."""

import json
import statistics

import numpy as np
import pytest
import torch

from robustrain.attacks import AutoAttack

from .conftest import load_bench_script, shared_data

bench = load_bench_script("autoattack_reference")
REFERENCE = json.loads(bench.REFERENCE.read_text())


@pytest.mark.slow
def test_autoattack_on_a_gradient_masked_model_agrees_with_the_reference():
    setting = REFERENCE["digits_masked"]
    model, x, y = bench.digits_setting(setting)
    ours = [AutoAttack(setting["eps"]).run(model, x, y, torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    assert all(r.robust_accuracy_after["apgd-ce"] > r.clean_accuracy - 0.01 for r in ours)  # the gradients are masked
    reference = setting["reference_robust_accuracy"]
    spread = statistics.stdev(reference)  # Square's seed-to-seed spread (the gradient attacks break nothing)
    mean = statistics.mean(r.robust_accuracy for r in ours)
    assert abs(mean - statistics.mean(reference)) <= 2 * spread, (mean, reference)


@pytest.mark.slow
def test_autoattacks_square_follows_the_reference_schedule_where_rescaling_would_show():
    setting = REFERENCE["cifar_masked_square"]
    model, x, y = bench.cifar_setting(setting, shared_data("cifar10-exact") / "cifar10_exact_subset.npz")
    square = bench.autoattack_square(setting["eps"])
    ours = bench.robust_share(model, square(model, x, y, torch.Generator().manual_seed(0)), y)
    not_rescaled, rescaled = (float(np.mean(setting[k])) for k in ("reference_not_rescaled", "reference_rescaled"))
    assert rescaled < not_rescaled - 0.06  # the setting tells the two schedules apart
    assert abs(ours - not_rescaled) <= 0.03, (ours, setting)
