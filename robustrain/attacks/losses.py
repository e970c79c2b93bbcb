"""Per-sample losses that attacks ascend."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")


def kl_from_reference(logits: torch.Tensor, y: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_adv) per sample: TRADES' inner objective (labels unused)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    log_ref = F.log_softmax(reference.float(), dim=1)
    return (log_ref.exp() * (log_ref - log_p)).sum(1)


def dlr(logits: torch.Tensor, y: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein, 2020), ascended by untargeted attacks:
        -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)
    with z_pi1 >= z_pi2 >= ... the sorted logits. Invariant to shifting and scaling the logits."""
    z = logits.float()
    top, _ = z.topk(3, dim=1)
    true = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).max(1).values
    return -(true - other) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR, ascended toward class `target`:
        -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)"""
    z = logits.float()
    top, _ = z.topk(4, dim=1)
    gap = z.gather(1, y[:, None]).squeeze(1) - z.gather(1, target[:, None]).squeeze(1)
    return -gap / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


LOSSES = {"ce": cross_entropy, "kl": kl_from_reference, "dlr": dlr}
