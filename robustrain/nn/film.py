"""FiLM (Perez et al., 2018) as the OAT code uses it: a per-channel scale and shift predicted
from a conditioning code.

    [mu, sigma] = leaky_relu(W2 leaky_relu(W1 e + b1) + b2),   h <- h * mu + sigma

Both halves go through leaky_relu (slope 0.01) and the scale is not parameterised as 1 + Δ,
so at initialisation mu is close to 0 and the modulated features start near sigma: this is
the official code's behaviour, kept on purpose (`residual=True` gives the common
h * (1 + Δmu) + Δsigma form instead, without the output activations).

On a slimmable network the layer sees fewer channels than it was built for; it then uses the
first 2c hidden units and, for channel j, the same scale and shift rows as at full width.
(The official SlimmableFiLM_Layer instead takes the first 2c output rows and splits them in
half, so at a reduced width a channel's shift comes from a row that is another channel's
scale at full width; we keep each channel's rows the same at every width.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FiLM(nn.Module):
    def __init__(self, channels: int, code_dim: int, residual: bool = False):
        super().__init__()
        if channels < 1 or code_dim < 1:
            raise ValueError(f"FiLM needs positive channels and code_dim, got {channels} and {code_dim}.")
        self.channels, self.code_dim, self.residual = channels, code_dim, residual
        self.hidden = nn.Linear(code_dim, 2 * channels)
        self.out = nn.Linear(2 * channels, 2 * channels)

    def forward(self, x: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
        factor, offset = self.coefficients(code, x.shape[1], x)
        return x * factor.view(*factor.shape, 1, 1) + offset.view(*offset.shape, 1, 1)

    def coefficients(self, code: torch.Tensor | None, channels: int, like: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """The modulation h <- h * factor + offset for `channels` channels: factor and offset of shape
        (N, channels), one row per row of `code` (one row for a single code), on `like`'s device and
        in its dtype."""
        if code is None:
            raise ValueError("this layer is conditioned (FiLM) but the call carries no code: bind the model to a "
                             "setting first (model.bind(lam=...)) or pass Condition(code=...).")
        if code.shape[-1] != self.code_dim:
            raise ValueError(f"the FiLM code has {code.shape[-1]} dimensions; this model expects {self.code_dim}.")
        c = channels
        if c > self.channels:
            raise ValueError(f"FiLM built for {self.channels} channels got {c}.")
        code = code.reshape(-1, self.code_dim).to(like.device, like.dtype)
        hidden = F.leaky_relu(F.linear(code, self.hidden.weight[:2 * c], self.hidden.bias[:2 * c]))
        rows = slice(0, c), slice(self.channels, self.channels + c)
        weight = torch.cat([self.out.weight[r, :2 * c] for r in rows])
        bias = torch.cat([self.out.bias[r] for r in rows])
        scale, shift = F.linear(hidden, weight, bias).view(-1, 2, c).unbind(1)
        if self.residual:
            return 1 + scale, shift
        return F.leaky_relu(scale), F.leaky_relu(shift)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, code_dim={self.code_dim}, residual={self.residual}"
