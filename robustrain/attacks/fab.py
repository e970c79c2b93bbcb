"""FAB (Croce & Hein, ICML 2020), the fast adaptive boundary attack, and its targeted form FAB-T.

FAB looks for the smallest perturbation that changes the decision. At the current point
x_k it linearises the decision boundary between the true class y and a class t,
    { z : f_t(x_k) - f_y(x_k) + <grad(f_t - f_y)(x_k), z - x_k> = 0 },
and projects both x_k and the original image x onto that hyperplane within the [0, 1]
box (minimal L-inf or L2 step). The next iterate mixes the two projections,
    x_k+1 = clip((1 - a)(x_k + eta d_k) + a (x + eta d_0)),  a = min(|d_k| / (|d_k| + |d_0|), alpha_max),
extrapolating by eta = 1.05. Once an iterate is adversarial, FAB records it if it is the
smallest so far and steps back towards x by the factor beta = 0.9. Untargeted FAB uses,
at each step, the class whose linearised boundary is closest; FAB-T (AutoAttack's
choice) fixes t to the 2nd, 3rd, ... most likely class of the clean image, one pass each.
An image counts as broken only if the perturbation found is within eps. Restarts after
the first begin at a random point at half the radius eps.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..host import normal, uniform
from .base import Attack, ModelMode, WorstCase, check_norm
from .norms import Norm, size


def project_linf(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest-L-inf step d with <w, t + d> = b and t + d in [0, 1], per row; where the box
    cannot reach the hyperplane, the step that gets closest. Rows: t, w (n, D); b (n,)."""
    # Flip (w, b) where needed so that <w, d> must grow; d itself is unchanged by the flip.
    sign = torch.where((w * t).sum(1) > b, -1.0, 1.0)[:, None]
    w = w * sign
    need = b * sign.squeeze(1) - (w * t).sum(1)
    # Moving coordinate i by up to `room` in the direction of sign(w_i) raises <w, d> by |w_i| room.
    room = torch.where(w > 0, 1 - t, t)
    weight = w.abs()
    order = room.argsort(1)
    room_sorted, weight_sorted = room.gather(1, order), weight.gather(1, order)
    # g(delta) = sum_i |w_i| min(delta, room_i) is piecewise linear; at delta = room_(k):
    done = torch.cumsum(weight_sorted * room_sorted, 1) - weight_sorted * room_sorted
    rest = weight_sorted.flip(1).cumsum(1).flip(1)
    reach = done + rest * room_sorted
    k = torch.searchsorted(reach, need[:, None].contiguous()).clamp(max=t.shape[1] - 1)
    slope = rest.gather(1, k)
    below = torch.where(k > 0, room_sorted.gather(1, (k - 1).clamp(min=0)), torch.zeros_like(slope))
    at_below = torch.where(k > 0, reach.gather(1, (k - 1).clamp(min=0)), torch.zeros_like(slope))
    delta = below + (need[:, None] - at_below) / slope.clamp_min(1e-12)
    delta = torch.where(need[:, None] > reach[:, -1:], room_sorted[:, -1:], delta).clamp(min=0)
    return torch.where(weight > 0, torch.minimum(delta, room) * torch.sign(w), torch.zeros_like(w))


