"""The GPU benchmark's tooling, checked on a CPU: bench/gpu.py runs every stage in its tiny mode
and writes its rows; bench/gpu_report.py states the issue's goals from rows as their thresholds
say; bench/folder_archive.py gives back the same files; bench/process_group.py stops a stage with
the processes it started."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import load_bench_script

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def image_folder(root: Path, per_class: dict[str, int]) -> Path:
    """A CIFAR-10 layout of random 32x32 PNGs: root/<split>/<class>/<k>.png."""
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{k}.png")
    return root


@pytest.mark.slow
def test_every_stage_runs_in_the_tiny_mode_and_writes_its_rows(tmp_path):
    data = image_folder(tmp_path / "cifar10", {"train": 8, "test": 2})
    out = tmp_path / "out"
    subprocess.run([sys.executable, "bench/gpu.py", "--tiny", "--out", str(out), "--data-root", str(data),
                    "--device", "cpu", "--commit", "abc1234"], cwd=ROOT, check=True, capture_output=True)
    record = json.loads((out / "gpu-speed.json").read_text())
    assert record["commit"] == "abc1234" and record["torch"]
    rows = {row["what"]: row for row in record["rows"] if row["stage"] != "profile"}
    stages = {row["stage"] for row in record["rows"]}
    assert stages == {"steps", "compile", "profile", "corruptions", "trainer", "corrupt_files", "suite"}
    assert rows["robustrain corrupt 2 x5 20 images files"]["seconds"] > 0
    [suite] = [row for row in record["rows"] if row["stage"] == "suite"]
    assert "no finished run to evaluate" in suite["not_measured"]  # no --model-run: said, not skipped silently
    robustrain = rows["pgd10_at resnet20 b4 fp32 cl robustrain"]
    assert robustrain["images_per_s"] > 0 and robustrain["seconds_per_epoch"] == pytest.approx(
        50_000 / robustrain["images_per_s"])
    assert rows["pgd10_at resnet20 b4 fp32 cl plain loop"]["vs_robustrain"] > 0
    assert rows["pgd10_at resnet20 b4 fp32 cl robustrain --compile"]["first_step_s"] > 0
    assert rows["pgd10_at resnet20 b4 fp32 cl robustrain --compile reduce-overhead"]["first_step_s"] > 0
    assert [row["what"] for row in record["rows"] if row["stage"] == "trainer"] == [
        "pgd10_at resnet20 b32 fp32 cl robustrain train", "fast_at resnet20 b32 fp32 cl robustrain train",
        "fast_at resnet20 b32 fp32 cl robustrain train streamed"]  # nothing compiled in the tiny mode
    assert all(0 <= row["test_acc"] <= 1 for row in record["rows"] if row["stage"] == "trainer")
    profile = (out / "gpu-profile.txt").read_text()
    assert profile.count("Self CPU time total") == 2 and "plain loop: 1 steps" in profile
    assert [row["host_syncs_per_step"] for row in record["rows"] if row["stage"] == "profile"] == [None, None]


@pytest.mark.slow
def test_the_lease_script_runs_every_stage_in_the_tiny_mode(tmp_path):
    data = image_folder(tmp_path / "cifar10", {"train": 30, "test": 4})
    out = tmp_path / "out"
    # bench/gpu.py's other stages run in the test above; here the one that needs the repro stage's run
    subprocess.run([sys.executable, "bench/lease.py", "--tiny", "--out", str(out), "--data", str(data),
                    "--commit", "abc1234", "--wheels", str(tmp_path / "no-wheels"), "--scratch", str(tmp_path / "s"),
                    "--bench-stages", "suite"],
                   cwd=ROOT, check=True, capture_output=True)
    log = (out / "lease.log").read_text()
    sections = {name: log.split(f"===== {name}: ")[1] for name in ("hot_path", "repro", "gpu_bench", "departures",
                                                                   "decode", "studies", "cpu_studies")}  # in order
    assert "passed" in sections["hot_path"]
    # the CPU studies: training stopped at the tiny budget (as a lease's would be), then what finished rendered
    assert "oat: training exit" in sections["cpu_studies"] and "oat: render exit 0" in sections["cpu_studies"]
    assert "# OAT at CPU size on CIFAR-10" in sections["cpu_studies"]
    assert "cache:" in sections["decode"] and "stream:" in sections["decode"] and "| 2 |" in sections["decode"]
    entries = json.loads((out / "reproductions.json").read_text())
    assert [e["name"] for e in entries] == ["fast_at_cifar10", "aft_vs_pgd_at"]  # the studies stage's beside repro's
    assert {e["verdict"] for e in entries} == {"not comparable"}
    speed = json.loads((out / "gpu-speed.json").read_text())
    assert speed["commit"] == "abc1234"
    suite = [row for row in speed["rows"] if row["stage"] == "suite"]  # on the model the repro stage trained
    assert [row["what"].split()[0] for row in suite] == ["quick", "bf16"] and suite[0]["seconds"] > 0
    departures = json.loads((out / "fast-at-departures-call.json").read_text())
    arms = load_bench_script("lease").DEPARTURE_ARMS
    planned = {(arm, int(seed)) for arm, _, seed in (a.partition(":") for a in arms)}
    assert {(run["arm"], run["seed"]) for run in departures["runs"]} == planned
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back


def test_the_lease_names_every_method_against_baseline_experiment_of_the_registry():
    from robustrain.repro import REPRODUCTIONS, StudyExperiment

    studies = [e.name for e in REPRODUCTIONS.values() if isinstance(e, StudyExperiment)]
    assert sorted(load_bench_script("lease").STUDIES) == sorted(studies)


def speed_record(rows: list[dict]) -> dict:
    return {"device": "GPU", "torch": "2.x", "commit": "abc1234", "command": "python bench/gpu.py", "rows": rows}


def test_goals_are_met_or_missed_by_their_thresholds(tmp_path):
    report = load_bench_script("gpu_report")
    path = tmp_path / "gpu-speed.json"
    path.write_text(json.dumps(speed_record([
        {"what": "pgd10_at preact_resnet18 b512 bf16 cl robustrain train", "images_per_s": 5500.0,
         "seconds_per_epoch": 9.5},
        {"what": "fast_at preact_resnet18 b128 bf16 cl robustrain train", "images_per_s": 6000.0,
         "seconds_per_epoch": 4.5},
        {"what": "pgd10_at preact_resnet18 b512 bf16 cl plain loop", "images_per_s": 5000.0, "vs_robustrain": 0.94},
        {"what": "pgd10_at preact_resnet18 b512 bf16 cl torchattacks", "images_per_s": 2000.0, "vs_robustrain": 2.5},
    ])))
    verdicts = {goal: verdict for goal, verdict, _ in report.goals(report.by_what(report.merged([path])["rows"]))}
    assert verdicts["PGD-10 AT, PreAct-ResNet-18, batch 512, bf16: at most 10 s per epoch"] == "met"
    assert verdicts["fast AT, 15 epochs of PreAct-ResNet-18: under 60 s"] == "missed"  # 15 x 4.5 s = 67.5 s
    assert verdicts["pgd10_at preact_resnet18 b512 bf16 cl: at least 0.95x a plain PyTorch loop in the same "
                    "precision and layout"] == "missed"
    assert verdicts["pgd10_at preact_resnet18 b512 bf16 cl: at least 2x torchattacks"] == "met"
    assert verdicts["standard suite of a PreAct-ResNet-18: under 3 minutes"] == "not measured"


def test_fast_at_time_counts_the_first_epoch_once_and_the_steady_one_fourteen_times_in_the_faster_precision():
    report = load_bench_script("gpu_report")
    fast = {"what": "fast_at preact_resnet18 b128 bf16 cl robustrain train", "images_per_s": 1.0,
            "seconds_per_epoch": 3.5, "first_epoch_s": 12.0}
    (goal,) = [g for g in report.goals(report.by_what([fast])) if g[0].startswith("fast AT")]
    assert goal[1] == "missed" and "about 61 s" in goal[2]  # 12 + 14 x 3.5
    (goal,) = [g for g in report.goals(report.by_what([fast | {"first_epoch_s": 10.0}])) if g[0].startswith("fast")]
    assert goal[1] == "met"  # 10 + 49 = 59 s
    fp32 = fast | {"what": "fast_at preact_resnet18 b128 fp32 cl robustrain train", "seconds_per_epoch": 3.0}
    (goal,) = [g for g in report.goals(report.by_what([fast, fp32])) if g[0].startswith("fast")]
    assert goal[1] == "met" and goal[2].startswith("fp32") and "bf16: about 61 s" in goal[2]  # 12 + 42 = 54 s


def test_the_suite_precision_and_corruption_file_goals_follow_their_rows():
    report = load_bench_script("gpu_report")
    suite_goal = "standard suite of a PreAct-ResNet-18: under 3 minutes"
    precision_goal = "bf16 within 0.3 points of fp32 (clean and PGD-20, 1,000 images)"
    files_goal = "the 19 x 5 CIFAR-10-C from 10,000 test images: under 60 s with writing"

    def verdicts(suite_s: float, bf16_pgd: float, files_s: float) -> dict:
        rows = [{"stage": "suite", "what": "standard suite preact_resnet18 eval", "images": 10_000, "seconds": suite_s},
                {"stage": "suite", "what": "bf16 against fp32 preact_resnet18 1000 images", "gap_points":
                 100 * abs(bf16_pgd - 0.43), "accuracies": {"fp32": {"clean": 0.77, "pgd20": 0.43},
                                                            "bf16": {"clean": 0.77, "pgd20": bf16_pgd}}},
                {"stage": "corrupt_files", "what": "robustrain corrupt 19 x5 10000 images files", "seconds": files_s,
                 "images_per_s": 1.0},
                {"stage": "suite", "what": "standard suite", "not_measured": "no run"}]
        return {goal: verdict for goal, verdict, _ in report.goals(report.by_what(rows))}

    met = verdicts(suite_s=170, bf16_pgd=0.432, files_s=55)
    assert (met[suite_goal], met[precision_goal], met[files_goal]) == ("met", "met", "met")
    missed = verdicts(suite_s=190, bf16_pgd=0.425, files_s=65)
    assert (missed[suite_goal], missed[precision_goal], missed[files_goal]) == ("missed", "missed", "missed")
    assert "robustrain corrupt" not in report.render({"device": "GPU", "torch": "2.x", "commit": "abc1234",
                                                      "commands": [], "rows": [{"stage": "corrupt_files",
                                                      "what": "robustrain corrupt 19 x5 10000 images files",
                                                      "seconds": 50.0, "images_per_s": 1.0}]}).split("## Goals")[0]


def test_files_of_another_commit_are_not_one_measurement(tmp_path):
    report = load_bench_script("gpu_report")
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(speed_record([])))
    second.write_text(json.dumps(speed_record([]) | {"commit": "def5678"}))
    with pytest.raises(SystemExit, match="differ in commit"):
        report.merged([first, second])


def test_a_lease_of_several_commits_keeps_each_rows_commit_when_asked(tmp_path):
    report = load_bench_script("gpu_report")
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(speed_record([{"what": "x", "images_per_s": 1.0}])))
    second.write_text(json.dumps(speed_record([{"what": "y", "images_per_s": 2.0}]) | {"commit": "def5678"}))
    study = report.merged([first, second], mixed_commits=True)
    assert study["commit"] == "abc1234, def5678"
    assert [(row["what"], row["commit"]) for row in study["rows"]] == [("x", "abc1234"), ("y", "def5678")]
    assert "each row's commit is in gpu-speed.json" in report.render(study)
    (tmp_path / "page.json").write_text(json.dumps(study))
    assert report.merged([tmp_path / "page.json"], mixed_commits=True)["commands"] == study["commands"]
    other = speed_record([]) | {"torch": "3.0", "commit": "def5678"}
    second.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="differ in torch"):
        report.merged([first, second], mixed_commits=True)


def test_a_folder_archive_unpacks_to_the_same_files(tmp_path):
    archive = load_bench_script("folder_archive")
    source = image_folder(tmp_path / "source", {"train": 2})
    (source / "index.csv").write_text("a,b\n")
    assert archive.pack(source, tmp_path / "packed.npz") == 21
    assert archive.unpack(tmp_path / "packed.npz", tmp_path / "copy") == 21
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "copy") for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert all((source / f).read_bytes() == (tmp_path / "copy" / f).read_bytes() for f in files)


def test_the_precision_gap_is_the_larger_of_the_clean_and_robust_differences(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # peers imports its neighbours
    peers = load_bench_script("peers")
    accuracies = {"fp32": {"clean": 0.800, "pgd20": 0.400}, "bf16": {"clean": 0.790, "pgd20": 0.425}}
    assert peers.precision_gap_points(accuracies) == pytest.approx(2.5)
    accuracies["bf16"]["pgd20"] = 0.398
    assert peers.precision_gap_points(accuracies) == pytest.approx(1.0)


def test_the_two_pgd_steps_dispatch_nearly_the_same_operators_and_differ_in_where_the_start_is_drawn(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # step_ops imports gpu, which imports its neighbours
    counts = load_bench_script("step_ops").step_operators("resnet20")
    ours, plain = counts["robustrain"], counts["plain loop"]
    assert abs(sum(ours.values()) - sum(plain.values())) < 0.05 * sum(plain.values())
    assert (ours["aten.rand"], ours["aten.uniform_"]) == (1, 0)  # on a CPU generator, then copied
    assert (plain["aten.rand"], plain["aten.uniform_"]) == (0, 1)  # on the batch's device


def test_an_earlier_measurement_on_another_device_is_not_a_before():
    report = load_bench_script("gpu_report")
    before = speed_record([])
    assert report.same_device(before, "GPU") is before
    with pytest.raises(SystemExit, match="measured on GPU, this measurement on NVIDIA H200"):
        report.same_device(before, "NVIDIA H200")


def test_the_cuda_graphs_section_compares_the_graph_run_with_the_eager_one_at_its_larger_peak():
    report = load_bench_script("gpu_report")
    run = "fast_at preact_resnet18 b128 bf16 cl robustrain train"
    step = "pgd10_at preact_resnet18 b512 bf16 cl robustrain --compile"
    now = {run: {"test_acc": 0.5012, "seconds_per_epoch": 9.0, "peak_memory_mb": 900.0,
                 "first_epoch_peak_memory_mb": 1000.0},
           run + " compile reduce-overhead": {"test_acc": 0.4987, "seconds_per_epoch": 6.0, "peak_memory_mb": 2500.0,
                                              "first_epoch_peak_memory_mb": 2000.0},
           step: {"first_step_peak_memory_mb": 1500.0},
           step + " reduce-overhead": {"first_step_peak_memory_mb": 3100.0}}
    text = "\n".join(report.cuda_graphs(now))
    assert "default 1500 MiB, reduce-overhead 3100 MiB" in text
    assert "test accuracy 49.87% against 50.12% eager" in text and "6.0 s against 9.0 s" in text
    assert "peak memory 2500 against 1000 MiB" in text  # each run's larger epoch
    assert report.cuda_graphs({}) == []  # not measured: no section


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_process_stopped_at_its_limit_takes_the_processes_it_started_with_it():
    groups = load_bench_script("process_group")
    spawner = ("import subprocess, sys, time\n"
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
               "print(child.pid, flush=True)\n"
               "time.sleep(60)")
    process = groups.start([sys.executable, "-c", spawner], stdout=subprocess.PIPE, text=True)
    child = int(process.stdout.readline())
    assert alive(child)
    assert groups.wait_or_stop(process, 0.5) is None
    stopped = time.monotonic() + 5
    while alive(child) and time.monotonic() < stopped:
        time.sleep(0.05)
    assert not alive(child)  # killing only the stage would leave its child running for a minute
    assert groups.wait_or_stop(groups.start([sys.executable, "-c", "raise SystemExit(3)"]), 10) == 3
