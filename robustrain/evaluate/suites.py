"""The named evaluation suites: what each one measures, on how many images, with which attacks."""

from __future__ import annotations

from dataclasses import dataclass

from ..attacks.registry import ATTACKS
from ..corruptions import BENCHMARK, CORRUPTIONS, EXTRA, SEVERITIES
from ..registry import Registry

QUICK_CORRUPTIONS = ("gaussian_noise", "motion_blur", "snow", "contrast", "jpeg_compression")


@dataclass(frozen=True)
class Suite:
    """name: how results files and reports call it.
    corruptions / severities: the corrupted test sets; corruption_images: how many test images each
        uses (a fixed seeded subset; None = the whole test set).
    attacks: among "fgsm", "pgd20", "autoattack", on a fixed seeded subset of attack_images test
        images (None = all); every attack sees the same images, so a worst case per image exists.
    eps_curve: PGD-20 is also run at these multiples of eps (robust accuracy against eps).
    """

    name: str
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    corruption_images: int | None
    attacks: tuple[str, ...]
    attack_images: int | None
    eps_curve: tuple[float, ...]

    def __post_init__(self):
        for attack in self.attacks:
            ATTACKS.get(attack)
        for corruption in self.corruptions:
            CORRUPTIONS.get(corruption)


SUITES: Registry[Suite] = Registry("suite")
for _suite in (
    Suite("quick", QUICK_CORRUPTIONS, (3,), 1000, ("pgd20",), 1000, ()),
    Suite("standard", BENCHMARK, SEVERITIES, None, ("pgd20", "autoattack"), 1000, (0.25, 0.5, 2.0)),
    Suite("corruptions", BENCHMARK, SEVERITIES, 2000, (), None, ()),
    Suite("full", BENCHMARK + EXTRA, SEVERITIES, None, ("fgsm", "pgd20", "autoattack"), None, (0.25, 0.5, 1.5, 2.0)),
):
    SUITES.add(_suite.name, _suite)


def get_suite(name: str) -> Suite:
    return SUITES.get(name)