def project_l2(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest-L2 step d with <w, t + d> = b and t + d in [0, 1], per row (closest reachable
    where infeasible). The minimiser is d_i = clip(lam w_i, -t_i, 1 - t_i) for the lam >= 0
    that makes <w, d> equal to the required change."""
    sign = torch.where((w * t).sum(1) > b, -1.0, 1.0)[:, None]
    w = w * sign
    need = b * sign.squeeze(1) - (w * t).sum(1)
    room = torch.where(w > 0, 1 - t, t)
    weight = w.abs()
    # Coordinate i saturates at lam_i = room_i / |w_i|; h(lam) = sum |w_i| min(lam |w_i|, room_i).
    saturation = torch.where(weight > 0, room / weight.clamp_min(1e-30), torch.full_like(room, float("inf")))
    order = saturation.argsort(1)
    sat_sorted, weight_sorted, room_sorted = saturation.gather(1, order), weight.gather(1, order), room.gather(1, order)
    finite = torch.isfinite(sat_sorted)
    done = torch.cumsum(torch.where(finite, weight_sorted * room_sorted, 0), 1) - torch.where(
        finite, weight_sorted * room_sorted, 0)
    rest = (weight_sorted ** 2).flip(1).cumsum(1).flip(1)
    reach = torch.where(finite, done + rest * sat_sorted, torch.full_like(done, float("inf")))
    k = torch.searchsorted(reach, need[:, None].contiguous()).clamp(max=t.shape[1] - 1)
    below = torch.where(k > 0, sat_sorted.gather(1, (k - 1).clamp(min=0)), torch.zeros_like(need[:, None]))
    at_below = torch.where(k > 0, reach.gather(1, (k - 1).clamp(min=0)), torch.zeros_like(need[:, None]))
    lam = below + (need[:, None] - at_below) / rest.gather(1, k).clamp_min(1e-30)
    lam = lam.clamp(min=0)
    return torch.minimum(lam * weight, room) * torch.sign(w)


class FAB(Attack):
    """FAB-T (targeted, `targets` classes, AutoAttack's default) or untargeted FAB."""

    def __init__(self, eps: float, steps: int = 100, *, norm: Norm = "linf", targeted: bool = True,
                 targets: int = 9, restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9,
                 model_mode: ModelMode = "eval"):
        super().__init__(model_mode)
        if eps < 0 or steps < 1 or restarts < 1 or targets < 1:
            raise ConfigError(f"FAB needs eps >= 0 and steps, restarts, targets >= 1, got {eps}, {steps}, "
                              f"{restarts}, {targets}.")
        check_norm(norm)
        self.eps, self.steps, self.norm, self.targeted, self.targets = eps, steps, norm, targeted, targets
        self.restarts, self.alpha_max, self.eta, self.beta = restarts, alpha_max, eta, beta

    def perturb(self, model, x, y, generator):
        with torch.no_grad():
            clean_logits = model(x)
        record = WorstCase(x, clean_logits.argmax(1) == y)
        ranks = range(2, min(self.targets, clean_logits.shape[1] - 1) + 2) if self.targeted else [None]
        for rank in ranks:
            for restart in range(self.restarts):
                index = record.remaining()
                if index.numel() == 0:
                    return record.adversarial
                target = None
                if rank is not None:
                    target = clean_logits[index].argsort(1, descending=True)[:, rank - 1]
                found, distance = self._run(model, x[index], y[index], target, restart > 0, generator)
                record.update(index, found, distance <= self.eps)
        return record.adversarial

    def _linearise(self, model, x1, y, target):
        """(f_k - f_y at x1, its gradient) for the class k whose linearised boundary is closest
        (untargeted) or for the target class."""
        x1 = x1.detach().requires_grad_(True)
        logits = model(x1)
        rows = torch.arange(x1.shape[0], device=x1.device)
        if target is not None:
            gap = logits[rows, target] - logits[rows, y]
            (grad,) = torch.autograd.grad(gap.sum(), x1)
            return gap.detach(), grad
        grads = torch.stack([torch.autograd.grad(logits[:, k].sum(), x1, retain_graph=True)[0]
                             for k in range(logits.shape[1])], 1)
        gaps = (logits - logits[rows, y][:, None]).detach()
        grad_gaps = grads - grads[rows, y][:, None]
        dual = grad_gaps.flatten(2).abs().sum(2) if self.norm == "linf" else grad_gaps.flatten(2).norm(dim=2)
        distance = gaps.abs() / (dual + 1e-12)
        distance[rows, y] = float("inf")
        k = distance.argmin(1)
        return gaps[rows, k], grad_gaps[rows, k]

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target, random_start: bool, generator):
        n = x.shape[0]
        shape = (-1,) + (1,) * (x.dim() - 1)
        project = project_linf if self.norm == "linf" else project_l2
        x1 = x.clone()
        if random_start:
            noise = 2 * uniform(x.shape, generator, x) - 1 if self.norm == "linf" else normal(x.shape, generator, x)
            x1 = (x + 0.5 * self.eps * noise / size(noise, self.norm).view(shape)).clamp(0, 1)
        best, best_size = x.clone(), torch.full((n,), float("inf"), device=x.device)
        flat_x = x.flatten(1)
        for _ in range(self.steps):
            gap, grad = self._linearise(model, x1, y, target)
            with torch.no_grad():
                w = grad.flatten(1)
                b = (w * x1.flatten(1)).sum(1) - gap
                steps = project(torch.cat([x1.flatten(1), flat_x]), torch.cat([w, w]), torch.cat([b, b]))
                d1, d0 = steps[:n].view_as(x), steps[n:].view_as(x)
                a1, a0 = size(d1, self.norm).clamp_min(1e-8), size(d0, self.norm).clamp_min(1e-8)
                alpha = (a1 / (a1 + a0)).clamp(0, self.alpha_max).view(shape)
                x1 = ((x1 + self.eta * d1) * (1 - alpha) + (x + self.eta * d0) * alpha).clamp(0, 1)
                adversarial = model(x1).argmax(1) != y
                distance = size(x1 - x, self.norm)
                smaller = adversarial & (distance < best_size)
                best = torch.where(smaller.view(shape), x1, best)
                best_size = torch.where(smaller, distance, best_size)
                x1 = torch.where(adversarial.view(shape), x + (x1 - x) * self.beta, x1)
        return best, best_size
