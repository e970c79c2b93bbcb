"""The conditioning value that travels with a forward call.

Methods that change how a network computes (which BatchNorm a sample uses, whether BN
statistics may change, a FiLM code, a sub-network width, channel masks) say so through a
`Condition` passed to `forward`, never through module-global switches: a module-global
switch is shared by every sample of a batch and by every replica under DDP, which is
exactly what breaks per-sample routing on several GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Condition:
    """How one forward call should run.

    route: per-sample BatchNorm branch, an int64 tensor of shape (batch,) or one int
        for the whole batch. Branch 0 is the default (clean) branch.
    update_bn_stats: False normalises with the batch's own statistics in train mode but
        leaves the running statistics untouched (selective BN, subnet passes).
    code: the FiLM input of a conditioned model (OAT's λ encoding): shape (batch, dim),
        one row per sample, or (dim,) for the whole batch. None for unconditioned models.
    width: the width multiplier of a slimmable model's sub-network (OATS); 1.0 is the
        whole network.
    channel_masks: per residual block (in the model's `mask_index` order), a 0/1 vector over the
        input channels of its middle convolution; masked channels are zeroed, without rescaling
        (EWS subnets). None: every channel.
    """

    route: torch.Tensor | int = 0
    update_bn_stats: bool = True
    code: torch.Tensor | None = None
    width: float = 1.0
    channel_masks: tuple[torch.Tensor, ...] | None = None


def mask_channels(x: torch.Tensor, cond: Condition, index: int) -> torch.Tensor:
    """x with the input channels block `index` masks in `cond` zeroed."""
    if cond.channel_masks is None:
        return x
    mask = cond.channel_masks[index]
    if mask.shape != (x.shape[1],):
        raise ValueError(f"the channel mask of block {index} has shape {tuple(mask.shape)}; the block's middle "
                         f"convolution takes {x.shape[1]} channels.")
    return x * mask.to(x.dtype).view(1, -1, 1, 1)


DEFAULT = Condition()
