"""How close a corrupted set is to the reference generator's: statistics and their tolerances.

The reference (make_cifar_c.py) draws from NumPy's global generator image by image, so no other
generator can equal it bit for bit; two sets are compared by what each corruption does to the same
clean images. Per corruption and severity, over N images (uint8, 0-255 levels):

    mean_abs_change = mean over images and values of |corrupted - clean|
    image_spread    = standard deviation over images of each image's mean |corrupted - clean|
    mean_change     = mean over images and values of (corrupted - clean)

and, for a fixed model, its error on the corrupted images. A statistic of ours passes when it lies
within a tolerance of the reference's mean over its seeds (`level_tolerance`, `error_tolerance`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .registry import BENCHMARK

# Below these, a difference is a rounding rule or a 1/32-pixel warp step, not a different corruption.
LEVEL_FLOOR = 0.1       # levels of 255, for the two change statistics
ERROR_FLOOR = 0.005     # model error (a share), on top of its seed-to-seed noise
NOISE_MULTIPLE = 4.0    # standard errors of a difference between two independent draws


@dataclass(frozen=True)
class ChangeStats:
    mean_abs_change: float
    image_spread: float
    mean_change: float


def change_statistics(clean: np.ndarray, corrupted: np.ndarray) -> ChangeStats:
    """Statistics of corrupted - clean, uint8 arrays of the same shape (N, ...), in levels."""
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean images {clean.shape} and corrupted images {corrupted.shape} differ in shape")
    difference = corrupted.astype(np.float64) - clean.astype(np.float64)
    per_image = np.abs(difference).reshape(len(difference), -1).mean(1)
    return ChangeStats(float(per_image.mean()), float(per_image.std()), float(difference.mean()))


def level_tolerance(image_spread: float, images: int) -> float:
    """Allowed gap of a change statistic: NOISE_MULTIPLE standard errors of the difference of two
    independent sets of `images` images (√2 · spread / √N), plus LEVEL_FLOOR."""
    return NOISE_MULTIPLE * math.sqrt(2) * image_spread / math.sqrt(images) + LEVEL_FLOOR


def binomial_sd(error: float, images: int) -> float:
    return math.sqrt(error * (1 - error) / images)


def error_tolerance(error: float, images: int, noise_ratio: float) -> float:
    """Allowed gap of a model error: NOISE_MULTIPLE standard errors of the difference of two draws,
    plus ERROR_FLOOR. Both draws corrupt the same clean images, so one draw's seed-to-seed standard
    deviation is `noise_ratio` times the binomial one (Reference.noise_ratio measures it)."""
    return NOISE_MULTIPLE * math.sqrt(2) * noise_ratio * binomial_sd(error, images) + ERROR_FLOOR


@dataclass(frozen=True)
class Check:
    """One statistic of one corruption and severity, ours against the reference's seed mean."""
    corruption: str
    severity: int
    statistic: str
    ours: float
    reference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return abs(self.ours - self.reference) <= self.tolerance

    def to_json(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def is_deterministic(reference: list[ChangeStats]) -> bool:
    """Every reference seed changed the images identically: the corruption draws nothing at random."""
    return all(r == reference[0] for r in reference[1:])


def check_changes(corruption: str, severity: int, ours: ChangeStats, reference: list[ChangeStats],
                  images: int) -> list[Check]:
    """Our change statistics against the reference's (one ChangeStats per reference seed).

    A deterministic corruption must match within LEVEL_FLOOR alone.
    """
    deterministic = is_deterministic(reference)
    spread = max(s.image_spread for s in reference + [ours])
    tolerance = LEVEL_FLOOR if deterministic else level_tolerance(spread, images)
    return [Check(corruption, severity, name, getattr(ours, name),
                  float(np.mean([getattr(r, name) for r in reference])), tolerance)
            for name in ("mean_abs_change", "mean_change")]


def check_error(corruption: str, severity: int, ours: float, reference: list[float], images: int,
                noise_ratio: float, deterministic: bool) -> Check:
    reference_error = float(np.mean(reference))
    tolerance = ERROR_FLOOR if deterministic else error_tolerance(max(ours, reference_error), images, noise_ratio)
    return Check(corruption, severity, "model_error", ours, reference_error, tolerance)


@dataclass(frozen=True)
class Reference:
    """The reference generator's statistics on a named set of clean images, one entry per seed.

    changes / model_errors: keyed "corruption/severity"; model_errors are a fixed model's (empty
    where the benchmark has no model here; clean_error None then). table: the severity table.
    """
    images: str
    image_count: int
    seeds: tuple[int, ...]
    changes: dict[str, tuple[ChangeStats, ...]]
    model_errors: dict[str, tuple[float, ...]]
    clean_error: float | None
    provenance: dict
    table: str = "cifar"

    @property
    def noise_ratio(self) -> float:
        """One draw's seed-to-seed standard deviation of the model error, in binomial standard
        deviations, pooled over the random corruptions: each pair of seeds estimates the variance of
        one draw as (e0 - e1)² / 2."""
        ratios = []
        for name, errors in self.model_errors.items():
            if is_deterministic(list(self.changes[name])):
                continue
            mean = float(np.mean(errors))
            ratios.append(float(np.var(errors, ddof=1)) / binomial_sd(mean, self.image_count) ** 2)
        return math.sqrt(float(np.mean(ratios))) if ratios else 1.0

    def to_json(self) -> dict:
        return {"table": self.table, "images": self.images, "image_count": self.image_count, "seeds": list(self.seeds),
                "clean_error": self.clean_error, "provenance": self.provenance,
                "changes": {key: [asdict(s) for s in stats] for key, stats in self.changes.items()},
                "model_errors": {key: list(errors) for key, errors in self.model_errors.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "Reference":
        return cls(data["images"], data["image_count"], tuple(data["seeds"]),
                   {key: tuple(ChangeStats(**s) for s in stats) for key, stats in data["changes"].items()},
                   {key: tuple(errors) for key, errors in data["model_errors"].items()},
                   data["clean_error"], data["provenance"], data.get("table", "cifar"))


def key(corruption: str, severity: int) -> str:
    return f"{corruption}/{severity}"


def check_all(reference: Reference, changes: dict[str, ChangeStats], model_errors: dict[str, float]) -> list[Check]:
    """Every statistic of ours (keyed like the reference's) against the reference's."""
    checks, noise_ratio = [], reference.noise_ratio
    for name_severity, ours in changes.items():
        corruption, severity = name_severity.rsplit("/", 1)
        checks += check_changes(corruption, int(severity), ours, list(reference.changes[name_severity]),
                                reference.image_count)
        if name_severity not in model_errors:
            continue
        checks.append(check_error(corruption, int(severity), model_errors[name_severity],
                                  list(reference.model_errors[name_severity]), reference.image_count,
                                  noise_ratio, is_deterministic(list(reference.changes[name_severity]))))
    benchmark = [name for name in model_errors if name.rsplit("/", 1)[0] in BENCHMARK]
    if benchmark:
        checks.append(check_mean_error(reference, {name: model_errors[name] for name in benchmark}, noise_ratio))
    return checks


def check_mean_error(reference: Reference, model_errors: dict[str, float], noise_ratio: float) -> Check:
    """The number a paper cites: the model's mean error over these sets (the 15 x 5 benchmark), against
    the reference's; tolerance from the pooled seed noise of the random sets among them."""
    reference_means = [float(np.mean([reference.model_errors[name][seed] for name in model_errors]))
                       for seed in range(len(reference.seeds))]
    random_variances = [(noise_ratio * binomial_sd(float(np.mean(reference.model_errors[name])),
                                                             reference.image_count)) ** 2
                        for name in model_errors if not is_deterministic(list(reference.changes[name]))]
    sd_of_mean = math.sqrt(sum(random_variances)) / len(model_errors)
    ours = float(np.mean(list(model_errors.values())))
    return Check(f"mean of {len(model_errors)} sets", 0, "model_error", ours, float(np.mean(reference_means)),
                 NOISE_MULTIPLE * math.sqrt(2) * sd_of_mean + ERROR_FLOOR)


def model_error(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Share of uint8 images (N, H, W, 3) that `model` (eval mode, [0, 1] inputs) misclassifies."""
    wrong = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).float() / 255
            wrong += int((model(x).argmax(1) != torch.from_numpy(labels[start:start + batch_size])).sum())
    return wrong / len(images)


def measure(clean: np.ndarray, labels: np.ndarray, corrupted: dict[str, np.ndarray],
            model) -> tuple[dict[str, ChangeStats], dict[str, float]]:
    """Change statistics and the model's error (none without a model) for each corrupted set
    (uint8 (N, H, W, 3), keyed like `key`)."""
    changes = {name: change_statistics(clean, images) for name, images in corrupted.items()}
    errors = {name: model_error(model, images, labels) for name, images in corrupted.items()} if model else {}
    return changes, errors
