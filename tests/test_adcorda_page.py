"""scripts/adcorda.py renders its page from run folders: without them (a fresh checkout) `--no-train`
must leave the committed page and JSON as they are rather than rewrite them empty."""

import json
import sys
from pathlib import Path

import pytest


def test_rendering_without_the_run_folders_leaves_the_committed_page(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import adcorda

    doc, source = tmp_path / "adcorda.md", tmp_path / "adcorda.json"
    committed = {"arms": {"finetune-e3": {"0": {"run": "runs/adcorda-study/finetune-e3-s0", "clean_acc": 0.77}}}}
    source.write_text(json.dumps(committed))
    doc.write_text("the committed page")
    monkeypatch.setattr(adcorda, "DOC", doc)
    monkeypatch.setattr(adcorda, "SOURCE", source)
    monkeypatch.setattr(adcorda, "ensure_runs", lambda specs, train, jobs: {spec.run: None for spec in specs})
    monkeypatch.setattr(sys, "argv", ["adcorda.py", "--no-train"])
    with pytest.raises(SystemExit, match=r"1 run that adcorda.json holds \(runs/adcorda-study/finetune-e3-s0\) is "
                                         "not finished in runs/"):
        adcorda.main()
    assert doc.read_text() == "the committed page" and json.loads(source.read_text()) == committed
