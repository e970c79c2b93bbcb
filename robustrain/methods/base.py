"""The method interface: a method turns a batch into a loss; the trainer does the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.distributed
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

METHODS: Registry[type["Method"]] = Registry("method")
"""Every training method, by its `name`; each class registers itself with `@METHODS.register()`."""


@dataclass(frozen=True)
class Threat:
    """The perturbation set a method trains against and evaluation attacks in."""

    norm: Literal["linf", "l2"] = "linf"
    eps: float = 8 / 255

    def __post_init__(self):
        if self.eps < 0:
            raise ConfigError(f"threat.eps must be non-negative, got {self.eps}.")
        if self.norm == "linf" and self.eps > 1:
            raise ConfigError(f"threat.eps {self.eps:g} is larger than the whole pixel range [0, 1]; an L-inf radius "
                              "lies in [0, 1], e.g. 8/255.")

    def step_size(self, given: float | None) -> float:
        """A PGD step size: `given`, else eps/4 (2/255 at 8/255, the literature's usual choice)."""
        return given if given is not None else self.eps / 4


@dataclass
class StepContext:
    """What a training step may use besides the batch: randomness, the shared loss options, and
    how far training is (progress: epochs done / total epochs, fractional within an epoch; step:
    the steps the run took before this one, known on the host, so that a method's every-N-steps
    decision never asks the device for a count).

    Under data parallelism each process draws its own per-sample randomness from `generator`;
    `shared_generator` gives the same draws on every process, for a method's global decisions (EWS's
    subnet), and `world` processes share a batch; a single process leaves both at their defaults.
    Per-pixel noise (attack starts) comes from `noise`: on a GPU a generator of its own there
    (`noise_generator`, see robustrain.host), elsewhere `generator` itself.
    """

    generator: torch.Generator
    label_smoothing: float = 0.0
    progress: float = 0.0
    step: int = 0
    shared_generator: torch.Generator | None = None
    world: int = 1
    noise_generator: torch.Generator | None = None

    @classmethod
    def seeded(cls, seed: int, device: torch.device, noise_seed: int | None = None, **fields) -> StepContext:
        """A context whose `generator` starts at `seed`; on a CUDA device its per-pixel noise comes
        from a generator there starting at `noise_seed` (default `seed`)."""
        noise = None
        if torch.device(device).type == "cuda":
            noise = torch.Generator(device=device).manual_seed(seed if noise_seed is None else noise_seed)
        return cls(torch.Generator().manual_seed(seed), noise_generator=noise, **fields)

    @property
    def shared(self) -> torch.Generator:
        """The stream every process draws alike (a single process's own stream)."""
        return self.generator if self.shared_generator is None else self.shared_generator

    @property
    def noise(self) -> torch.Generator:
        """The stream of per-pixel noise: the device's own generator where there is one."""
        return self.generator if self.noise_generator is None else self.noise_generator

    def global_mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over the processes (each holding an equal share of the batch)."""
        if self.world == 1:
            return value
        total = value.clone()
        torch.distributed.all_reduce(total)
        return total / self.world

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing, reduction=reduction)


@dataclass
class StepOutput:
    """The loss to minimise, the logits training accuracy is measured on, and extra logs.

    views: the (inputs, full-network logits, weight) triples the loss was computed on, for a method
    that wraps this one and adds a term on the same inputs (EWS distils each view into a subnet);
    the view an adversarial method trains on comes last."""

    loss: torch.Tensor
    logits: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    views: tuple[tuple[torch.Tensor, torch.Tensor, float], ...] = ()


def layout_like(images: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`images` in the memory format of the batch `like` (channels-last runs stay channels-last)."""
    if like.is_contiguous(memory_format=torch.channels_last):
        return images.contiguous(memory_format=torch.channels_last)
    return images


class Method(nn.Module):
    """A training method. Subclasses set `Options` (a dataclass of their hyper-parameters)
    and implement `step`. Being a module, a method may own parameters (auxiliary heads,
    a controller); they are optimised and checkpointed with the model."""

    name: ClassVar[str]
    Options: ClassVar[type]

    def __init__(self, options, threat: Threat):
        super().__init__()
        self.options = options
        self.threat = threat

    def attach(self, model: nn.Module) -> None:
        """Called once with the model before training (before the optimizer and any checkpoint
        are made): raise ConfigError if this method cannot train it, and build the modules that
        depend on it (auxiliary heads)."""

    def check_images(self, model: nn.Module, shape: tuple[int, int, int]) -> None:
        """Called after attach with the training images' (channels, height, width), before anything
        is written: raise ConfigError if this method cannot train on such images."""

    def self_trained_parameters(self) -> tuple[nn.Parameter, ...]:
        """Parameters this method updates itself (with its own optimizer), which the trainer's
        optimizer must leave alone."""
        return ()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers this method steps itself, by name; their state is checkpointed with the
        run, so that a resumed run continues exactly."""
        return {}

    def prepare(self, model: nn.Module, train_set, run_dir, device: torch.device, augment):
        """The training set the run iterates over, made once before the first epoch (after the
        initial weights are loaded) and kept in the run folder if it is not the given one: a phase
        such as AdCorDA's correction. Default: the training set as it is."""
        return train_set

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> StepOutput:
        raise NotImplementedError
