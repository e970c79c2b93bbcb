"""OAT's λ encodings: the FiLM input for each trade-off weight λ of the model's grid Λ.

Encodings, as the official code's `--encoding` (rows of a matrix, one per λ in Λ):
- "rand" (default): the orthogonal factor Q of the QR decomposition of a dim x dim standard
  Gaussian matrix. The official code does not seed it; here it is drawn from the global torch
  generator (seeded by the run) and, like every encoding, stored as a buffer, so a checkpoint
  carries it and a reloaded model computes exactly what the trained one did.
- "onehot": rows of the dim x dim identity.
- "dct": rows of the unnormalised DCT-II matrix, 2 cos(π k (2n + 1) / (2 dim)) (scipy's
  `dct(eye(dim), axis=0)`).
- "scalar": λ itself, a 1-d code (the official "none").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ENCODINGS = ("rand", "onehot", "dct", "scalar")


def encoding_matrix(encoding: str, values: Sequence[float], dim: int) -> torch.Tensor:
    """The (len(values), dim) matrix whose row i encodes values[i] (dim is 1 for "scalar")."""
    if encoding == "scalar":
        return torch.tensor(values, dtype=torch.float32).unsqueeze(1)
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown λ encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}.")
    if dim < len(values):
        raise ValueError(f"encoding_dim {dim} is smaller than the {len(values)} λ values it must tell apart.")
    if encoding == "rand":
        q, _ = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64))
        full = q.float()
    elif encoding == "onehot":
        full = torch.eye(dim)
    else:
        k = torch.arange(dim, dtype=torch.float64).unsqueeze(1)
        n = torch.arange(dim, dtype=torch.float64).unsqueeze(0)
        full = (2 * torch.cos(math.pi * k * (2 * n + 1) / (2 * dim))).float()
    return full[: len(values)].contiguous()


class LambdaCodes(nn.Module):
    """The grid Λ and its encoding matrix (both buffers), and the BN route of each λ.

    dual_bn: λ = 0 uses BN route 0 (clean) and every λ > 0 route 1 (adversarial), as OAT's dual
    BN; without it every λ uses route 0 (the paper's ablation).
    """

    def __init__(self, values: Sequence[float], encoding: str = "rand", dim: int = 128, dual_bn: bool = True):
        super().__init__()
        values = [float(v) for v in values]
        if not values or len(set(values)) != len(values) or any(not 0 <= v <= 1 for v in values):
            raise ValueError(f"lambdas must be distinct values in [0, 1], got {values}.")
        self.encoding, self.dual_bn = encoding, dual_bn
        self.grid = tuple(values)  # the same λ values on the host, for sampling without asking the device
        self.register_buffer("values", torch.tensor(values, dtype=torch.float32))
        self.register_buffer("matrix", encoding_matrix(encoding, values, dim))

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    @property
    def num_routes(self) -> int:
        return 2 if self.dual_bn else 1

    def index(self, lam: float) -> int:
        """The position of λ in the grid (a model only knows the λ values it was trained on)."""
        matches = (self.values == float(lam)).nonzero()
        if not len(matches):
            raise ValueError(f"λ = {lam} is not one of this model's values {self.values.tolist()}.")
        return int(matches[0])

    def encode(self, indices: torch.Tensor) -> torch.Tensor:
        """FiLM codes, (batch, dim), for per-sample grid indices."""
        return self.matrix[indices]

    def route(self, indices: torch.Tensor) -> torch.Tensor:
        """BN routes, (batch,), for per-sample grid indices."""
        if not self.dual_bn:
            return torch.zeros_like(indices)
        return (self.values[indices] > 0).long()

    def extra_repr(self) -> str:
        return f"values={self.values.tolist()}, encoding={self.encoding!r}, dim={self.dim}, dual_bn={self.dual_bn}"
