"""Integer positions outside an image mapped back inside it, for gathers that pad without copying
(the corruption ops' filters and resizes, the reflect-padded training crop)."""

from __future__ import annotations

import torch

# Border rules by the names scipy uses: "nearest" repeats the edge pixel (cv2 BORDER_REPLICATE);
# "reflect" mirrors including the edge pixel, d c b a | a b c d (cv2 BORDER_REFLECT);
# "mirror" mirrors about the edge pixel, d c b | a b c d (cv2 BORDER_REFLECT_101, torch "reflect").
BORDERS = ("nearest", "reflect", "mirror")


def fold_index(index: torch.Tensor, size: int, border: str) -> torch.Tensor:
    """Map integer positions outside [0, size) back inside by the border rule."""
    if border == "nearest" or size == 1:
        return index.clamp(0, size - 1)
    if border == "reflect":
        period = index.remainder(2 * size)
        return torch.where(period >= size, 2 * size - 1 - period, period)
    if border == "mirror":
        period = index.remainder(2 * size - 2)
        return torch.where(period >= size, 2 * size - 2 - period, period)
    raise ValueError(f"border {border!r} is not one of {BORDERS}")
