import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from robustrain.attacks import PGD
from robustrain.config import from_dict
from robustrain.errors import ConfigError
from robustrain.methods import StepContext, Threat, create_method, method_from_section
from robustrain.models import create_model
from robustrain.train import OptimConfig, RunConfig, ScheduleConfig, build_optimizer, lr_factor, train
from robustrain.train.schedules import momentum_at

TIMING_KEYS = {"epoch_time_s", "images_per_s", "train_time_s", "peak_memory_mb"}


def tiny_config(out: Path, method: dict, epochs: int = 2, **extra) -> dict:
    return {
        "data": {"name": "digits", "augment": "crop", "crop_padding": 1, **extra.pop("data", {})},
        "model": {"name": "small_cnn", "width": 8},
        "method": method,
        "threat": {"eps": 0.1},
        "optim": {"lr": 0.05},
        "schedule": {"name": "cosine"},
        "eval": {"pgd_steps": 5, "pgd_limit": 100},
        "epochs": epochs, "batch_size": 64, "device": "cpu", "out": str(out), **extra,
    }


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    return value


def read_metrics(run: Path) -> list[dict]:
    return [without_timing(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]


def final_tensors(run: Path) -> dict[str, torch.Tensor]:
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())["stem"]
    with safe_open(run / "checkpoints" / f"{latest}.safetensors", "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


# Schedules against their closed forms.

def test_multistep_decays_at_each_milestone():
    config = ScheduleConfig(name="multistep", milestones=(100, 150), gamma=0.1)
    assert [lr_factor(config, 200, t) for t in (0, 99.99, 100, 149.9, 150, 199)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_and_warmup():
    config = ScheduleConfig(name="cosine", final_factor=0.1, warmup_epochs=2)
    assert lr_factor(config, 10, 0) == 0
    assert lr_factor(config, 10, 1) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 10))))
    assert lr_factor(config, 10, 5) == pytest.approx(0.55)
    assert lr_factor(config, 10, 10) == pytest.approx(0.1)


def test_onecycle_and_piecewise_are_linear_between_their_points():
    onecycle = ScheduleConfig(name="onecycle", peak_fraction=0.4, final_factor=0.0)
    assert [lr_factor(onecycle, 10, t) for t in (0, 2, 4, 7, 10)] == pytest.approx([0, 0.5, 1, 0.5, 0])
    piecewise = ScheduleConfig(name="piecewise", points=((0, 0.0), (2, 1.0), (5, 0.1)))
    assert [lr_factor(piecewise, 8, t) for t in (0, 1, 2, 3.5, 5, 8)] == pytest.approx([0, 0.5, 1, 0.55, 0.1, 0.1])


def test_onecycle_with_momentum_at_peak_follows_torch_cyclic_lr():
    # The official fast AT code: CyclicLR(base_lr=0, max_lr=0.2, up = down = half of the steps),
    # which by default also cycles SGD's momentum between 0.9 (at base lr) and 0.8 (at max lr).
    epochs, steps_per_epoch = 3, 8
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2, momentum=0.9)
    total = epochs * steps_per_epoch
    cyclic = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=0.0, max_lr=0.2, step_size_up=total / 2,
                                               step_size_down=total / 2)
    config = ScheduleConfig(name="onecycle", peak_fraction=0.5, final_factor=0.0, momentum_at_peak=0.8)
    for step in range(total):
        factor = lr_factor(config, epochs, step / steps_per_epoch)
        assert 0.2 * factor == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-9)
        assert momentum_at(config, 0.9, epochs, step / steps_per_epoch) == pytest.approx(
            optimizer.param_groups[0]["momentum"], abs=1e-9)
        optimizer.step()
        cyclic.step()
    with pytest.raises(ConfigError, match="momentum_at_peak cycles SGD's momentum"):
        from_dict(RunConfig, {"optim": {"name": "adamw"}, "schedule": {"name": "onecycle", "momentum_at_peak": 0.8}})


@pytest.mark.parametrize("epochs", [100, 15, 7])
def test_torch_onecycle_follows_torch_onecycle_lr_stepped_per_epoch(epochs):
    # The FastAT benchmark: OneCycleLR(opt, max_lr=0.1, total_steps=epochs), scheduler.step() after
    # each epoch; OneCycleLR also cycles momentum between 0.95 and 0.85 (its defaults).
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=epochs)
    config = ScheduleConfig(name="torch_onecycle", momentum_at_peak=0.85)
    for epoch in range(epochs):
        for t in (epoch, epoch + 0.5):  # constant within the epoch
            assert 0.1 * lr_factor(config, epochs, t) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
            assert momentum_at(config, 0.95, epochs, t) == pytest.approx(optimizer.param_groups[0]["momentum"],
                                                                         abs=1e-12)
        optimizer.step()
        onecycle.step()


