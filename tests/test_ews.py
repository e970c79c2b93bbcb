"""EWS: channel-masked blocks, frozen statistics in subnet passes, the controller, the loss."""

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from robustrain.config import from_dict
from robustrain.errors import ConfigError
from robustrain.methods import StepContext, Threat, create_method
from robustrain.methods.ews import Controller, kl_to_subnet
from robustrain.models import create_model
from robustrain.nn import Condition
from robustrain.train import RunConfig, train


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet18", "wrn16_8", "resnet50"])
def test_a_masked_block_equals_the_block_with_those_input_channels_zeroed(name):
    torch.manual_seed(0)
    model = create_model(name, 10).eval()
    channels = model.maskable_channels()
    masks = tuple((torch.rand(c) > 0.3).float() for c in channels)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        masked = model(x, Condition(channel_masks=masks))
        blocks = sorted((m for m in model.modules() if hasattr(m, "mask_index")), key=lambda m: m.mask_index)
        hooks = [block.conv2.register_forward_pre_hook(
            lambda module, args, mask=mask: (args[0] * mask.view(1, -1, 1, 1),) + args[1:])
            for block, mask in zip(blocks, masks)]
        zeroed = model(x)
        for hook in hooks:
            hook.remove()
        assert torch.allclose(masked, zeroed, atol=1e-5)
        assert not torch.allclose(masked, model(x), atol=1e-3)


def ews(base=None, **options):
    torch.manual_seed(0)
    model = create_model("resnet20", 10).train()
    method = create_method("ews", {"base": base or {"name": "standard"}, **options}, Threat(eps=0.03))
    method.attach(model)
    return model, method


def test_subnet_passes_leave_running_statistics_to_the_full_network():
    model, method = ews(controller_interval=1)
    full_only = copy.deepcopy(model)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    method.step(model, x, y, StepContext(torch.Generator().manual_seed(0)))
    full_only(x)
    stats = {k: v for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    for key, value in full_only.state_dict().items():
        if key in stats:
            assert torch.equal(stats[key], value), key


def test_the_controller_learns_on_the_steps_the_interval_names_counted_on_the_host():
    model, method = ews(controller_interval=3)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    weights = [p.detach().clone() for p in method.controller.parameters()]

    def updated_at(step: int) -> bool:
        method.step(model, x, y, StepContext(torch.Generator().manual_seed(0), step=step))
        changed = any(not torch.equal(w, p) for w, p in zip(weights, method.controller.parameters()))
        for w, p in zip(weights, method.controller.parameters()):
            w.copy_(p.detach())
        return changed
    assert [updated_at(step) for step in (1, 2, 3, 4, 6)] == [False, False, True, False, True]
    # a checkpoint from when the count was a buffer still loads
    method.load_state_dict({**method.state_dict(), "steps_done": torch.tensor(7)})


def test_controller_log_probabilities_form_a_distribution_over_subnets():
    torch.manual_seed(0)
    # One channel kept per block: a sequence of categorical draws, so the probabilities of all
    # subnets sum to one (the LSTM carries each choice into the next block's distribution).
    single = Controller([3, 4], [1, 1], hidden=8)
    total = sum(single(chosen=[torch.tensor([a]), torch.tensor([b])])[1].exp().item()
                for a in range(3) for b in range(4))
    assert total == pytest.approx(1.0, rel=1e-5)
    # Several kept: the sum of the members' log-probabilities under the block's softmax.
    pair = Controller([5], [2], hidden=8)
    log_p = F.log_softmax(pair.heads[0](pair.cell(pair.start)[0]), 1)[0]
    assert pair(chosen=[torch.tensor([1, 3])])[1].item() == pytest.approx((log_p[1] + log_p[3]).item(), rel=1e-6)
    picks, log_prob, entropy = pair(torch.Generator().manual_seed(1))
    assert len(picks[0]) == 2 and len(set(picks[0].tolist())) == 2 and entropy > 0
    assert log_prob.item() == pytest.approx(pair(chosen=picks)[1].item())


def test_controller_learns_to_pick_the_weakest_of_planted_subnets():
    torch.manual_seed(0)
    controller = Controller([6], [3], hidden=16)
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.05, betas=(0.5, 0.999))
    generator, baseline = torch.Generator().manual_seed(0), 0.0
    weak = {0, 1, 2}

    def accuracy(pick):  # each planted weak channel kept costs 30 points of accuracy
        return 1.0 - 0.3 * len(weak & set(pick.tolist()))

    for _ in range(300):
        picks, log_prob, entropy = controller(generator)
        reward = -accuracy(picks[0])
        loss = -(reward - baseline) * log_prob - 0.005 * entropy
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        baseline = 0.9 * baseline + 0.1 * reward
    probabilities = F.softmax(controller.heads[0](controller.cell(controller.start)[0]), 1)[0]
    assert set(probabilities.topk(3).indices.tolist()) == weak


