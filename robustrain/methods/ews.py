"""EWS (Guo, Stutz & Schiele, ECCV 2022): find weak subnets during training and strengthen them by
distillation from the full network, on top of any base method (standard, AugMix, PGD-AT, TRADES).

A subnet keeps ⌈w·C_b⌉ of the C_b input channels of each residual block's middle convolution
(the others are zeroed, without rescaling: `Condition.channel_masks`). An LSTM controller
(hidden 100, ENAS-style) samples the kept channels block by block; REINFORCE with reward
R = -(subnet accuracy on the current batch) makes it find weak subnets:

    every `controller_interval` steps:  L_π = -(R - b) log π(s) - η H(s),  b <- 0.99 b + 0.01 R
    every step:  L = L_base + λ_KL Σ_views weight · KL(softmax(sg f(x)) || softmax(f_s(x)))

with a fresh subnet s ~ π each step, the full network as the detached teacher, and the subnet
passes normalised with their batch statistics without touching the running ones. The views are
what the base method trained on (AugMix: the clean and both augmented batches; PGD-AT: x_adv;
TRADES: x with weight 1 and x_adv with weight β), and the controller's reward is measured on the
last (the clean part for AugMix, x_adv for adversarial methods).

Departures from the official code, each an option or written here:
- its CIFAR corruption script never masks a block (its switch only matches the ImageNet block
  classes); every block here is masked;
- `kl_reduction`: "batchmean" (sum over classes, mean over images; the adversarial scripts) or
  "mean" (also divided by the number of classes; the corruption scripts, where λ_KL = 1 is
  λ_KL = 1/C in batch-mean terms);
- `baseline`: "reward" (a textbook moving average of R, default) or "advantage" (the official
  update with R - b, which converges to about half the mean reward);
- log π(s) is the sum of the chosen channels' log-probabilities under the block's softmax (the
  official approximation of a subset's probability); the path choice of the official controller
  is left out: at w >= 0.5 both paths are always kept;
- every controller parameter starts uniform(±0.1), output biases at 0 (the official code
  re-initialises a random 30% of its tensors).

`subnets: random` is the control the official code lacks: the same distillation into a uniformly
random subnet of the same width each step, with no controller, to tell what the search adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..host import to_device
from ..nn import Condition
from .base import METHODS, Method, StepContext, StepOutput


class Controller(nn.Module):
    """Samples, block after block, which input channels of each block's middle conv to keep."""

    def __init__(self, channels: list[int], keep: list[int], hidden: int = 100):
        super().__init__()
        self.channels, self.keep, self.hidden = list(channels), list(keep), hidden
        self.cell = nn.LSTMCell(hidden, hidden)
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in channels)
        self.embeddings = nn.ModuleList(nn.Embedding(c, hidden) for c in channels)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -0.1, 0.1)
        for head in self.heads:
            nn.init.zeros_(head.bias)

    def forward(self, generator: torch.Generator | None = None,
                chosen: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(kept channel indices per block, log π, entropy) of a sampled subnet, or of `chosen`."""
        state, inputs = None, self.start
        picks, log_prob, entropy = [], inputs.new_zeros(()), inputs.new_zeros(())
        for b, (head, embedding) in enumerate(zip(self.heads, self.embeddings)):
            state = self.cell(inputs, state)
            log_p = F.log_softmax(head(state[0]).squeeze(0), 0)
            if chosen is None:
                # k draws without replacement: the top-k of log p + Gumbel noise.
                uniform = torch.rand(len(log_p), generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
                gumbel = to_device(-torch.log(-torch.log(uniform)), log_p)
                pick = (log_p.detach() + gumbel).topk(self.keep[b]).indices.sort().values
            else:
                pick = chosen[b]
            picks.append(pick)
            log_prob = log_prob + log_p[pick].sum()
            entropy = entropy - (log_p[pick].exp() * log_p[pick]).sum()
            inputs = embedding(pick).mean(0, keepdim=True)
        return picks, log_prob, entropy


def channel_masks(channels: list[int], picks: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    """0/1 masks over each block's input channels with the picked ones set."""
    return tuple(torch.zeros(c, device=device).index_fill_(0, to_device(p, device), 1.0)
                 for c, p in zip(channels, picks))


def random_picks(channels: list[int], keep: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """A uniformly random subnet of the same widths: keep[b] of the channels[b] channels of each block."""
    return [torch.randperm(c, generator=generator)[:k].sort().values for c, k in zip(channels, keep)]


def kl_to_subnet(teacher_logits: torch.Tensor, student_logits: torch.Tensor, reduction: str) -> torch.Tensor:
    """KL(softmax(sg teacher) || softmax(student)), batch-mean (or also / classes for "mean")."""
    kl = F.kl_div(F.log_softmax(student_logits.float(), 1), F.softmax(teacher_logits.detach().float(), 1),
                  reduction="batchmean")
    return kl / student_logits.shape[1] if reduction == "mean" else kl


# The base methods whose steps report the inputs they trained on (StepOutput.views), which EWS distils on
BASES = ("standard", "augmix", "pgd_at", "trades")


@dataclass(frozen=True)
class EWSOptions:
    """base: the method EWS strengthens ({name: augmix, ...}). subnet_width w, kl_weight λ_KL,
    kl_reduction, controller_interval (steps), entropy_weight η, controller_lr (Adam, betas 0.5,
    0.999, gradient norm clipped at 3), baseline_decay, baseline rule."""

    base: dict = field(default_factory=lambda: {"name": "standard"})
    subnet_width: float = 0.7
    kl_weight: float = 1.0
    kl_reduction: Literal["batchmean", "mean"] = "batchmean"
    controller_interval: int = 10
    entropy_weight: float = 0.005
    controller_lr: float = 3e-4
    controller_hidden: int = 100
    baseline_decay: float = 0.99
    baseline: Literal["reward", "advantage"] = "reward"
    subnets: Literal["controller", "random"] = "controller"

    def __post_init__(self):
        if not 0 < self.subnet_width <= 1:
            raise ConfigError(f"method.subnet_width must lie in (0, 1], got {self.subnet_width}.")
        if self.kl_reduction not in ("batchmean", "mean") or self.baseline not in ("reward", "advantage"):
            raise ConfigError(f"method.kl_reduction must be batchmean or mean and method.baseline reward or "
                              f"advantage, got {self.kl_reduction!r} and {self.baseline!r}.")
        if self.controller_interval < 1 or self.kl_weight < 0:
            raise ConfigError(f"method.controller_interval must be at least 1 and method.kl_weight non-negative, got "
                              f"{self.controller_interval} and {self.kl_weight}.")
        if not isinstance(self.base, dict) or self.base.get("name") not in BASES:
            raise ConfigError(f"method.base must name the method EWS strengthens, one of {', '.join(BASES)} (the "
                              f"methods that report the inputs they trained on), got {self.base!r}.")


@METHODS.register()
class EWS(Method):
    name = "ews"
    Options = EWSOptions

    def __init__(self, options: EWSOptions, threat):
        super().__init__(options, threat)
        from . import method_from_section

        self.base = method_from_section(options.base, threat)
        self.register_buffer("reward_baseline", torch.zeros((), dtype=torch.float64))
        self.register_buffer("last_reward", torch.zeros((), dtype=torch.float64))
        self.controller: Controller | None = None
        self.controller_optimizer: torch.optim.Optimizer | None = None
        self.channels: list[int] = []  # per masked block: its channels, and how many a subnet keeps
        self.keep: list[int] = []

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the step count came with the call (StepContext.step) hold it as a buffer
        state_dict.pop(prefix + "steps_done", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def attach(self, model: nn.Module) -> None:
        self.base.attach(model)
        channels = model.maskable_channels() if hasattr(model, "maskable_channels") else []
        if not channels:
            raise ConfigError("method ews needs a model with residual blocks (a ResNet, PreAct-ResNet or WRN); "
                              f"{type(model).__name__} has none to mask.")
        self.channels = list(channels)
        self.keep = [math.ceil(self.options.subnet_width * c) for c in channels]
        if self.options.subnets == "random":
            return
        self.controller = Controller(channels, self.keep, self.options.controller_hidden).to(model.fc.weight.device)
        self.controller_optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.options.controller_lr,
                                                     betas=(0.5, 0.999))

    def self_trained_parameters(self) -> tuple[nn.Parameter, ...]:
        return tuple(self.controller.parameters()) if self.controller is not None else ()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"controller": self.controller_optimizer} if self.controller_optimizer is not None else {}

    def prepare(self, model, train_set, run_dir, device, augment):
        return self.base.prepare(model, train_set, run_dir, device, augment)

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        out = self.base.step(model, x, y, ctx)
        logs = dict(out.logs)
        # Every process masks the same subnet, and every controller takes the same step from the
        # global reward, so the controllers of data-parallel processes stay one controller.
        if self.options.subnets == "random":
            picks = random_picks(self.channels, self.keep, ctx.shared)
        else:
            if ctx.step % self.options.controller_interval == 0:
                self.update_controller(model, out.views[-1][0][:len(y)], y, ctx)
            logs.update(controller_reward=self.last_reward.float(), controller_baseline=self.reward_baseline.float())
            picks, _, _ = self.controller(ctx.shared)
        subnet = Condition(channel_masks=channel_masks(self.channels, picks, x.device), update_bn_stats=False)
        distill = sum(weight * kl_to_subnet(logits, model(inputs, subnet), self.options.kl_reduction)
                      for inputs, logits, weight in out.views)
        logs["subnet_kl"] = distill.detach()
        return StepOutput(out.loss + self.options.kl_weight * distill, out.logits, logs, out.views)

    def update_controller(self, model, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> None:
        """One REINFORCE step toward subnets that get the (global) batch wrong."""
        picks, log_prob, entropy = self.controller(ctx.shared)
        subnet = Condition(channel_masks=channel_masks(self.channels, picks, x.device), update_bn_stats=False)
        with torch.no_grad():
            reward = -ctx.global_mean((model(x.detach(), subnet).argmax(1) == y).double().mean())
        advantage = reward - self.reward_baseline
        loss = -advantage.float() * log_prob - self.options.entropy_weight * entropy
        self.controller_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.controller.parameters(), 3.0)
        self.controller_optimizer.step()
        decay = self.options.baseline_decay
        tracked = reward if self.options.baseline == "reward" else advantage
        self.reward_baseline.mul_(decay).add_((1 - decay) * tracked)
        self.last_reward.copy_(reward)


def subnet_accuracy(model: nn.Module, masks: tuple[torch.Tensor, ...] | None, images: torch.Tensor,
                    labels: torch.Tensor, batch_size: int = 128) -> float:
    """Accuracy on `images` (uint8) of the subnet with `masks` (None: the full network), each batch
    normalised with its own statistics as in the controller's reward; running statistics untouched.

    Shape: images (N, C, H, W) uint8 and labels (N,), on any device (each batch goes to the model's)."""
    condition = Condition(channel_masks=masks, update_bn_stats=False)
    device = next(model.parameters()).device
    training = model.training
    model.train()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(labels), batch_size):
                x = to_device(images[start:start + batch_size], device).float() / 255
                y = to_device(labels[start:start + batch_size], device)
                correct += int((model(x, condition).argmax(1) == y).sum())
    finally:
        model.train(training)
    return correct / len(labels)


