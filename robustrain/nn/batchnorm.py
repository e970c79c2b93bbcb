"""BatchNorm that follows the call's `Condition`: per-sample branches and frozen statistics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .condition import DEFAULT, Condition


def _normalize(bn: nn.BatchNorm2d, x: torch.Tensor, update_stats: bool) -> torch.Tensor:
    """`bn(x)`, except that in train mode with update_stats=False the batch statistics are
    used for normalisation but the running statistics are not written."""
    if bn.training and not update_stats:
        return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return bn(x)


class RoutedBatchNorm2d(nn.Module):
    """`num_routes` independent BatchNorm2d layers; each sample uses the one its route names.

    With one route this is a plain BatchNorm2d (same parameters, same state-dict layout
    under `branches.0`). Samples of different routes never share batch statistics.
    """

    def __init__(self, num_features: int, num_routes: int = 1, **bn_kwargs):
        super().__init__()
        if num_routes < 1:
            raise ValueError(f"num_routes must be at least 1, got {num_routes}.")
        self.branches = nn.ModuleList(nn.BatchNorm2d(num_features, **bn_kwargs) for _ in range(num_routes))

    @property
    def num_routes(self) -> int:
        return len(self.branches)

    def forward(self, x: torch.Tensor, cond: Condition = DEFAULT) -> torch.Tensor:
        route = cond.route
        if isinstance(route, int):
            return _normalize(self._branch(route), x, cond.update_bn_stats)
        if route.shape != (x.shape[0],):
            raise ValueError(f"route must have shape ({x.shape[0]},) for this batch, got {tuple(route.shape)}.")
        if route.numel() and not 0 <= int(route.min()) <= int(route.max()) < self.num_routes:
            raise ValueError(f"route values must lie in 0..{self.num_routes - 1}, got {route.unique().tolist()}.")
        out = torch.empty_like(x)
        for r in range(self.num_routes):
            rows = (route == r).nonzero().squeeze(1)
            if rows.numel():
                out[rows] = _normalize(self.branches[r], x[rows], cond.update_bn_stats)
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A single-route layer also loads a plain BatchNorm2d's keys (prefix.weight, ...),
        # so checkpoints of ordinary models load without renaming.
        if self.num_routes == 1:
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                if prefix + name in state_dict:
                    state_dict[f"{prefix}branches.0.{name}"] = state_dict.pop(prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _branch(self, route: int) -> nn.BatchNorm2d:
        if not 0 <= route < self.num_routes:
            raise ValueError(f"route {route} does not exist: this layer has routes 0..{self.num_routes - 1}.")
        return self.branches[route]