def test_the_subnet_check_tests_the_controllers_subnets_and_random_ones_on_the_same_images():
    from robustrain.methods.ews import check_subnets

    model, method = ews()
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the full network's own answers (batch statistics): it scores 1 by construction
        labels = model(images.float() / 255, Condition(update_bn_stats=False)).argmax(1)
        # a controller certain of its subnet: each block keeps its first `keep` channels
        for head, keep in zip(method.controller.heads, method.keep):
            head.weight.zero_()
            head.bias.zero_()
            head.bias[:keep] = 50.0
    zeroed = copy.deepcopy(model)
    blocks = sorted((m for m in zeroed.modules() if hasattr(m, "mask_index")), key=lambda m: m.mask_index)
    for block, keep in zip(blocks, method.keep):
        block.conv2.register_forward_pre_hook(lambda module, args, keep=keep: (
            torch.cat([args[0][:, :keep], torch.zeros_like(args[0][:, keep:])], 1),))
    with torch.no_grad():
        expected = (zeroed(images.float() / 255).argmax(1) == labels).float().mean().item()
    before = copy.deepcopy(model.state_dict())
    model.eval()
    check = check_subnets(model, method, images, labels, subnets=4)
    assert check.full_acc == 1.0 and expected < 1
    assert check.controller_subnet_acc == pytest.approx((expected,) * 4, abs=1e-9)
    assert check.controller_shared == 1.0 and check.random_shared < 1  # a controller certain of one subnet
    assert check.images == 64 and len(check.random_subnet_acc) == 4
    assert all(0 <= a <= 1 for a in check.random_subnet_acc)
    assert not model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ConfigError, match="needs an EWS method with a controller"):
        check_subnets(*ews(subnets="random"), images, labels)


def test_the_check_of_a_finished_run_tests_its_trained_controller(tmp_path, monkeypatch):
    from robustrain.methods import ews as ews_method
    from robustrain.train.checkpoint import load_latest
    from robustrain.train.load import load_run

    config = {"data": {"name": "digits", "augment": "none", "train_limit": 128}, "model": {"name": "resnet20"},
              "method": {"name": "ews", "base": {"name": "standard"}, "controller_interval": 1, "controller_lr": 0.1},
              "eval": {"pgd_steps": 1, "pgd_limit": 20}, "epochs": 1, "batch_size": 32, "device": "cpu",
              "out": str(tmp_path / "run")}
    train(from_dict(RunConfig, config), progress=False)
    checked, check_subnets = [], ews_method.check_subnets
    monkeypatch.setattr(ews_method, "check_subnets", lambda model, method, *args: checked.append(method) or
                        check_subnets(model, method, *args))
    check = ews_method.check_run(tmp_path / "run")
    saved = {k.removeprefix("method/controller."): v for k, v in load_latest(tmp_path / "run")[0].items()
             if k.startswith("method/controller.")}
    assert saved and all(torch.equal(v, checked[0].controller.state_dict()[k]) for k, v in saved.items())
    trained = load_run(tmp_path / "run")
    rows = torch.randperm(len(trained.test_set.labels), generator=torch.Generator().manual_seed(0))[:512]
    images = trained.test_set.images[rows].float() / 255
    with torch.no_grad():  # the full network with the statistics of batches of 128, as the reward measures it
        full = torch.cat([trained.model.train()(images[i:i + 128]).argmax(1) for i in range(0, len(rows), 128)])
    assert check.images == len(rows)
    assert check.full_acc == int((full == trained.test_set.labels[rows]).sum()) / len(rows)
    assert len(check.controller_subnet_acc) == len(check.random_subnet_acc) == 16


