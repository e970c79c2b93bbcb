"""Signs of gradient masking, the usual reason a robustness number is too good to be true
(Athalye et al., 2018; Carlini et al., 2019; the checks of the AutoAttack code).

Each check returns a `Flag`: whether it fired and a sentence saying what was seen. None
proves robustness; any that fires means white-box attack numbers should not be trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import attacking
from .norms import format_radius


@dataclass(frozen=True)
class Flag:
    name: str
    fired: bool
    detail: str


def randomized_outputs(model: nn.Module, x: torch.Tensor) -> Flag:
    """The same input twice in eval mode gives different logits: gradients are of a random function."""
    with attacking(model, "eval"), torch.no_grad():
        difference = (model(x) - model(x)).abs().max().item()
    fired = difference > 1e-5
    return Flag("randomized outputs", fired, f"two eval-mode passes of the same images differ by up to {difference:.2g}"
                + (": use an expectation-over-transformation attack." if fired else "."))


def softmax_outputs(model: nn.Module, x: torch.Tensor) -> Flag:
    """The model returns probabilities, not logits: cross-entropy on them has vanishing gradients."""
    with attacking(model, "eval"), torch.no_grad():
        out = model(x)
    fired = bool((out >= 0).all() and torch.allclose(out.sum(1), torch.ones(len(out), device=out.device), atol=1e-4))
    return Flag("softmax outputs", fired, "the outputs are non-negative and sum to 1 per image: pass logits, not "
                "probabilities." if fired else "the outputs are not probabilities.")


def zero_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threshold: float = 0.01) -> Flag:
    """More than `threshold` of the correctly classified images have an all-zero input gradient of
    the cross-entropy: gradient-based attacks cannot move them."""
    with attacking(model, "eval"):
        x = x.detach().requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits.float(), y, reduction="sum"), x)
    correct = logits.argmax(1) == y
    zero = (grad.flatten(1).abs().amax(1) == 0) & correct
    share = zero.sum().item() / max(correct.sum().item(), 1)
    return Flag("zero gradients", share > threshold,
                f"{100 * share:.1f}% of the correctly classified images have an all-zero input gradient.")


def black_box_beats_white_box(robust_accuracy_after: Mapping[str, float], black_box: str = "square") -> Flag:
    """In an AutoAttack run, the score-based attack (run last) still breaks images the gradient-based ones could not."""
    names = list(robust_accuracy_after)
    if black_box not in names or names.index(black_box) == 0:
        return Flag("black box beats white box", False, f"{black_box} did not run after a white-box attack.")
    position = names.index(black_box)
    before, after = robust_accuracy_after[names[position - 1]], robust_accuracy_after[black_box]
    gain = before - after
    return Flag("black box beats white box", gain > 0,
                f"{black_box} lowered robust accuracy from {100 * before:.2f}% to {100 * after:.2f}% after the "
                f"white-box attacks" + (": their gradients mislead them." if gain > 0 else "."))


def accuracy_not_falling_with_eps(eps: Sequence[float], accuracy: Sequence[float], unbounded: float = 0.05) -> Flag:
    """Robust accuracy must not rise as eps grows, and must be near zero at the largest eps if that is huge."""
    pairs = sorted(zip(eps, accuracy))
    rises = [(a, b) for (_, a), (_, b) in zip(pairs, pairs[1:]) if b > a + 1e-9]
    largest_eps, last = pairs[-1]
    stuck = largest_eps >= 0.5 and last > unbounded
    detail = ", ".join(f"{100 * a:.1f}% at eps {format_radius(e)}" for e, a in pairs)
    return Flag("accuracy not falling with eps", bool(rises) or stuck,
                f"robust accuracy: {detail}"
                + ("; it rises with eps or stays high at a huge eps." if rises or stuck else "."))