def test_bad_schedules_are_named():
    with pytest.raises(ConfigError, match="milestones must be non-negative and increasing"):
        ScheduleConfig(milestones=(150, 100))
    with pytest.raises(ConfigError, match="schedule.points needs at least two"):
        ScheduleConfig(name="piecewise", points=((0, 1.0),))


def test_weight_decay_can_exclude_norm_and_bias():
    model = create_model("small_cnn", 10, width=4)
    optimizer = build_optimizer(OptimConfig(weight_decay=1e-3, decay_norm_and_bias=False), [model])
    decayed, exempt = optimizer.param_groups
    assert decayed["weight_decay"] == 1e-3 and exempt["weight_decay"] == 0
    assert all(p.dim() > 1 for p in decayed["params"]) and all(p.dim() == 1 for p in exempt["params"])
    assert len(decayed["params"]) + len(exempt["params"]) == len(list(model.parameters()))
    nesterov = build_optimizer(OptimConfig(nesterov=True), [model])
    assert nesterov.param_groups[0]["nesterov"] and len(nesterov.param_groups) == 1


# Configuration errors.

def test_config_accepts_fractions_and_names_bad_keys():
    config = from_dict(RunConfig, {"threat": {"eps": "8/255"}, "method": {"name": "pgd_at"}})
    assert config.threat.eps == pytest.approx(8 / 255)
    with pytest.raises(ConfigError, match="unknown option 'optim.momentun'"):
        from_dict(RunConfig, {"optim": {"momentun": 0.9}})
    with pytest.raises(ConfigError, match="threat.eps must be a number or a fraction"):
        from_dict(RunConfig, {"threat": {"eps": "eight"}})
    with pytest.raises(ConfigError, match="precision must be one of"):
        from_dict(RunConfig, {"precision": "fp8"})
    with pytest.raises(ConfigError, match="unknown option 'method.setps'"):
        create_method("pgd_at", {"setps": 3}, Threat())


# Losses against hand computations.

def test_label_smoothing_matches_its_closed_form():
    logits, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    log_p = F.log_softmax(logits, 1)
    expected = (0.9 * -log_p.gather(1, y[:, None]).squeeze(1) + 0.1 * -log_p.mean(1)).mean()
    ctx = StepContext(torch.Generator(), label_smoothing=0.1)
    assert torch.allclose(ctx.cross_entropy(logits, y), expected)


def test_pgd_at_mixes_clean_and_adversarial_terms():
    torch.manual_seed(0)
    model = create_model("small_cnn", 3, width=4).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    method = create_method("pgd_at", {"steps": 3, "random_start": False, "adv_weight": 0.3}, Threat(eps=0.05))
    out = method.step(model, x, y, StepContext(torch.Generator()))
    x_adv = PGD(0.05, 0.05 / 4, 3, random_start="none")(model, x, y)
    expected = 0.7 * F.cross_entropy(model(x), y) + 0.3 * F.cross_entropy(model(x_adv), y)
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_trades_loss_is_natural_ce_plus_beta_batchmean_kl():
    torch.manual_seed(0)
    model = create_model("small_cnn", 3, width=4).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    method = create_method("trades", {"beta": 6.0, "steps": 2}, Threat(eps=0.05))
    out = method.step(model, x, y, StepContext(torch.Generator().manual_seed(3)))
    x_adv = PGD(0.05, 0.05 / 4, 2, loss="kl", random_start="normal")(model, x, y, torch.Generator().manual_seed(3))
    p, log_q = F.softmax(model(x), 1), F.log_softmax(model(x_adv), 1)
    kl = (p * (p.log() - log_q)).sum(1).mean()
    assert torch.allclose(out.loss, F.cross_entropy(model(x), y) + 6.0 * kl, atol=1e-5)


@pytest.mark.parametrize("name", ["pgd_at", "fast_at", "trades"])
def test_an_attack_start_is_drawn_from_the_contexts_noise_stream(name):
    # On a GPU the trainer gives a step a generator on the device for the attack's random start
    # (StepContext.noise), so that no step draws and copies a batch of noise on the host.
    torch.manual_seed(0)
    model = create_model("small_cnn", 3, width=4).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    method = create_method(name, {}, Threat(eps=0.05))

    def loss(seed: int, noise_seed: int) -> torch.Tensor:
        noise = torch.Generator().manual_seed(noise_seed)
        ctx = StepContext(torch.Generator().manual_seed(seed), noise_generator=noise)
        return method.step(copy.deepcopy(model), x, y, ctx).loss  # a copy: fast AT's attack pass moves BN statistics
    assert torch.equal(loss(0, 5), loss(1, 5))
    assert not torch.equal(loss(0, 5), loss(0, 6))


