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


LOSSES = {"ce": cross_entropy, "kl": kl_from_reference}
