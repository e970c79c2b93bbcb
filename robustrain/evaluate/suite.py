"""One call measures a model's accuracy, corruption robustness and adversarial robustness.

Every measurement is an entry of the results file, stored with its exact protocol (images, seed,
eps, norm, steps, restarts, corruption table or files). The file is rewritten after each entry, and
an entry already there with the same protocol, for the same weights, is not measured again: an
interrupted evaluation resumes where it stopped. A results file of other weights or settings is
never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..attacks import Attack
from ..attacks.registry import build_attack
from ..attacks import checks as masking
from ..corruptions import BENCHMARK, GENERATOR_VERSION, SEVERITIES, TABLES, corrupt_uint8, load_corrupted, table_for
from ..corruptions.registry import CHUNK
from ..data import FileImages, ImageDataset, iterate_uint8
from ..errors import ConfigError, RobustrainError
from ..io import atomic_write_text
from ..nn import Condition
from .accuracy import correct_mask, fixed_subset
from .metrics import mce, mean_corruption_error
from .suites import Suite, get_suite

FORMAT = 1
HUGE_EPS = {"linf": 1.0, "l2": 100.0}
SANITY_IMAGES = 200
DECODE_ONCE_BYTES = 4 << 30  # a streamed corruption subset up to this size is decoded once, not per corruption


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of the model's parameters and buffers: results are reused only for the same weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def conditions_of(model: nn.Module) -> dict[str, Condition | None]:
    """A conditioned model (OAT's λ, OATS' widths) lists its test-time settings in `evaluation_conditions()`."""
    listed = getattr(model, "evaluation_conditions", None)
    return (dict(listed()) if callable(listed) else {}) or {"": None}


class Measurements:
    """The results file: entries keyed by name, each with its protocol, result and time."""

    def __init__(self, path: Path | None, header: dict, log: Callable[[str], None]):
        self.path, self.header, self.log = path, header, log
        self.entries: dict[str, dict] = {}
        if path is not None and path.is_file():
            try:
                saved = json.loads(path.read_text())
            except ValueError:
                raise RobustrainError(f"{path} is not a results file (not JSON); move it away or choose another "
                                      "output file") from None
            if saved.get("header") != header:
                different = [k for k in header if saved.get("header", {}).get(k) != header[k]]
                raise RobustrainError(f"{path} holds an evaluation with other {', '.join(different)}; choose another "
                                      "output file, or delete it to measure again")
            self.entries = saved.get("entries", {})

    def measure(self, key: str, protocol: dict, run: Callable[[], dict]) -> dict:
        saved = self.entries.get(key)
        if saved is not None and saved["protocol"] == protocol:
            return saved["result"]
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        self.entries[key] = {"protocol": protocol, "result": result, "seconds": round(seconds, 3)}
        self.save()
        shown = f"accuracy {100 * result['accuracy']:.2f}%" if "accuracy" in result else "done"
        self.log(f"{key}: {shown} ({seconds:.1f} s)")
        return result

    def save(self, summary: dict | None = None) -> None:
        if self.path is not None:
            content = {"header": self.header, "entries": self.entries}
            if summary is not None:
                content["summary"] = summary
            atomic_write_text(self.path, json.dumps(content, indent=1))


def share(mask: torch.Tensor) -> float:
    """The fraction of True values, computed exactly."""
    return mask.sum().item() / max(len(mask), 1)


def _bits(mask: torch.Tensor) -> str:
    return "".join("1" if b else "0" for b in mask.tolist())


def evaluate(model: nn.Module, dataset: ImageDataset, suite: str | Suite = "standard", *, eps: float = 8 / 255,
             norm: str = "linf", out: str | Path | None = None, device: torch.device | str = "cpu",
             batch_size: int = 500, seed: int = 0, conditions: Mapping[str, Condition | None] | None = None,
             corruptions_dir: str | Path | None = None, table: str | None = None, progress: bool = True) -> dict:
    """Run a suite ("quick", "standard", "full") on `model`, an `x -> logits` module on [0, 1]
    images, over `dataset` (a test split); returns the results, with a summary.

    eps / norm: the threat model of every attack. out: the results file (resumable).
    conditions: test-time settings of a conditioned model, each evaluated alone (default: the
    model's `evaluation_conditions()`, else the model as it is). corruptions_dir: released
    CIFAR-10-C style files to read instead of generating the corruptions (seeded by `seed`).
    table: the corruptions' severity table (cifar, tinyimagenet, imagenet; default: the dataset's
    benchmark, else by image size); every corruption entry records it.
    """
    suite = get_suite(suite) if isinstance(suite, str) else suite
    if norm not in HUGE_EPS:
        raise ConfigError(f"norm {norm!r} is not one of {', '.join(HUGE_EPS)}")
    if eps <= 0:
        raise ConfigError(f"eps must be positive, got {eps}")
    log = (lambda line: print(f"[{suite.name}] {line}", file=sys.stderr, flush=True)) if progress else (lambda _: None)
    model = model.to(device)
    height, width = dataset.info.image_size
    table = table or table_for(height, width, dataset.info.name)
    if table not in TABLES:
        raise ConfigError(f"unknown severity table {table!r}; expected one of {', '.join(TABLES)}")
    header = {"format": FORMAT, "suite": suite.name, "weights_sha256": model_fingerprint(model),
              "dataset": {"name": dataset.info.name, "split": dataset.split, "images": len(dataset)},
              "threat": {"norm": norm, "eps": eps}, "seed": seed, "batch_size": batch_size}
    if getattr(model, "weight_bits", None) is not None:
        header["weight_bits"] = model.weight_bits
    store = Measurements(Path(out) if out is not None else None, header, log)
    conditions = dict(conditions) if conditions is not None else conditions_of(model)
    summary = {}
    for condition_name, condition in conditions.items():
        net = model.bind(condition) if condition is not None else model
        prefix = f"{condition_name}/" if condition_name else ""
        summary[condition_name or "model"] = _evaluate_condition(
            net, dataset, suite, store, prefix, eps=eps, norm=norm, device=device, batch_size=batch_size, seed=seed,
            table=table, corruptions_dir=corruptions_dir, progress=progress)
    store.save(summary)
    return {"header": header, "entries": store.entries, "summary": summary}


@dataclass
class _Condition:
    """One test-time setting of a model under one suite: each measurement is a step below, stored
    in `store` under `prefix`, and `summary` reads them back."""

    net: nn.Module
    dataset: ImageDataset
    suite: Suite
    store: Measurements
    prefix: str
    eps: float
    norm: str
    device: torch.device | str
    batch_size: int
    seed: int
    table: str
    corruptions_dir: str | Path | None
    progress: bool

    def __post_init__(self):
        subset = fixed_subset(len(self.dataset), self.suite.attack_images, self.seed)
        self.attack_images, self.attack_labels = self.dataset.images[subset], self.dataset.labels[subset]
        self.subset_protocol = {"images": len(subset), "subset_seed": self.seed, "seed": self.seed}

    def mask_of(self, images, labels, attack: Attack | None = None) -> torch.Tensor:
        """Per image: classified correctly (after `attack`, if given)."""
        label = f"[{self.suite.name}] {self.prefix}{type(attack).__name__ if attack else 'predicting'}" \
            if self.progress else None
        return correct_mask(self.net, images, labels, batch_size=self.batch_size, device=self.device, attack=attack,
                            generator=torch.Generator().manual_seed(self.seed), progress=label)

    def model_checks(self) -> list[dict]:
        """The gradient-masking checks that need only the model (randomness, softmax, zero gradients)."""
        def measure() -> dict:
            x = self.attack_images[:self.batch_size].to(self.device).float() / 255
            y = self.attack_labels[:self.batch_size].to(self.device)
            flags = [masking.randomized_outputs(self.net, x), masking.softmax_outputs(self.net, x),
                     masking.zero_gradients(self.net, x, y)]
            return {"flags": [vars(f) for f in flags]}

        protocol = {"kind": "checks", "images": min(self.batch_size, len(self.attack_labels))}
        return self.store.measure(self.prefix + "checks/model", protocol, measure)["flags"]

    def clean(self) -> float:
        return self.store.measure(self.prefix + "clean", {"kind": "clean", "images": len(self.dataset)}, lambda: {
            "accuracy": share(self.mask_of(self.dataset.images, self.dataset.labels))})["accuracy"]

    def corruptions(self) -> dict[str, list[float]]:
        """Accuracy per corruption and severity, on the suite's fixed subset of test images."""
        subset = fixed_subset(len(self.dataset), self.suite.corruption_images, self.seed)
        clean_images = self.dataset.images[subset]
        if not isinstance(clean_images, FileImages) or clean_images.nbytes <= DECODE_ONCE_BYTES:
            clean_images = clean_images.to(self.device)  # else decoded again for each corruption
        source = {"files": str(self.corruptions_dir)} if self.corruptions_dir is not None else \
            {"generated": {"table": self.table, "seed": self.seed, "version": GENERATOR_VERSION}}
        accuracy: dict[str, list[float]] = {}
        for name in self.suite.corruptions:
            for severity in self.suite.severities:
                protocol = {"kind": "corruption", "corruption": name, "severity": severity, "images": len(subset),
                            "subset_seed": self.seed, **source}

                def measure(name=name, severity=severity) -> dict:
                    if self.corruptions_dir is not None:
                        images, labels = load_corrupted(self.corruptions_dir, name, severity,
                                                        crop=self.dataset.info.image_size[0])
                        if len(images) != len(self.dataset):
                            raise ConfigError(f"{self.corruptions_dir} holds {len(images)} images of {name} per "
                                              f"severity; the test set has {len(self.dataset)}")
                        return {"accuracy": share(self.mask_of(images[subset], labels[subset]))}
                    # chunks of CHUNK images: corrupt_uint8 seeds each by its position, so the
                    # result is the same as corrupting the subset at once
                    labels = self.dataset.labels[subset]
                    masks = [self.mask_of(corrupt_uint8(batch.to(self.device), name, severity, seed=self.seed,
                                                        table=self.table, start=start), labels[start:start + CHUNK])
                             for start, batch in zip(range(0, len(subset), CHUNK), iterate_uint8(clean_images, CHUNK))]
                    return {"accuracy": share(torch.cat(masks))}

                result = self.store.measure(f"{self.prefix}corruption/{name}/{severity}", protocol, measure)
                accuracy.setdefault(name, []).append(result["accuracy"])
        return accuracy

    def attacks(self) -> tuple[dict[str, float], dict[str, torch.Tensor], dict[str, float] | None]:
        """(accuracy per suite attack, robust flags per attack, AutoAttack's accuracy after each of its
        components or None)."""
        accuracy, robust, after = {}, {}, None
        for name in self.suite.attacks:
            attack, details = build_attack(name, self.eps, self.norm)
            protocol = {**details, **self.subset_protocol}
            if name == "autoattack":
                def measure(attack=attack) -> dict:
                    result = attack.run(self.net, self.attack_images.to(self.device).float() / 255,
                                        self.attack_labels.to(self.device), torch.Generator().manual_seed(self.seed))
                    return {"accuracy": result.robust_accuracy, "robust": _bits(result.robust.cpu()),
                            "robust_accuracy_after": result.robust_accuracy_after}
            else:
                def measure(attack=attack) -> dict:
                    mask = self.mask_of(self.attack_images, self.attack_labels, attack)
                    return {"accuracy": share(mask), "robust": _bits(mask)}
            result = self.store.measure(f"{self.prefix}attack/{name}", protocol, measure)
            after = result.get("robust_accuracy_after", after)
            accuracy[name] = result["accuracy"]
            robust[name] = torch.tensor([c == "1" for c in result["robust"]])
        return accuracy, robust, after

    def eps_curve(self, attack_accuracy: dict[str, float]) -> tuple[list[tuple[float, float]], float | None]:
        """(PGD-20 accuracy at the suite's multiples of eps, sorted; accuracy at a huge eps, the sanity
        check that the attack can break every image, or None without a curve)."""
        curve = [(self.eps, attack_accuracy["pgd20"])] if "pgd20" in self.suite.attacks else []
        for multiple in self.suite.eps_curve:
            attack, details = build_attack("pgd20", self.eps * multiple, self.norm)
            result = self.store.measure(f"{self.prefix}curve/pgd20/{multiple:g}x", {**details, **self.subset_protocol},
                                        lambda attack=attack: {"accuracy": share(self.mask_of(
                                            self.attack_images, self.attack_labels, attack))})
            curve.append((self.eps * multiple, result["accuracy"]))
        if not curve:
            return curve, None
        images = min(SANITY_IMAGES, len(self.attack_labels))
        attack, details = build_attack("pgd20", HUGE_EPS[self.norm], self.norm)
        protocol = {**details, **self.subset_protocol, "images": images}
        result = self.store.measure(self.prefix + "checks/huge_eps", protocol, lambda: {
            "accuracy": share(self.mask_of(self.attack_images[:images], self.attack_labels[:images], attack))})
        return sorted(curve), result["accuracy"]


