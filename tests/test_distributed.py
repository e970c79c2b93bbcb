"""Data-parallel training with torchrun: 2 CPU processes (gloo) against one process, same global batch."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml

from robustrain.train.distributed import joined

from .test_train import final_tensors, read_metrics

pytestmark = pytest.mark.slow  # every test here starts torchrun processes


# The subprocesses import this checkout's robustrain, whatever the current folder.
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def run(args, cwd):
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"name": "digits", "augment": "crop", "crop_padding": 1},
        "model": {"name": "small_cnn", "width": 4}, "method": {"name": "standard"},
        # lr 0.01: at 0.05 this small network turns rounding differences into different runs within 4 epochs
        # (one process with 1 thread against 2 threads: train loss 0.636 against 0.696 on an AMD EPYC), so
        # equal-model checks would test the host's float noise, not data parallelism.
        "optim": {"lr": 0.01}, "eval": {"pgd_steps": 1, "pgd_limit": 50}, "epochs": 4, "batch_size": 64,
        "device": "cpu", "sync_bn": True, "seed": 3}))
    run(["-m", "robustrain", "train", "--config", str(config), "--out", "single", "--no-progress"], folder)
    run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--module", "robustrain", "train",
         "--config", str(config), "--out", "ddp", "--no-progress"], folder)
    return folder


def test_two_processes_end_with_the_model_of_one_process(runs):
    single, ddp = final_tensors(runs / "single"), final_tensors(runs / "ddp")
    model_keys = [k for k in single if k.startswith("model/")]
    assert model_keys and set(model_keys) <= set(ddp)
    for key in model_keys:
        if "num_batches_tracked" in key:
            assert torch.equal(single[key], ddp[key]), key
        else:
            assert torch.allclose(single[key], ddp[key], rtol=1e-4, atol=1e-5), key


def test_only_process_zero_writes_and_metrics_cover_the_global_batch(runs):
    single, ddp = read_metrics(runs / "single"), read_metrics(runs / "ddp")
    assert len(ddp) == 4  # one line per epoch, not one per process
    for a, b in zip(single, ddp):
        assert b["images"] == a["images"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["train_acc"] == pytest.approx(a["train_acc"], abs=1 / a["images"] + 1e-9)
    cost = [json.loads((runs / r / "results.json").read_text())["cost"] for r in ("single", "ddp")]
    assert cost[0]["forward_backward"] == cost[1]["forward_backward"]


def test_a_batch_that_does_not_split_evenly_is_refused(runs):
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "--module", "robustrain", "train", "--config", str(runs / "config.yaml"), "--out", "odd",
                             "--set", "batch_size=63"], cwd=runs, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode != 0
    assert "global batch size must be a multiple of 2" in result.stderr
    assert not (runs / "odd" / "checkpoints").exists()


def test_a_killed_data_parallel_run_resumes_to_the_uninterrupted_result(runs):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--module",
                "robustrain", "train", "--no-progress"]
    process = subprocess.Popen([*torchrun, "--config", str(runs / "config.yaml"), "--out", "killed"], cwd=runs, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    latest = runs / "killed" / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not latest.is_file():
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers
    process.wait()
    assert not (runs / "killed" / "results.json").exists(), "the run finished before it could be killed"
    run([*torchrun[1:], "--resume", "killed"], runs)
    assert read_metrics(runs / "killed") == read_metrics(runs / "ddp")
    reference = final_tensors(runs / "ddp")
    assert all(torch.equal(reference[k], v) for k, v in final_tensors(runs / "killed").items())


# Each process joins, fails inside, and says whether a process group is left: one left alive at exit can abort
# the process in Gloo's teardown (pytorch/pytorch#190489).
JOIN_AND_FAIL = """
import torch.distributed as dist
from robustrain.train.distributed import joined
try:
    with joined("cpu") as cluster:
        print(cluster.rank, cluster.world, dist.is_initialized())
        raise RuntimeError("a failure inside the job")
except RuntimeError:
    pass
print(dist.is_initialized())
"""


def test_the_process_group_joined_is_destroyed_on_leaving_also_after_an_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = [subprocess.Popen([sys.executable, "-c", JOIN_AND_FAIL], stdout=subprocess.PIPE, text=True,
                                  env={**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                                       "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)})
                 for rank in range(2)]
    outputs = [p.communicate(timeout=120)[0].split("\n")[:2] for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert outputs == [["0 2 True", "False"], ["1 2 True", "False"]]


def test_a_process_group_that_already_exists_is_left_to_its_creator(monkeypatch):
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        with joined("cpu") as cluster:
            assert (cluster.rank, cluster.world) == (0, 1)
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_a_torchrun_process_ends_without_the_interpreters_teardown_and_keeps_its_exit_code(monkeypatch, capsys):
    from robustrain import cli

    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    cli.main(["train", "--resume", "no-such-run", "--epochs", "3"])  # refused: --resume takes no settings
    assert exits == [2] and "drop --epochs" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cli.main(["train", "--resume", "no-such-run", "--epochs", "3"]) == 2 and exits == [2]
