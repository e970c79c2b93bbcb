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
from pathlib import Path

import torch
from torch import nn

from ..attacks import FGSM, PGD, Attack, AutoAttack
from ..attacks import checks as masking
from ..corruptions import BENCHMARK, GENERATOR_VERSION, SEVERITIES, TABLES, corrupt_uint8, load_corrupted, table_for
from ..data import ImageDataset
from ..errors import ConfigError, RobustrainError
from ..io import atomic_write_text
from ..nn import Condition
from .accuracy import correct_mask, fixed_subset
from .metrics import mce, mean_corruption_error
from .suites import Suite, get_suite

FORMAT = 1
HUGE_EPS = {"linf": 1.0, "l2": 100.0}
SANITY_IMAGES = 200


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


def _attack(name: str, eps: float, norm: str) -> tuple[Attack, dict]:
    """A suite attack and its settings, the attack's part of a measurement's protocol."""
    threat = {"kind": "attack", "norm": norm, "eps": eps}
    if name == "fgsm":
        if norm != "linf":
            raise ConfigError(f"fgsm is an L-infinity attack; the threat model's norm is {norm!r}")
        return FGSM(eps), {**threat, "attack": "fgsm", "step_size": eps}
    if name == "pgd20":
        return PGD(eps, eps / 4, 20, norm=norm), {**threat, "attack": "pgd", "steps": 20, "step_size": eps / 4,
                                                   "restarts": 1, "random_start": "uniform", "loss": "ce"}
    if name == "autoattack":
        attack = AutoAttack(eps, norm=norm, version="standard")
        return attack, {**threat, "attack": "autoattack", "version": "standard",
                        "components": [n for n, _ in attack.attacks]}
    raise ConfigError(f"unknown suite attack {name!r}; expected fgsm, pgd20 or autoattack")


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


