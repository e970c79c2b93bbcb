"""Our corruption generator against numbers computed once from the reference generator
(make_cifar_c.py, run locally; bench/fidelity/cifar10c_reference.json) on the 1,017 byte-exact
CIFAR-10 test images: what each corruption does to them and what it does to a fixed model."""

import json

import numpy as np
import pytest

from robustrain.corruptions import blur
from robustrain.corruptions.fidelity import (ChangeStats, Reference, change_statistics, check_all, check_changes,
                                             level_tolerance, model_error)

from .conftest import load_bench_script, shared_data

bench = load_bench_script("fidelity")


@pytest.fixture(scope="module")
def reference():
    return Reference.from_json(json.loads(bench.REFERENCE.read_text()))


@pytest.fixture(scope="module")
def exact_images():
    return bench.exact_test_images(shared_data("cifar10-exact") / "cifar10_exact_subset.npz")


def test_change_statistics_by_hand():
    clean = np.zeros((2, 2, 2, 3), np.uint8)
    corrupted = clean.copy()
    corrupted[0] = 4          # image 0: every value +4
    corrupted[1, 0, 0] = 250  # image 1: 3 of its 12 values +250
    stats = change_statistics(clean, corrupted)
    assert stats.mean_abs_change == pytest.approx((4 + 250 * 3 / 12) / 2)
    assert stats.image_spread == pytest.approx(abs(4 - 62.5) / 2)
    assert stats.mean_change == stats.mean_abs_change


def test_a_deterministic_corruption_gets_no_noise_allowance():
    same = [ChangeStats(5.0, 2.0, 1.0)] * 2
    close = check_changes("x", 1, ChangeStats(5.05, 2.0, 1.0), same, 1000)
    far = check_changes("x", 1, ChangeStats(5.5, 2.0, 1.0), same, 1000)
    assert all(c.passed for c in close) and not far[0].passed
    random = [ChangeStats(5.0, 2.0, 1.0), ChangeStats(5.1, 2.0, 1.0)]
    assert check_changes("x", 1, ChangeStats(5.5, 2.0, 1.0), random, 1000)[0].tolerance == level_tolerance(2.0, 1000)


def test_the_reference_numbers_describe_the_named_images(reference, exact_images):
    clean, _ = exact_images
    assert reference.image_count == len(clean) == 1017 and len(reference.seeds) == 2
    assert len(reference.changes) == 95 and set(reference.changes) == set(reference.model_errors)
    assert model_error(bench.fixed_model(), clean, exact_images[1]) == pytest.approx(reference.clean_error)


@pytest.mark.slow
def test_every_corruption_and_severity_matches_the_reference_generator(reference, exact_images):
    clean, labels = exact_images
    changes, errors = bench.measure(clean, labels, bench.our_sets(clean), bench.fixed_model())
    failed = [c for c in check_all(reference, changes, errors) if not c.passed]
    assert not failed, "\n".join(f"{c.corruption}/{c.severity} {c.statistic}: {c.ours:.4f} vs {c.reference:.4f} "
                                 f"± {c.tolerance:.4f}" for c in failed)


@pytest.mark.slow
def test_the_check_fails_on_a_glass_blur_that_swaps_pixels(reference, exact_images, monkeypatch):
    clean, labels = exact_images
    monkeypatch.setattr(blur, "glass_walk", bench.exchanging_glass_walk)
    changes, errors = bench.measure(clean, labels, bench.our_sets(clean, ("glass_blur",)), bench.fixed_model())
    checks = [c for c in check_all(reference, changes, errors) if c.statistic == "mean_abs_change"]
    assert len(checks) == 5 and not any(c.passed for c in checks)


@pytest.mark.slow
def test_the_tiny_imagenet_table_matches_make_tinyimagenet_c_at_64_pixels():
    # 500 exact test images enlarged to 64x64: the table, glass blur's wider walk, the 64-wide fog map
    # and frost textures shrunk by 0.3 against the reference's change statistics (no model here)
    benchmark = bench.BENCHMARKS["tinyimagenetc"]
    reference = Reference.from_json(json.loads(benchmark.reference.read_text()))
    clean, labels = benchmark.images(shared_data("cifar10-exact") / "cifar10_exact_subset.npz")
    assert reference.table == "tinyimagenet" and reference.image_count == len(clean) == 500
    changes, errors = bench.measure(clean, labels, bench.our_sets(clean, table="tinyimagenet"), None)
    checks = check_all(reference, changes, errors)
    failed = [c for c in checks if not c.passed]
    assert len(checks) == 190 and not failed, failed