def test_a_seeded_context_keeps_its_noise_on_the_host_generator_off_a_gpu():
    ctx = StepContext.seeded(3, torch.device("cpu"), noise_seed=4)
    assert ctx.noise is ctx.generator
    assert torch.equal(ctx.generator.get_state(), torch.Generator().manual_seed(3).get_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_seeded_context_draws_its_noise_on_the_gpu():
    ctx = StepContext.seeded(3, torch.device("cuda"), noise_seed=4)
    assert ctx.noise.device.type == "cuda"
    assert torch.equal(ctx.noise.get_state(), torch.Generator(device="cuda").manual_seed(4).get_state())


@pytest.mark.parametrize("bn_mode, statistics_updates", [("eval", 1), ("train", 2)])
def test_fast_at_bn_mode_decides_whether_the_fgsm_pass_updates_running_statistics(bn_mode, statistics_updates):
    # The official train_fgsm.py runs its FGSM pass in train mode: BatchNorm then counts two batches
    # per step (attack and update); in eval mode only the update's.
    torch.manual_seed(0)
    model = create_model("resnet20", 10).train()
    method = create_method("fast_at", {"bn_mode": bn_mode}, Threat(eps=8 / 255))
    method.step(model, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]),
                StepContext(torch.Generator().manual_seed(0)))
    assert {int(m.num_batches_tracked) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == \
        {statistics_updates}
    assert model.training


# The trainer: cost accounting, determinism, resume after SIGKILL.

@pytest.mark.parametrize("method, fb_per_image, f_per_image", [
    ({"name": "standard"}, 1, 0),
    ({"name": "pgd_at", "steps": 4}, 5, 0),
    ({"name": "pgd_at", "steps": 4, "adv_weight": 0.5}, 6, 0),
    ({"name": "trades", "steps": 3}, 5, 1),
    ({"name": "fast_at"}, 2, 0),
])
def test_cost_counts_image_passes(tmp_path, method, fb_per_image, f_per_image):
    config = tiny_config(tmp_path / "run", method, epochs=1, data={"train_limit": 256})
    cost = train(from_dict(RunConfig, config), progress=False).cost
    assert cost.images == 256
    assert cost.forward_backward == fb_per_image * 256
    assert cost.forward_only == f_per_image * 256


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    train(from_dict(RunConfig, tiny_config(out, {"name": "pgd_at", "steps": 2}, epochs=5)), progress=False)
    return out


def test_same_seed_gives_bitwise_the_same_run(reference_run, tmp_path):
    again = tmp_path / "again"
    train(from_dict(RunConfig, tiny_config(again, {"name": "pgd_at", "steps": 2}, epochs=5)), progress=False)
    assert read_metrics(again) == read_metrics(reference_run)
    reference = final_tensors(reference_run)
    assert all(torch.equal(reference[k], v) for k, v in final_tensors(again).items())
    other_seed = tmp_path / "other"
    train(from_dict(RunConfig, tiny_config(other_seed, {"name": "pgd_at", "steps": 2}, epochs=1, seed=1)),
          progress=False)
    assert read_metrics(other_seed)[0] != read_metrics(reference_run)[0]


@pytest.mark.parametrize("progress", [False, True])
def test_the_progress_bar_reads_the_running_sums_only_when_shown(progress, tmp_path, monkeypatch):
    # Its loss and accuracy are device values: reading them every 10 steps synchronises a GPU, which a
    # run without a bar (every benchmark, every study) must not pay for.
    from robustrain.train import trainer

    readings = []

    class RecordingBar(trainer.tqdm):
        def set_postfix(self, *args, **kwargs):
            readings.append(kwargs)
            super().set_postfix(*args, **kwargs)
    monkeypatch.setattr(trainer, "tqdm", RecordingBar)
    train(from_dict(RunConfig, tiny_config(tmp_path / "run", {"name": "standard"}, epochs=1)), progress=progress)
    assert bool(readings) == progress


def test_epoch_pgd_is_logged_without_changing_the_run(reference_run, tmp_path):
    """eval.epoch_pgd_limit measures PGD after every epoch: the training itself stays bitwise the
    same, and the last epoch's value is the final evaluation's PGD on the same images."""
    run = tmp_path / "watched"
    config = tiny_config(run, {"name": "pgd_at", "steps": 2}, epochs=5)
    config["eval"]["epoch_pgd_limit"] = 100
    results = train(from_dict(RunConfig, config), progress=False)
    watched = read_metrics(run)
    assert [{k: v for k, v in m.items() if k != "test_pgd_acc"} for m in watched] == read_metrics(reference_run)
    assert all(torch.equal(final_tensors(reference_run)[k], v) for k, v in final_tensors(run).items())
    curve = [m["test_pgd_acc"] for m in watched]
    assert len(set(curve)) > 1 and all(0 <= a <= 1 for a in curve)
    assert curve[-1] == results.model.pgd.acc
    with pytest.raises(ConfigError, match="eval.epoch_pgd_limit must be a positive number"):
        from_dict(RunConfig, {**config, "eval": {"epoch_pgd_limit": 0}})


def test_checkpoints_hold_only_safetensors_and_json_of_the_last_two_epochs(reference_run):
    files = sorted(p.name for p in (reference_run / "checkpoints").iterdir())
    assert files == ["epoch-0003.json", "epoch-0003.safetensors", "epoch-0004.json", "epoch-0004.safetensors",
                     "latest.json"]
    sidecar = json.loads((reference_run / "checkpoints" / "epoch-0004.json").read_text())
    assert sidecar["epoch"] == 4 and sidecar["config"]["method"]["name"] == "pgd_at"
    keys = final_tensors(reference_run)
    assert any(k.startswith("model/") for k in keys) and any(k.startswith("optimizer/") for k in keys)


@pytest.mark.slow
def test_resume_after_sigkill_ends_like_an_uninterrupted_run(reference_run, tmp_path):
    run = tmp_path / "killed"
    config = tmp_path / "config.yaml"
    import yaml

    config.write_text(yaml.safe_dump(tiny_config(run, {"name": "pgd_at", "steps": 2}, epochs=5)))
    command = [sys.executable, "-m", "robustrain", "train", "--config", str(config), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["epoch"] >= 1:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (run / "results.json").exists(), "the run finished before it could be killed"

    resumed = subprocess.run([sys.executable, "-m", "robustrain", "train", "--resume", str(run), "--no-progress"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert read_metrics(run) == read_metrics(reference_run)
    expected = json.loads((reference_run / "results.json").read_text())
    actual = json.loads((run / "results.json").read_text())
    assert without_timing(actual) == without_timing(expected)
    reference = final_tensors(reference_run)
    assert all(torch.equal(reference[k], v) for k, v in final_tensors(run).items())
    assert not list(run.rglob("*.tmp"))
    # each process that trained the run said what it was: the first from epoch 0, the resumed one later
    started, resumed_at = (json.loads(line) for line in (run / "provenance.jsonl").read_text().splitlines())
    assert started["from_epoch"] == 0 and resumed_at["from_epoch"] >= 1 and started["device"] == "CPU"
    checkout = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert started["commit"] == resumed_at["commit"] == (os.environ.get("ROBUSTRAIN_COMMIT") or checkout)


def test_gradient_clipping_bounds_how_far_weights_move(tmp_path):
    # With SGD momentum m, no weight decay and every gradient clipped to norm c, the
    # momentum buffer's norm stays below c / (1 - m), so S steps of lr move the weights
    # by at most S * lr * c / (1 - m) in L2 norm.
    clip, lr, momentum = 1e-4, 0.05, 0.9
    config = tiny_config(tmp_path / "run", {"name": "standard"}, epochs=1, grad_clip=clip, data={"train_limit": 256},
                         optim={"lr": lr, "momentum": momentum, "weight_decay": 0.0}, schedule={"name": "constant"})
    torch.manual_seed(0)
    initial = create_model("small_cnn", 10, in_channels=1, width=8, mean=(0.5,), std=(0.5,)).state_dict()
    train(from_dict(RunConfig, config), progress=False)
    final = final_tensors(tmp_path / "run")
    moved = torch.sqrt(sum(((final[f"model/{k}"] - v) ** 2).sum() for k, v in initial.items()
                           if v.is_floating_point() and "running" not in k and "normalize" not in k))
    steps = 256 // 64
    assert 0 < moved <= steps * lr * clip / (1 - momentum) * 1.0001


def test_bf16_autocast_and_adamw_train_on_cpu(tmp_path):
    config = tiny_config(tmp_path / "run", {"name": "pgd_at", "steps": 2}, epochs=1, precision="bf16",
                         optim={"name": "adamw", "lr": 1e-3, "weight_decay": 0.01}, data={"train_limit": 128})
    results = train(from_dict(RunConfig, config), progress=False)
    assert 0 <= results.model.clean_acc <= 1
    saved = final_tensors(tmp_path / "run")
    assert {"optimizer/0/exp_avg", "optimizer/0/exp_avg_sq", "optimizer/0/step"} <= set(saved)


def test_train_limit_takes_a_fixed_subset_covering_every_class(tmp_path):
    import numpy as np
    from PIL import Image

    from robustrain.train.trainer import load_training_data

    for split in ("train", "test"):
        for label in range(3):
            (tmp_path / "data" / split / f"c{label}").mkdir(parents=True)
            for i in range(20):
                Image.fromarray(np.full((4, 4, 3), 10 * label + i, np.uint8)).save(
                    tmp_path / "data" / split / f"c{label}" / f"{i:02d}.png")
    config = tiny_config(tmp_path / "run", {"name": "standard"},
                         data={"name": "imagefolder", "root": str(tmp_path / "data"), "train_limit": 15})
    train_set, _ = load_training_data(from_dict(RunConfig, config))
    again, _ = load_training_data(from_dict(RunConfig, {**config, "seed": 7}))
    assert len(train_set) == 15 and torch.equal(train_set.images, again.images)
    # The folder lists 20 images of class 0 first: the first 15 would all be class 0.
    assert torch.bincount(train_set.labels, minlength=3).min() >= 2


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_resolves_and_builds_its_model_and_method(path):
    from robustrain.config import load_yaml
    from robustrain.data import DatasetInfo
    from robustrain.train import build_model

    config = from_dict(RunConfig, load_yaml(path))
    info = DatasetInfo(name=config.data.name, num_classes=10, channels=3, image_size=(32, 32),
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    model = build_model(config, info)
    method = method_from_section(config.method, config.threat)
    method.attach(model)


@pytest.mark.parametrize("model, mean, std", [({}, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                                              ({"mean": [0, 0, 0], "std": [1, 1, 1]}, (0, 0, 0), (1, 1, 1))])
def test_a_models_input_normalisation_is_the_datas_unless_the_config_sets_it(model, mean, std):
    from robustrain.data import DatasetInfo
    from robustrain.train import build_model

    config = from_dict(RunConfig, {"model": {"name": "small_cnn", "width": 4, **model}})
    info = DatasetInfo(name="cifar10", num_classes=10, channels=3, image_size=(32, 32),
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    normalize = build_model(config, info).normalize
    assert normalize.mean.flatten().tolist() == list(mean) and normalize.std.flatten().tolist() == list(std)


def test_a_step_that_runs_out_of_memory_says_so_and_suggests_a_smaller_batch(tmp_path, monkeypatch):
    from robustrain.errors import RobustrainError
    from robustrain.methods.standard import Standard

    def out_of_memory(self, model, x, y, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Standard, "step", out_of_memory)
    with pytest.raises(RobustrainError, match="batch size 64 does not fit in the memory of cpu; try --batch-size 32"):
        train(from_dict(RunConfig, tiny_config(tmp_path / "run", {"name": "standard"}, epochs=1)), progress=False)


def test_metrics_report_peak_memory(reference_run):
    assert all(line["peak_memory_mb"] > 10 for line in
               (json.loads(l) for l in (reference_run / "metrics.jsonl").read_text().splitlines()))


@pytest.mark.slow
def test_a_compiled_run_trains_checkpoints_and_evaluates(tmp_path, monkeypatch):
    # The trainer compiles every model path (Classifier.compile); the eager backend stands in for
    # inductor, which takes minutes on a CPU.
    compile_, modes = torch.compile, []

    def eager(fn, **options):
        modes.append(options.get("mode"))
        return compile_(fn, **{**options, "backend": "eager"})
    monkeypatch.setattr(torch, "compile", eager)
    torch._dynamo.reset()
    config = tiny_config(tmp_path / "run", {"name": "pgd_at", "steps": 2}, epochs=1, compile=True,
                         compile_mode="reduce-overhead")
    results = train(from_dict(RunConfig, config), progress=False)
    assert 0 <= results.model.clean_acc <= 1 and (tmp_path / "run" / "checkpoints" / "latest.json").is_file()
    assert modes == ["reduce-overhead"] * 3  # forward, penultimate, last_feature_map, in the mode asked
    with pytest.raises(ConfigError, match="compile_mode"):
        from_dict(RunConfig, {**config, "compile_mode": "fast"})
