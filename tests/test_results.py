"""The typed results of a run against the results files every earlier run wrote."""

import pytest

from robustrain.results import PLAIN, Cost, Measurement, PGDResult, RunResults

PGD = {"acc": 0.31, "steps": 20, "step_size": 2 / 255, "eps": 8 / 255, "norm": "linf", "restarts": 1, "images": 1000}
COST = {"forward_backward": 5500, "forward_only": 0, "train_time_s": 100.0, "images": 500,
        "images_per_s": 5.0, "forward_backward_per_image": 11.0}


def test_a_plain_runs_file_reads_into_one_measurement_and_writes_back_unchanged():
    on_disk = {"clean_acc": 0.8, "pgd": PGD, "test_images": 10000, "cost": COST,
               "init_cost": {"forward_backward": 100, "forward_only": 0, "train_time_s": 1.0, "images": 100},
               "total_cost": {"forward_backward": 5600, "forward_only": 0, "train_time_s": 101.0, "images": 600}}
    results = RunResults.from_json(on_disk)
    assert not results.conditioned and results.model == Measurement(0.8, PGDResult(**PGD))
    assert results.total_cost == Cost(5600, 0, 101.0, 600)
    assert results.to_json() == on_disk  # the rates are the file's: 500 images in 100 s, 11 passes each


def test_a_conditioned_runs_file_keeps_one_measurement_per_setting():
    on_disk = {"conditions": {"lambda=0": {"clean_acc": 0.9, "pgd": PGD}, "lambda=1": {"clean_acc": 0.7, "pgd": PGD}},
               "test_images": 10000, "cost": COST, "init_cost": None, "total_cost": None}
    results = RunResults.from_json(on_disk)
    assert results.conditioned and list(results.measurements) == ["lambda=0", "lambda=1"]
    assert results.total_cost is None and results.to_json() == on_disk
    with pytest.raises(ValueError, match="a conditioned model has one measurement per setting"):
        results.model


def test_results_written_before_runs_had_init_costs_started_from_scratch():
    results = RunResults.from_json({"clean_acc": 0.5, "pgd": PGD, "test_images": 10, "cost": COST})
    assert results.init_cost == Cost() and results.total_cost == results.cost
    assert list(results.measurements) == [PLAIN]
