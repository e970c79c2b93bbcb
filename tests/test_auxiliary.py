"""Auxiliary Training: selective BN, heads outside the exported model, weight merging, the views."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from robustrain.config import from_dict
from robustrain.errors import ConfigError
from robustrain.methods import StepContext, Threat, create_method
from robustrain.methods.auxiliary import merge_penalty, soft_cross_entropy
from robustrain.methods.views import make_view, noise_view, rotate_view
from robustrain.models import create_model
from robustrain.train import RunConfig, build_optimizer, OptimConfig, train
from robustrain.train.load import load_run


def running_stats(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def attached(options=None):
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, width=8).train()
    method = create_method("auxiliary", options or {}, Threat())
    method.attach(model)
    return model, method


def test_selective_bn_leaves_running_statistics_equal_to_a_clean_only_pass():
    model, method = attached()
    clean_only = copy.deepcopy(model)
    x, y = torch.rand(16, 3, 16, 16), torch.randint(0, 10, (16,))
    method.step(model, x, y, StepContext(torch.Generator().manual_seed(0)))
    clean_only(x)
    for key, value in running_stats(clean_only).items():
        assert torch.equal(running_stats(model)[key], value), key
    ablated, ablation = attached({"selective_bn": False})
    ablation.step(ablated, x, y, StepContext(torch.Generator().manual_seed(0)))
    assert not torch.equal(running_stats(ablated)["layers.0.bn.branches.0.running_mean"],
                           running_stats(clean_only)["layers.0.bn.branches.0.running_mean"])


def test_weight_merging_pulls_the_heads_classifiers_to_the_primary_one():
    model, method = attached({"aux_weight": 0.0, "distill_weight": 0.0, "merge_weight": 1.0, "merge_from": 0.0})
    optimizer = torch.optim.SGD(method.heads.parameters(), lr=0.1)
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    distances = []
    for _ in range(5):
        out = method.step(model, x, y, StepContext(torch.Generator().manual_seed(0), progress=0.9))
        distances.append(merge_penalty(method.heads, model.fc).item())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    # d/dW ||W - W0||² = 2 (W - W0): each SGD step at lr 0.1 shrinks the distance by (1 - 0.2)².
    assert distances[1:] == pytest.approx([d * 0.64 for d in distances[:-1]], rel=1e-4)
    later = create_method("auxiliary", {"aux_weight": 0.0, "distill_weight": 0.0, "merge_from": 0.5}, Threat())
    later.attach(model)
    out = later.step(model, x, y, StepContext(torch.Generator().manual_seed(0), progress=0.4))
    out.loss.backward()
    assert all(head.fc.weight.grad is None or not head.fc.weight.grad.any() for head in later.heads)  # not yet
    assert out.logs["merge_penalty"] > 0


def test_the_merging_check_reads_the_last_two_end_of_epoch_checkpoints(tmp_path):
    from safetensors.torch import save_file

    from robustrain.methods.auxiliary import check_merging

    def checkpoint(stem, primary, heads):
        tensors = {"model/fc.weight": torch.tensor([primary]),
                   **{f"method/heads.{j}.fc.weight": torch.tensor([primary]) + torch.tensor([offset])
                      for j, offset in enumerate(heads)}}
        save_file(tensors, tmp_path / "checkpoints" / f"{stem}.safetensors")

    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match="keeps 0 end-of-epoch checkpoints; the merging check needs the last two"):
        check_merging(tmp_path)
    # before: primary (3, 4), heads at distances 2 and 4; after: the primary moved by (0.6, 0.8), 1/5 of its
    # norm, and the heads sit at distance 1; a checkpoint within the last epoch is not one of the two
    checkpoint("epoch-0005", [3.0, 4.0], [[0.0, 2.0], [4.0, 0.0]])
    checkpoint("epoch-0006-step-0000010", [9.0, 9.0], [[9.0, 9.0], [9.0, 9.0]])
    checkpoint("epoch-0006", [3.6, 4.8], [[1.0, 0.0], [0.0, -1.0]])
    check = check_merging(tmp_path)
    assert check.primary_relative_change_last_epoch == pytest.approx(0.2)
    assert check.head_distance_before == pytest.approx(3.0) and check.head_distance_after == pytest.approx(1.0)
    checkpoint("epoch-0007", [3.6, 4.8], [])  # a run of another method: no heads
    with pytest.raises(ConfigError, match="holds no auxiliary heads"):
        check_merging(tmp_path)


def test_distillation_direction_decides_who_learns():
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))

    def grads(direction, weight):
        model, method = attached({"aux_weight": 0.0, "distill_weight": weight, "merge_weight": 0.0,
                                  "distill_direction": direction})
        method.step(model, x, y, StepContext(torch.Generator().manual_seed(0))).loss.backward()
        return model.fc.weight.grad, method.heads[0].fc.weight.grad

    primary_off, _ = grads("primary_teaches", 0.0)
    primary, head = grads("primary_teaches", 1.0)
    assert torch.equal(primary, primary_off)  # the detached primary logits only teach
    assert head.abs().sum() > 0
    primary, head = grads("heads_teach", 1.0)
    assert not torch.allclose(primary, primary_off)  # the primary learns from the heads
    assert not head.any()  # and the heads, as teachers, learn nothing from it


def test_soft_cross_entropy_is_cross_entropy_against_the_teachers_softmax():
    teacher, student = torch.randn(4, 5), torch.randn(4, 5)
    p = teacher.softmax(1)
    assert soft_cross_entropy(teacher, student).item() == pytest.approx(
        -(p * student.log_softmax(1)).sum(1).mean().item(), rel=1e-6)


def test_noise_view_clips_and_never_wraps_around():
    x = torch.cat([torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32)])
    noisy = noise_view(x, torch.Generator().manual_seed(0))
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert noisy[0].max() < 0.5 and noisy[1].min() > 0.5  # dark stays dark, bright stays bright
    assert (noisy[0] == 0).float().mean() > 0.4  # the negative half is clipped to 0


def test_rotation_view_keeps_the_centre_and_fills_corners_with_zero():
    x = torch.ones(64, 3, 33, 33)
    rotated = rotate_view(x, torch.Generator().manual_seed(0))
    assert (rotated[:, :, 16, 16] == 1).all()
    assert (rotated[:, :, 0, 0] == 0).float().mean() > 0.5  # most angles move the corner outside
    with pytest.raises(ConfigError, match="view 'fog/9' needs a severity from 1 to 5"):
        make_view("fog/9")
    assert make_view("fog/3")(torch.rand(2, 3, 32, 32), torch.Generator()).shape == (2, 3, 32, 32)


def write_folder(root, rng):
    for split, count in (("train", 24), ("test", 12)):
        for i in range(count):
            label = i % 2
            image = rng.integers(0, 90, (16, 16, 3)) + 150 * label
            path = root / split / ("dark", "bright")[label] / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.astype(np.uint8)).save(path)


def test_trained_model_is_the_plain_architecture_without_heads(tmp_path):
    write_folder(tmp_path / "data", np.random.default_rng(0))
    config = {"data": {"name": "imagefolder", "root": str(tmp_path / "data"), "augment": "crop", "crop_padding": 2},
              "model": {"name": "small_cnn", "width": 4}, "method": {"name": "auxiliary"}, "threat": {"eps": 0.1},
              "eval": {"pgd_steps": 1}, "epochs": 2, "batch_size": 8, "device": "cpu", "out": str(tmp_path / "run")}
    train(from_dict(RunConfig, config), progress=False)
    run = load_run(tmp_path / "run")
    plain = create_model("small_cnn", 2, width=4)
    assert sorted(run.model.state_dict()) == sorted(plain.state_dict())
    assert sum(p.numel() for p in run.model.parameters()) == sum(p.numel() for p in plain.parameters())
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["merge_penalty"] > 0 and metrics["aux_ce"] > 0
    optimizer = build_optimizer(OptimConfig(), [run.model])
    assert len(optimizer.param_groups[0]["params"]) == len(list(plain.parameters()))
