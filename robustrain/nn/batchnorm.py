"""BatchNorm that follows the call's `Condition`: per-sample branches, per-width branches,
frozen statistics and an optional FiLM modulation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .condition import DEFAULT, Condition
from .film import FiLM
from .slimmable import channels_at, check_widths


def _normalize(bn: nn.BatchNorm2d, x: torch.Tensor, update_stats: bool, group=None) -> torch.Tensor:
    """`bn(x)`, except that in train mode with update_stats=False the batch statistics are
    used for normalisation but the running statistics are not written, and that with a process
    group the batch statistics are those of the batch of every process together."""
    if bn.training and group is not None:
        return _synchronised(bn, x, update_stats, group)
    if bn.training and not update_stats:
        return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return bn(x)


def _route_statistics(values: torch.Tensor, route: torch.Tensor, num_routes: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per route r, over the images of `values` (float, N x C x H x W) whose `route` is r: the
    channels' mean and biased variance (num_routes x C, differentiable, 0 for a route without
    images), the pixels counted, and `values` minus each image's route mean. One pass over the
    batch for every route, with 0/1 weights, so that no shape depends on the data (no host
    synchronisation)."""
    member = F.one_hot(route, num_routes).to(values.dtype)  # N x R
    pixels = values.shape[2] * values.shape[3]
    count = member.sum(0) * pixels
    mean = (member.t() @ values.sum((2, 3))) / count.clamp_min(1).unsqueeze(1)
    centred = values - mean[route].view(*values.shape[:2], 1, 1)
    var = (member.t() @ (centred * centred).sum((2, 3))) / count.clamp_min(1).unsqueeze(1)
    return mean, var, count, centred


