"""scripts/fast_at_departures.py: its reading names the departures that move clean accuracy beyond
the seed spread (and none when none does), and a later call's runs join the page's earlier ones."""

import json
from pathlib import Path

import pytest


@pytest.fixture
def departures(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import fast_at_departures

    return fast_at_departures


def run(arm: str, seed: int, clean: float) -> dict:
    return {"arm": arm, "seed": seed, "description": arm, "clean_acc": clean, "pgd_acc": 0.43,
            "train_acc_by_epoch": [0.5], "median_epoch_s": 10.0, "test_acc_by_epoch": [clean], "commit": "abc1234",
            "device": "GPU", "torch": "2.x"}


def test_the_reading_names_an_arm_beyond_twice_the_seed_spread_and_only_then(departures):
    seeds = [run("as-configured", 0, 0.7735), run("as-configured", 1, 0.7711)]  # spread 0.24: threshold 1 point
    still = departures.render({"published": departures.PUBLISHED, "runs": [*seeds, run("grad-clip", 0, 0.7810)]})
    assert "no departure tried moves clean accuracy by more than 1.0 points" in still
    moved = departures.render({"published": departures.PUBLISHED, "runs": [*seeds, run("grad-clip", 0, 0.8150)]})
    # mean of the seeds 77.23%: grad-clip is 4.27 points above it
    assert "grad-clip (+4.27 points) moves clean accuracy by more than 1.0 points" in moved
    assert "2.3 points below the published number" in moved  # 83.8 - 81.5


def test_a_calls_runs_join_the_runs_of_the_pages_source(departures, tmp_path, monkeypatch):
    page = {"published": departures.PUBLISHED, "runs": [run("as-configured", 0, 0.7735)]}
    trained = {k: v for k, v in run("dawnbench-code", 0, 0.79).items() if k not in ("device", "torch", "commit")}
    call = {"device": "H100", "torch": "2.11", "commit": "def5678", "runs": [trained]}
    (tmp_path / "page.json").write_text(json.dumps(page))
    (tmp_path / "call.json").write_text(json.dumps(call))
    written = []
    monkeypatch.setattr(departures, "write_study", lambda study, render, doc, source: written.append(study))
    monkeypatch.setattr("sys.argv", ["fast_at_departures.py", "--render", str(tmp_path / "page.json"),
                                     str(tmp_path / "call.json")])
    departures.main()
    [study] = written
    runs = study["runs"]
    assert [(r["arm"], r["commit"], r["device"]) for r in runs] == [("as-configured", "abc1234", "GPU"),
                                                                     ("dawnbench-code", "def5678", "H100")]