@dataclass(frozen=True)
class SubnetCheck:
    """EWS's mechanism on one model: the accuracy of the full network, of subnets sampled from the
    controller and of uniformly random subnets of the same widths, all on the same `images` images."""

    images: int
    full_acc: float
    controller_subnet_acc: tuple[float, ...]
    random_subnet_acc: tuple[float, ...]
    controller_shared: float  # shared_channels of the controller's subnets
    random_shared: float  # and of the random ones


def shared_channels(subnets: list[list[torch.Tensor]]) -> float:
    """The share of their kept channels that two of `subnets` (each: kept channel indices per block)
    have in common, averaged over every pair: about keep/channels for uniformly random subnets, 1 for
    a controller that always picks the same one (nan for fewer than two: no pair). How narrow the
    controller's choice is."""
    kept = [{(b, channel) for b, block in enumerate(picks) for channel in block.tolist()} for picks in subnets]
    pairs = [(a, b) for i, a in enumerate(kept) for b in kept[i + 1:]]
    return sum(len(a & b) / len(a) for a, b in pairs) / len(pairs) if pairs else math.nan


def check_subnets(model: nn.Module, method: EWS, images: torch.Tensor, labels: torch.Tensor, subnets: int = 16,
                  seed: int = 0) -> SubnetCheck:
    """Are the subnets `method`'s controller samples weaker than random ones of the same widths? The
    search acts only if they are (docs/results/ews-controller.md asks it of a frozen network;
    scripts/ews.py of each trained EWS model). `subnets` of each kind, drawn from generators seeded
    with `seed` and `seed + 1`."""
    if method.controller is None:
        raise ConfigError("check_subnets needs an EWS method with a controller (subnets: controller), got "
                          f"subnets: {method.options.subnets}.")
    device = next(model.parameters()).device
    sampler, uniform = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)

    def accuracy(picks: list[torch.Tensor]) -> float:
        return subnet_accuracy(model, channel_masks(method.channels, picks, device), images, labels)

    with torch.no_grad():
        sampled = [method.controller(sampler)[0] for _ in range(subnets)]
    drawn = [random_picks(method.channels, method.keep, uniform) for _ in range(subnets)]
    return SubnetCheck(len(labels), subnet_accuracy(model, None, images, labels),
                       tuple(accuracy(picks) for picks in sampled), tuple(accuracy(picks) for picks in drawn),
                       shared_channels(sampled), shared_channels(drawn))


def check_run(folder: str | Path, images: int = 512, subnets: int = 16) -> SubnetCheck:
    """check_subnets on an EWS run's newest checkpoint (its network and its controller), on a fixed
    random `images` of its test set (all of them when fewer)."""
    from ..train.load import load_method, load_run

    trained = load_run(folder)
    rows = torch.randperm(len(trained.test_set.labels), generator=torch.Generator().manual_seed(0))[:images]
    return check_subnets(trained.model, load_method(trained), trained.test_set.images[rows],
                         trained.test_set.labels[rows], subnets)
