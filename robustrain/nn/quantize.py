"""Symmetric per-channel k-bit weight quantization (k = 2..8), post-training and fake-quant.

For a weight tensor W with output channels along dim 0 and q_max = 2^(k-1) - 1:

    s_c = max_j |W_cj| / q_max,   Q(W)_cj = s_c · clamp(round(W_cj / s_c), -q_max, q_max)

so every weight moves by at most s_c / 2 and the largest weight of each channel is kept
exactly (k = 2 gives the ternary levels {-s_c, 0, s_c}). `fake_quantize` computes Q(W) in the
forward pass and passes gradients straight through to W (the straight-through estimator),
which is how a quantized model is trained. Q is idempotent: quantizing quantized weights
returns them unchanged, so a post-training-quantized checkpoint is a valid starting point for
fake-quant training.
"""

from __future__ import annotations

import torch

BITS = range(2, 9)


def check_bits(bits: int) -> int:
    if bits not in BITS:
        raise ValueError(f"weight_bits must be an integer from 2 to 8, got {bits!r}.")
    return bits


def channel_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """s_c per output channel, shaped to broadcast over `weight`."""
    levels = 2 ** (bits - 1) - 1
    peak = weight.detach().abs().flatten(1).amax(1).clamp_min(torch.finfo(weight.dtype).tiny)
    return (peak / levels).view((-1,) + (1,) * (weight.dim() - 1))


def quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Q(W): the nearest of the channel's 2^k - 1 symmetric levels."""
    levels = 2 ** (check_bits(bits) - 1) - 1
    scale = channel_scales(weight, bits)
    return (weight / scale).round().clamp(-levels, levels) * scale


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Q(W) forward, identity backward (straight-through estimator)."""
    return weight + (quantize_weight(weight, bits) - weight).detach()