def test_loss_is_the_base_loss_plus_the_weighted_kl_to_the_subnet():
    model, method = ews(kl_weight=0.5, controller_interval=1000)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    out = method.step(model, x, y, StepContext(torch.Generator().manual_seed(0)))
    base = F.cross_entropy(out.logits, y)
    assert out.loss.item() == pytest.approx(base.item() + 0.5 * out.logs["subnet_kl"].item(), rel=1e-5)
    assert out.logs["subnet_kl"] > 0
    teacher, student = torch.randn(4, 10), torch.randn(4, 10)
    assert kl_to_subnet(teacher, student, "mean").item() == pytest.approx(
        kl_to_subnet(teacher, student, "batchmean").item() / 10)
    expected = (F.softmax(teacher, 1) * (F.log_softmax(teacher, 1) - F.log_softmax(student, 1))).sum(1).mean()
    assert kl_to_subnet(teacher, student, "batchmean").item() == pytest.approx(expected.item(), rel=1e-5)


def test_random_subnet_control_keeps_each_channel_with_probability_keep_over_channels():
    from robustrain.methods.ews import random_picks

    generator = torch.Generator().manual_seed(0)
    draws = 4000
    counts = torch.zeros(10)
    for _ in range(draws):
        (pick,) = random_picks([10], [7], generator)
        assert len(pick) == 7 and len(set(pick.tolist())) == 7
        counts[pick] += 1
    # Each channel is kept with probability 7/10: binomial counts within 4 standard deviations.
    assert ((counts - 0.7 * draws).abs() <= 4 * math.sqrt(draws * 0.7 * 0.3)).all()
    model, method = ews(subnets="random", kl_weight=0.5)
    assert method.controller is None and method.optimizers() == {} and method.self_trained_parameters() == ()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    out = method.step(model, x, y, StepContext(torch.Generator().manual_seed(0)))
    assert out.logs["subnet_kl"] > 0 and "controller_reward" not in out.logs
    assert out.loss.item() == pytest.approx(F.cross_entropy(out.logits, y).item() + 0.5 * out.logs["subnet_kl"].item(),
                                            rel=1e-5)
    with pytest.raises(ConfigError, match="subnets must be one of"):
        create_method("ews", {"subnets": "weakest"}, Threat())


def test_ews_wraps_adversarial_and_augmix_bases_and_trains_end_to_end(tmp_path):
    for base in ({"name": "pgd_at", "steps": 1}, {"name": "trades", "steps": 1}, {"name": "augmix"}):
        model, method = ews(base)
        x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
        out = method.step(model, x, y, StepContext(torch.Generator().manual_seed(0)))
        out.loss.backward()
        assert math.isfinite(out.loss.item()) and model.fc.weight.grad is not None
    with pytest.raises(ConfigError, match="residual blocks"):
        create_method("ews", {}, Threat()).attach(create_model("small_cnn", 10))
    config = {"data": {"name": "digits", "augment": "none", "train_limit": 128}, "model": {"name": "resnet20"},
              "method": {"name": "ews", "base": {"name": "standard"}, "controller_interval": 2},
              "eval": {"pgd_steps": 1, "pgd_limit": 20}, "epochs": 1, "batch_size": 32, "device": "cpu",
              "out": str(tmp_path / "run")}
    results = train(from_dict(RunConfig, config), progress=False)
    assert results.cost.forward_backward >= 2 * 128  # full and subnet passes


