"""What a training run ends with (its `results.json`), typed: the cost in passes and time, and the
final measurements per test-time setting, one shape for plain and conditioned models.

On disk a plain model's measurement stays at the top level and a conditioned model's sit under
"conditions", as every results file written so far has them; `RunResults.from_json` reads both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

PLAIN = ""  # the setting name of a model without test-time settings


@dataclass(frozen=True)
class Cost:
    """Forward-backward and forward-only passes (one image through the model = one pass),
    training time and images drawn."""

    forward_backward: int = 0
    forward_only: int = 0
    train_time_s: float = 0.0
    images: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.train_time_s, 1e-9)

    @property
    def forward_backward_per_image(self) -> float:
        return self.forward_backward / max(self.images, 1)

    def to_json(self, *, rates: bool = False) -> dict:
        """The four counts; with `rates`, also images per second and passes per image."""
        data = asdict(self)
        if rates:
            data.update(images_per_s=self.images_per_s, forward_backward_per_image=self.forward_backward_per_image)
        return data

    @classmethod
    def from_json(cls, data: dict | None) -> Cost | None:
        """None stays None (a cost that is not known: weights from a plain state dict)."""
        if data is None:
            return None
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class PGDResult:
    """Robust accuracy under PGD-`steps` (step `step_size`, `restarts` restarts) at radius `eps`
    in `norm`, on a fixed subset of `images` test images."""

    acc: float
    steps: int
    step_size: float
    eps: float
    norm: str
    restarts: int
    images: int


@dataclass(frozen=True)
class Measurement:
    """Clean accuracy on the whole test set and PGD accuracy, for one test-time setting."""

    clean_acc: float
    pgd: PGDResult

    def to_json(self) -> dict:
        return {"clean_acc": self.clean_acc, "pgd": asdict(self.pgd)}

    @classmethod
    def from_json(cls, data: dict) -> Measurement:
        return cls(data["clean_acc"], PGDResult(**data["pgd"]))


@dataclass(frozen=True)
class RunResults:
    """measurements: by test-time setting (PLAIN, "", for a plain model; "lambda=0.1", ... for a
    conditioned one). cost: this run's training; init_cost: that of the weights it started from
    (zero from scratch, None when unknown)."""

    measurements: dict[str, Measurement]
    test_images: int
    cost: Cost
    init_cost: Cost | None

    @property
    def total_cost(self) -> Cost | None:
        """Training plus initialisation; None when the initialisation's cost is unknown."""
        return None if self.init_cost is None else self.cost + self.init_cost

    @property
    def conditioned(self) -> bool:
        return list(self.measurements) != [PLAIN]

    @property
    def model(self) -> Measurement:
        """The measurement of a plain model (a conditioned one has one per setting: `measurements`)."""
        if self.conditioned:
            raise ValueError(f"a conditioned model has one measurement per setting ({', '.join(self.measurements)}); "
                             "read `measurements`.")
        return self.measurements[PLAIN]

    def to_json(self) -> dict:
        measured = {name: m.to_json() for name, m in self.measurements.items()}
        return {**(measured[PLAIN] if not self.conditioned else {"conditions": measured}),
                "test_images": self.test_images, "cost": self.cost.to_json(rates=True),
                "init_cost": self.init_cost.to_json() if self.init_cost is not None else None,
                "total_cost": self.total_cost.to_json() if self.total_cost is not None else None}

    @classmethod
    def from_json(cls, data: dict) -> RunResults:
        if "conditions" in data:
            measurements = {name: Measurement.from_json(m) for name, m in data["conditions"].items()}
        else:
            measurements = {PLAIN: Measurement.from_json(data)}
        # results written before runs could start from other weights have no init_cost: from scratch
        init_cost = Cost.from_json(data["init_cost"]) if "init_cost" in data else Cost()
        return cls(measurements, data["test_images"], Cost.from_json(data["cost"]), init_cost)