def _evaluate_condition(net: nn.Module, dataset: ImageDataset, suite: Suite, store: Measurements, prefix: str, *,
                        eps, norm, device, batch_size, seed, table, corruptions_dir, progress) -> dict:
    def mask_of(images, labels, attack=None) -> torch.Tensor:
        label = f"[{suite.name}] {prefix}{type(attack).__name__ if attack else 'predicting'}" if progress else None
        return correct_mask(net, images, labels, batch_size=batch_size, device=device, attack=attack,
                            generator=torch.Generator().manual_seed(seed), progress=label)

    attack_subset = fixed_subset(len(dataset), suite.attack_images, seed)
    attack_images, attack_labels = dataset.images[attack_subset], dataset.labels[attack_subset]
    subset_protocol = {"images": len(attack_subset), "subset_seed": seed, "seed": seed}

    def model_checks() -> dict:
        x = attack_images[:batch_size].to(device).float() / 255
        y = attack_labels[:batch_size].to(device)
        flags = [masking.randomized_outputs(net, x), masking.softmax_outputs(net, x), masking.zero_gradients(net, x, y)]
        return {"flags": [vars(f) for f in flags]}

    checks = store.measure(prefix + "checks/model", {"kind": "checks", "images": min(batch_size, len(attack_subset))},
                           model_checks)["flags"]

    clean = store.measure(prefix + "clean", {"kind": "clean", "images": len(dataset)},
                          lambda: {"accuracy": share(mask_of(dataset.images, dataset.labels))})

    corruption_subset = fixed_subset(len(dataset), suite.corruption_images, seed)
    clean_images = dataset.images[corruption_subset].to(device)
    source = {"files": str(corruptions_dir)} if corruptions_dir is not None else \
        {"generated": {"table": table, "seed": seed, "version": GENERATOR_VERSION}}
    corruption_accuracy: dict[str, list[float]] = {}
    for name in suite.corruptions:
        for severity in suite.severities:
            protocol = {"kind": "corruption", "corruption": name, "severity": severity,
                        "images": len(corruption_subset), "subset_seed": seed, **source}

            def corrupted_accuracy(name=name, severity=severity) -> dict:
                if corruptions_dir is not None:
                    images, labels = load_corrupted(corruptions_dir, name, severity)
                    if len(images) != len(dataset):
                        raise ConfigError(f"{corruptions_dir}/{name}.npy holds {len(images)} images per severity; "
                                          f"the test set has {len(dataset)}")
                    images, labels = images[corruption_subset], labels[corruption_subset]
                else:
                    images = corrupt_uint8(clean_images, name, severity, seed=seed, table=table)
                    labels = dataset.labels[corruption_subset]
                return {"accuracy": share(mask_of(images, labels))}

            result = store.measure(f"{prefix}corruption/{name}/{severity}", protocol, corrupted_accuracy)
            corruption_accuracy.setdefault(name, []).append(result["accuracy"])

    robust_masks, attack_accuracy, after = {}, {}, None
    for name in suite.attacks:
        attack, details = _attack(name, eps, norm)
        protocol = {**details, **subset_protocol}
        if name == "autoattack":
            def run_autoattack(attack=attack) -> dict:
                result = attack.run(net, attack_images.to(device).float() / 255, attack_labels.to(device),
                                    torch.Generator().manual_seed(seed))
                return {"accuracy": result.robust_accuracy, "robust": _bits(result.robust.cpu()),
                        "robust_accuracy_after": result.robust_accuracy_after}
            result = store.measure(prefix + "attack/autoattack", protocol, run_autoattack)
            after = result["robust_accuracy_after"]
        else:
            def run_attack(attack=attack) -> dict:
                mask = mask_of(attack_images, attack_labels, attack)
                return {"accuracy": share(mask), "robust": _bits(mask)}
            result = store.measure(f"{prefix}attack/{name}", protocol, run_attack)
        attack_accuracy[name] = result["accuracy"]
        robust_masks[name] = torch.tensor([c == "1" for c in result["robust"]])

    curve = []
    if "pgd20" in suite.attacks:
        curve.append((eps, attack_accuracy["pgd20"]))
    for multiple in suite.eps_curve:
        attack, details = _attack("pgd20", eps * multiple, norm)
        protocol = {**details, **subset_protocol}
        result = store.measure(f"{prefix}curve/pgd20/{multiple:g}x", protocol, lambda attack=attack: {
            "accuracy": share(mask_of(attack_images, attack_labels, attack))})
        curve.append((eps * multiple, result["accuracy"]))
    if curve:
        huge = HUGE_EPS[norm]
        sanity_images = min(SANITY_IMAGES, len(attack_subset))
        attack, details = _attack("pgd20", huge, norm)
        protocol = {**details, **subset_protocol, "images": sanity_images}
        result = store.measure(prefix + "checks/huge_eps", protocol, lambda: {"accuracy": share(mask_of(
            attack_images[:sanity_images], attack_labels[:sanity_images], attack))})
        curve.sort()
        checks = checks + [vars(masking.accuracy_not_falling_with_eps(
            [e for e, _ in curve] + [huge], [a for _, a in curve] + [result["accuracy"]]))]
    if after is not None:
        checks = checks + [vars(masking.black_box_beats_white_box(after))]

    summary = {"clean_accuracy": clean["accuracy"], "corruption_accuracy": corruption_accuracy,
               "attack_accuracy": attack_accuracy, "eps_curve": [list(point) for point in curve], "gradient_masking": checks}
    if robust_masks:
        summary["worst_case_accuracy"] = share(torch.stack(list(robust_masks.values())).all(0))
    errors = {n: [1 - a for a in accs] for n, accs in corruption_accuracy.items()}
    if errors:
        summary["corruption_error"] = mean_corruption_error(errors, list(errors))
    complete = all(n in errors and len(errors[n]) == len(SEVERITIES) for n in BENCHMARK)
    if complete:
        summary["mean_corruption_error"] = mean_corruption_error(errors)
        if table == "imagenet":
            summary["mce"] = mce(errors)
    return summary
