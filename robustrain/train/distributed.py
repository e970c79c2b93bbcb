"""Data-parallel training across processes started by torchrun (DDP semantics, explicit steps).

Every process holds the model and the whole (small) dataset, draws the same global batch and
trains on its 1/world share of it (DeviceLoader's `shard`); after the backward pass the
gradients are averaged across processes in one flattened all-reduce, so every process takes
the same optimizer step as one process with the whole global batch would. This works for any
method, whatever parts of the model it calls (features, heads, bound conditions), because it
synchronises gradients rather than wrapping the forward. With `sync_bn`, BatchNorm uses the
statistics of the global batch (per route, so OAT's per-sample routes stay right); without
it each process normalises with its own share. Process 0 writes logs, checkpoints and results.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError
from ..nn import RoutedBatchNorm2d


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device named; "auto" is the local process's GPU when there is one (cuda:LOCAL_RANK)."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but this machine has no CUDA device; use cpu.")
    return device


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def in_torchrun_job() -> bool:
    """Whether this process is one of several that torchrun started (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def joined(device_type: str) -> Iterator[Distributed]:
    """The process's place in a torchrun job (WORLD_SIZE > 1), or a single process. A process group
    this starts is destroyed on leaving, also after an error, as torch asks of every process (a Gloo
    group left alive at exit can abort the process: pytorch/pytorch#190489; the CLI also skips the
    interpreter's teardown in torchrun processes, robustrain.cli.main). A group that already existed
    is its creator's to destroy."""
    if not in_torchrun_job():
        yield Distributed()
        return
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    try:
        yield Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    finally:
        if started:
            dist.destroy_process_group()


def average_gradients(parameters: list[nn.Parameter], world: int) -> None:
    """Replace each gradient by its mean over the processes (one all-reduce of all of them)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if world <= 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_sum(tensor: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(tensor)
    return tensor


def synchronise_batch_norm(model: nn.Module, enabled: bool) -> None:
    """Make every RoutedBatchNorm2d of `model` use global-batch statistics (or not)."""
    group = dist.group.WORLD if enabled and dist.is_initialized() else None
    for module in model.modules():
        if isinstance(module, RoutedBatchNorm2d):
            module.sync_group = group