def _evaluate_condition(net: nn.Module, dataset: ImageDataset, suite: Suite, store: Measurements, prefix: str,
                        **settings) -> dict:
    """Every measurement of the suite for one test-time setting, then its summary."""
    condition = _Condition(net, dataset, suite, store, prefix, **settings)
    checks = condition.model_checks()
    clean = condition.clean()
    corruption_accuracy = condition.corruptions()
    attack_accuracy, robust_masks, after = condition.attacks()
    curve, huge_accuracy = condition.eps_curve(attack_accuracy)
    if huge_accuracy is not None:
        checks = checks + [vars(masking.accuracy_not_falling_with_eps(
            [e for e, _ in curve] + [HUGE_EPS[condition.norm]], [a for _, a in curve] + [huge_accuracy]))]
    if after is not None:
        checks = checks + [vars(masking.black_box_beats_white_box(after))]

    summary = {"clean_accuracy": clean, "corruption_accuracy": corruption_accuracy, "attack_accuracy": attack_accuracy,
               "eps_curve": [list(point) for point in curve], "gradient_masking": checks}
    if robust_masks:
        summary["worst_case_accuracy"] = share(torch.stack(list(robust_masks.values())).all(0))
    errors = {n: [1 - a for a in accs] for n, accs in corruption_accuracy.items()}
    if errors:
        summary["corruption_error"] = mean_corruption_error(errors, list(errors))
    if all(n in errors and len(errors[n]) == len(SEVERITIES) for n in BENCHMARK):
        summary["mean_corruption_error"] = mean_corruption_error(errors)
        if condition.table == "imagenet":
            summary["mce"] = mce(errors)
    return summary