def _update_running(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
    """BatchNorm's running-statistics update from one batch's mean and biased variance over `count`
    pixels, left out where the count is 0 (a route without images in this batch)."""
    with torch.no_grad():
        present = count > 0
        # momentum None: BatchNorm's cumulative average over the batches seen
        momentum = bn.momentum if bn.momentum is not None else 1.0 / (bn.num_batches_tracked + 1).float()
        unbiased = var * count / (count - 1).clamp_min(1)
        bn.running_mean.copy_(torch.where(present, (1 - momentum) * bn.running_mean + momentum * mean,
                                          bn.running_mean))
        bn.running_var.copy_(torch.where(present, (1 - momentum) * bn.running_var + momentum * unbiased,
                                         bn.running_var))
        bn.num_batches_tracked.add_(present.to(bn.num_batches_tracked.dtype))


def _normalize_routes(branches: list[nn.BatchNorm2d], x: torch.Tensor, route: torch.Tensor, update_stats: bool,
                      modulation: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Each image of `x` through the branch its `route` names, as `branches[r](x[route == r])`
    would do it (in train mode: each route's batch statistics and running-statistics update are
    those of its images alone). Every route at once: per-route means, variances, scales and
    shifts are gathered per image, so the batch is gone over a fixed number of times whatever
    the number of routes (one pass per route and a select cost OAT's training twice as much).
    modulation: a FiLM's (factor, offset) per image, (N, C) or (1, C), folded into the same pass."""
    first = branches[0]
    values = x.float()
    if first.training or first.running_mean is None:
        mean, var, count, values = _route_statistics(values, route, len(branches))
        if update_stats and first.track_running_stats:
            for r, bn in enumerate(branches):
                _update_running(bn, mean[r].detach(), var[r].detach(), count[r])
        subtracted = torch.zeros_like(mean)  # the values are centred already
    else:
        subtracted = torch.stack([bn.running_mean for bn in branches])
        var = torch.stack([bn.running_var for bn in branches])
    # y = (x - mean) / sqrt(var + eps) * weight + bias = x * scale + shift, per route and channel
    scale = torch.rsqrt(var + first.eps)
    shift = -subtracted * scale
    if first.affine:
        weight = torch.stack([bn.weight for bn in branches])
        scale, shift = scale * weight, shift * weight + torch.stack([bn.bias for bn in branches])
    scale, shift = scale[route], shift[route]
    if modulation is not None:
        factor, offset = modulation
        scale, shift = scale * factor, shift * factor + offset
    shape = (*x.shape[:2], 1, 1)
    return torch.addcmul(shift.view(shape), values, scale.view(shape)).to(x.dtype)


class _SumOverProcesses(torch.autograd.Function):
    """The sum of a tensor over the processes of `group`, differentiable: every process's input
    feeds every process's output, so the gradient of each input is the sum of the output gradients
    over the processes. (torch.distributed.nn.functional.all_reduce did this and is deprecated; the
    functional collectives that replace it have a gradient only in recent torch versions.)"""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone()
        torch.distributed.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.clone()
        torch.distributed.all_reduce(total, group=ctx.group)
        return total, None


def _synchronised(bn: nn.BatchNorm2d, x: torch.Tensor, update_stats: bool, group) -> torch.Tensor:
    """Batch norm with the mean and variance of the global batch: per-channel sums, sums of
    squares and counts are all-reduced (differentiably) across the group. Every process must
    call it, also with no rows, so that the collectives match."""
    c = x.shape[1]
    dims = (0, 2, 3)
    local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_tensor([x.numel() / c])])
    total = _SumOverProcesses.apply(local, group)
    count = total[-1].clamp_min(1)
    mean = total[:c] / count
    var = (total[c:2 * c] / count - mean * mean).clamp_min(0)
    scale = torch.rsqrt(var + bn.eps) * bn.weight
    out = (x - mean.view(1, c, 1, 1)) * scale.view(1, c, 1, 1) + bn.bias.view(1, c, 1, 1)
    if update_stats and bn.track_running_stats and total[-1] > 1:
        with torch.no_grad():
            momentum = bn.momentum
            bn.running_mean.mul_(1 - momentum).add_(momentum * mean)
            bn.running_var.mul_(1 - momentum).add_(momentum * var * count / (count - 1))
            bn.num_batches_tracked += 1
    return out


class RoutedBatchNorm2d(nn.Module):
    """`num_routes` independent BatchNorm2d layers per width; each sample uses the one its route names.

    With one route and one width this is a plain BatchNorm2d (same parameters, same state-dict
    layout under `branches.0`). Samples of different routes never share batch statistics, and
    each width of a slimmable network has its own layers (OATS' switchable dual BN): branch
    `width_index * num_routes + route`. With `film_dim` > 0 a FiLM layer modulates the
    normalised features with the call's code (OAT).
    """

    def __init__(self, num_features: int, num_routes: int = 1, widths: tuple[float, ...] = (1.0,),
                 film_dim: int = 0, film_residual: bool = False, **bn_kwargs):
        super().__init__()
        if num_routes < 1:
            raise ValueError(f"num_routes must be at least 1, got {num_routes}.")
        self.widths = check_widths(widths)
        self._num_routes = num_routes
        self.branches = nn.ModuleList(nn.BatchNorm2d(channels_at(num_features, w), **bn_kwargs)
                                      for w in self.widths for _ in range(num_routes))
        self.film = FiLM(num_features, film_dim, film_residual) if film_dim > 0 else None
        self.sync_group = None  # set by the trainer for synchronised BN across processes

    @property
    def num_routes(self) -> int:
        return self._num_routes

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        first = self._width_index(cond.width) * self.num_routes
        route = cond.route
        if isinstance(route, int):
            out = _normalize(self.branches[first + self._check_route(route)], x, cond.update_bn_stats,
                             self.sync_group)
        elif self.sync_group is not None and self.training:
            out = self._per_sample_synchronised(x, self._checked(route, x), first, cond.update_bn_stats)
        else:  # FiLM folded into the normalisation: one pass over the batch instead of three
            modulation = self.film.coefficients(cond.code, x.shape[1], x) if self.film is not None else None
            return _normalize_routes(list(self.branches[first:first + self.num_routes]), x, self._checked(route, x),
                                     cond.update_bn_stats, modulation)
        return self.film(out, cond.code) if self.film is not None else out

    def _checked(self, route: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if route.shape != (x.shape[0],):
            raise ValueError(f"route must have shape ({x.shape[0]},) for this batch, got {tuple(route.shape)}.")
        # Checked on the device: asking the host would stall a GPU at every layer.
        torch._assert_async(((route >= 0) & (route < self.num_routes)).all(),
                            f"route values must lie in 0..{self.num_routes - 1}")
        return route

    def _per_sample_synchronised(self, x, route, first, update_stats):
        """Each route's rows through its branch with the global batch's statistics: every process
        takes part in every route's collective, also with no rows of it."""
        out = torch.empty_like(x)
        for r in range(self.num_routes):
            rows = (route == r).nonzero().squeeze(1)
            out[rows] = _normalize(self.branches[first + r], x[rows], update_stats, self.sync_group)
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A single-branch layer also loads a plain BatchNorm2d's keys (prefix.weight, ...),
        # so checkpoints of ordinary models load without renaming.
        if len(self.branches) == 1:
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                if prefix + name in state_dict:
                    state_dict[f"{prefix}branches.0.{name}"] = state_dict.pop(prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_route(self, route: int) -> int:
        if not 0 <= route < self.num_routes:
            raise ValueError(f"route {route} does not exist: this layer has routes 0..{self.num_routes - 1}.")
        return route

    def _width_index(self, width: float) -> int:
        try:
            return self.widths.index(width)
        except ValueError:
            raise ValueError(f"width {width} is not one of this model's widths {list(self.widths)}.") from None


@dataclass(frozen=True)
class NormSpec:
    """How a model builds its BatchNorm sites: routes (dual BN), widths (slimmable), FiLM.

    `norm(channels)` builds a main-path site (FiLM-modulated when film_dim > 0);
    `norm(channels, film=False)` a site FiLM never touches (shortcut BN, final BN), as in
    the OAT code.
    """

    num_routes: int = 1
    widths: tuple[float, ...] = (1.0,)
    film_dim: int = 0
    film_residual: bool = False

    def __call__(self, channels: int, film: bool = True) -> RoutedBatchNorm2d:
        return RoutedBatchNorm2d(channels, self.num_routes, self.widths, self.film_dim if film else 0,
                                 self.film_residual)
