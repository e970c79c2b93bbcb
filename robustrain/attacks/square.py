"""Square Attack (Andriushchenko et al., ECCV 2020), a score-based black-box attack.

Random search over square-shaped updates: each query changes one s x s window (in every
channel) and is kept when it lowers the margin z_y - max_{i != y} z_i (or fools the
model). The window side shrinks on a fixed schedule of the fraction p of pixels changed,
written for 10,000 queries and by default rescaled to the query budget, as the original Square
code does; AutoAttack builds its Square with `rescale_schedule=False` (at its 5,000 queries the
squares then shrink half as fast). L-inf windows are set to the ball's corners; L2 windows
move perturbation mass from a second window into the first, following the "meta"
pattern eta of nested squares of alternating sign. Following AutoAttack's version, one
window position and one sign per channel are drawn per query for the whole batch.
It needs no gradients, so it is immune to gradient masking: AutoAttack runs it last.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from .base import Attack, ModelMode, WorstCase, check_norm
from .norms import Norm, per_image, size


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i: negative once the image is misclassified."""
    z = logits.float()
    true = z.gather(1, y[:, None]).squeeze(1)
    return true - z.scatter(1, y[:, None], float("-inf")).max(1).values


def fraction_schedule(p_init: float, query: int, budget: int, rescale: bool = True) -> float:
    """The fraction of pixels a window covers at `query`, on the paper's schedule for
    10,000 queries, stretched to `budget` when `rescale`."""
    it = int(query / budget * 10000) if rescale else query
    for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                           (6000, 128), (8000, 256)):
        if it <= bound:
            return p_init / divisor
    return p_init / 512


def _nested_squares(rows: int, cols: int) -> torch.Tensor:
    """Concentric rectangles weighted 1/(k+1)^2 around the centre, unit L2 norm."""
    pattern = torch.zeros(rows, cols)
    top, left = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        pattern[max(top, 0):min(top + 2 * k + 1, rows), max(left, 0):min(left + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
        top, left = top - 1, left - 1
    return pattern / pattern.norm()


def meta_pattern(side: int, generator: torch.Generator | None) -> torch.Tensor:
    """eta: a positive and a negative half of nested squares, randomly transposed; unit L2 norm."""
    pattern = torch.cat([_nested_squares(side // 2, side), -_nested_squares(side - side // 2, side)])
    pattern = pattern / pattern.norm()
    return pattern.t() if torch.rand(1, generator=generator).item() > 0.5 else pattern


class Square(Attack):
    def __init__(self, eps: float, queries: int = 5000, *, norm: Norm = "linf", p_init: float = 0.8,
                 restarts: int = 1, rescale_schedule: bool = True, model_mode: ModelMode = "eval"):
        super().__init__(model_mode)
        if eps < 0 or queries < 1 or restarts < 1 or not 0 < p_init <= 1:
            raise ConfigError(f"Square needs eps >= 0, queries >= 1, restarts >= 1 and p_init in (0, 1], got "
                              f"{eps}, {queries}, {restarts}, {p_init}.")
        check_norm(norm)
        self.eps, self.queries, self.norm, self.p_init, self.restarts = eps, queries, norm, p_init, restarts
        self.rescale_schedule = rescale_schedule

    def perturb(self, model, x, y, generator):
        with torch.no_grad():
            record = WorstCase(x, model(x).argmax(1) == y)
            for _ in range(self.restarts):
                index = record.remaining()
                if index.numel() == 0:
                    break
                found = self._search(model, x[index], y[index], generator)
                record.update(index, found, model(found).argmax(1) != y[index])
        return record.adversarial

    def _search(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator) -> torch.Tensor:
        best = self._start(x, generator)
        best_margin = margin(model(best), y)
        for query in range(self.queries):
            active = (best_margin > 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            candidate = self._step(x[active], best[active], query, generator)
            new_margin = margin(model(candidate), y[active])
            improved = new_margin < best_margin[active]
            best[active] = torch.where(improved[:, None, None, None], candidate, best[active])
            best_margin[active] = torch.where(improved, new_margin, best_margin[active])
        return best

    def _signs(self, shape, generator, device) -> torch.Tensor:
        return (2 * torch.randint(0, 2, shape, generator=generator) - 1).to(device, torch.float32)

    def _window(self, side: int, h: int, w: int, generator) -> tuple[int, int]:
        # The reference draws positions in [0, h - side): never the last one.
        top = torch.randint(0, h - side, (1,), generator=generator).item() if h > side else 0
        left = torch.randint(0, w - side, (1,), generator=generator).item() if w > side else 0
        return top, left

    def _start(self, x: torch.Tensor, generator) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.norm == "linf":
            # Vertical stripes of +-eps, one sign per column and channel.
            return (x + self.eps * self._signs((n, c, 1, w), generator, x.device)).clamp(0, 1)
        delta = torch.zeros_like(x)
        side = max(h // 5, 1)
        offset = (h - side * 5) // 2
        for row in range(offset, offset + side * (h // side), side):
            for col in range(offset, offset + side * (w // side), side):
                if row + side <= h and col + side <= w:
                    pattern = meta_pattern(side, generator).to(x)
                    signs = self._signs((n, c, 1, 1), generator, x.device)
                    delta[:, :, row:row + side, col:col + side] += pattern * signs
        return (x + self.eps * delta / (_l2(delta) + 1e-12)).clamp(0, 1)

    def _step(self, x: torch.Tensor, best: torch.Tensor, query: int, generator) -> torch.Tensor:
        n, c, h, w = x.shape
        p = fraction_schedule(self.p_init, query, self.queries, self.rescale_schedule)
        side = round(math.sqrt(p * h * w))
        if self.norm == "linf":
            side = min(max(side, 1), h, w)
            top, left = self._window(side, h, w, generator)
            candidate = best.clone()
            signs = self._signs((c, 1, 1), generator, x.device)
            window = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
            candidate[window] = x[window] + self.eps * signs
            return candidate.clamp(0, 1)
        side = max(side, 3)
        side = min(side + (side % 2 == 0), h, w)
        top, left = self._window(side, h, w, generator)
        top2, left2 = self._window(side, h, w, generator)
        delta = best - x
        first = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
        second = (slice(None), slice(None), slice(top2, top2 + side), slice(left2, left2 + side))
        window_norm = delta[first].pow(2).sum((-2, -1), keepdim=True).sqrt()
        both = torch.zeros_like(x)
        both[first] = 1
        both[second] = 1
        mass = (delta * both).pow(2).sum((-2, -1), keepdim=True).sqrt()
        image_norm = _l2(delta)
        update = meta_pattern(side, generator).to(x) * self._signs((n, c, 1, 1), generator, x.device)
        update = update + delta[first] / (window_norm + 1e-12)
        spare = torch.clamp(self.eps ** 2 - image_norm ** 2, min=0) / c
        update = update / (update.pow(2).sum((-2, -1), keepdim=True).sqrt() + 1e-12) * (spare + mass ** 2).sqrt()
        delta = delta.clone()
        delta[second] = 0
        delta[first] = update
        return (x + self.eps * delta / (_l2(delta) + 1e-12)).clamp(0, 1)


def _l2(t: torch.Tensor) -> torch.Tensor:
    return per_image(size(t, "l2"), t)