def test_a_resumed_ews_run_ends_bitwise_like_an_uninterrupted_one(tmp_path, monkeypatch):
    """The controller's Adam moments and reward baseline travel with the checkpoint: a run resumed
    from its first epoch's checkpoint ends with the same network and controller."""
    import shutil

    from robustrain.train import trainer
    from safetensors.torch import load_file

    def config(out):
        return from_dict(RunConfig, {
            "data": {"name": "digits", "augment": "none", "train_limit": 128}, "model": {"name": "resnet20"},
            "method": {"name": "ews", "base": {"name": "standard"}, "controller_interval": 1},
            "eval": {"pgd_steps": 1, "pgd_limit": 20}, "epochs": 2, "batch_size": 32, "device": "cpu",
            "out": str(out)})

    first_epoch = tmp_path / "first_epoch_checkpoints"
    save = trainer.save_checkpoint

    def save_and_keep_the_first(run_dir, epoch, tensors, sidecar, step=None):
        save(run_dir, epoch, tensors, sidecar, step=step)
        if epoch == 0 and step is None:
            shutil.copytree(run_dir / "checkpoints", first_epoch)

    monkeypatch.setattr(trainer, "save_checkpoint", save_and_keep_the_first)
    reference = tmp_path / "reference"
    train(config(reference), progress=False)
    monkeypatch.undo()

    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    shutil.rmtree(resumed / "checkpoints")
    shutil.copytree(first_epoch, resumed / "checkpoints")
    (resumed / "results.json").unlink()
    train(config(resumed), resume=True, progress=False)

    def final(run):
        return load_file(run / "checkpoints" / "epoch-0001.safetensors")

    expected, actual = final(reference), final(resumed)
    assert any(k.startswith("method.controller/") for k in expected)  # the controller's Adam moments
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def _controller_after_steps(rank: int, world: int, init_file: str, out_dir: str, shared: bool) -> None:
    """One data-parallel process: a few EWS steps on its own shard; saves its controller."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = create_model("resnet20", 10)
    method = create_method("ews", {"base": {"name": "standard"}, "controller_interval": 1}, Threat())
    method.attach(model)
    shard = torch.Generator().manual_seed(100 + rank)
    x, y = torch.rand(8, 3, 32, 32, generator=shard), torch.randint(0, 10, (8,), generator=shard)
    ctx = StepContext(torch.Generator().manual_seed(10 + rank),
                      shared_generator=torch.Generator().manual_seed(5) if shared else None,
                      world=world if shared else 1)
    for _ in range(3):
        method.step(model, x, y, ctx)
    torch.save(method.state_dict(), f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("shared", [True, False])
def test_data_parallel_processes_keep_one_controller(tmp_path, shared):
    """With the shared stream and the global reward, two processes on different shards pick the same
    subnets and take the same controller steps; with each its own stream (the control) they drift."""
    import torch.multiprocessing as mp

    mp.spawn(_controller_after_steps, args=(2, str(tmp_path / "init"), str(tmp_path), shared), nprocs=2)
    first, second = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert first.keys() == second.keys() and any(k.startswith("controller.") for k in first)
    same = all(torch.equal(first[k], second[k]) for k in first)
    assert same == shared


def test_shared_channels_is_the_mean_share_of_kept_channels_over_pairs_of_subnets():
    from robustrain.methods.ews import shared_channels

    # every 2 of 4 channels in one block: each subset shares 1 channel with 4 others and none with its
    # complement, so a pair shares (4 * 1/2 + 0) / 5 = 0.4 of its kept channels on average
    subsets = [[torch.tensor(pair)] for pair in itertools.combinations(range(4), 2)]
    assert shared_channels(subsets) == pytest.approx(0.4)
    # two blocks: {0, 1} | {5} against {1, 2} | {5} share 2 of 3
    assert shared_channels([[torch.tensor([0, 1]), torch.tensor([5])],
                            [torch.tensor([1, 2]), torch.tensor([5])]]) == pytest.approx(2 / 3)
    assert shared_channels([[torch.tensor([3, 7])]] * 3) == 1.0
    assert math.isnan(shared_channels([[torch.tensor([3, 7])]]))  # one subnet: no pair to compare
