"""AdCorDA (Shen et al., 2024): refine a trained classifier by adversarial correction, then
domain adaptation back to the original training set.

No official code exists and only the abstract was available; every open choice is an option,
and the defaults take this reading (spec section 3, [INF]):

1. Correction (`prepare`, once, with the initial weights): every training image the model
   misclassifies is attacked toward its true label (`attacks.Correct`: loss-descending PGD inside
   an eps-ball, each image stopping at its first success). The corrected set D' is the training
   set with each corrected image in place of its original; an image that cannot be corrected is
   kept as it was (`failures: keep`) or dropped (`drop`). D' and its counts are written to
   `<run>/corrected/` and reused when the run is resumed.
2. Domain adaptation: fine-tune on D' (labelled source) with Deep CORAL (Sun & Saenko, 2016) on
   the penultimate features against random batches of the original set D (target):

       L = CE(f(x_s), y_s) + coral_weight · ||Cov(φ(x_s)) - Cov(φ(x_t))||_F² / (4 d²)

   (+ CE(f(x_t), y_t) with `target_labels: true`; the default uses no labels of D). Epochs,
   learning rate and schedule are the run's. A weight-quantized model (model option
   `weight_bits`) stays quantized: its layers fake-quantize with a straight-through estimator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file

from ..attacks import Correct, running_mode
from ..data import ImageDataset
from ..errors import ConfigError
from ..io import atomic_write, atomic_write_text
from .base import Method, StepContext, StepOutput, layout_like

CORRECTED_DIR = "corrected"


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: squared Frobenius distance of the feature covariances (unbiased), / 4d²."""
    if source.shape[1] != target.shape[1] or len(source) < 2 or len(target) < 2:
        raise ValueError(f"CORAL needs two batches of at least 2 rows with the same feature size, got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}.")
    d = source.shape[1]
    return (torch.cov(source.float().T) - torch.cov(target.float().T)).pow(2).sum() / (4 * d * d)


@dataclass(frozen=True)
class AdCorDAOptions:
    """correction_eps / correction_step / correction_steps: the correction attack (L-inf by the
    run's threat norm; eps None: the threat's eps). failures: keep or drop images the attack cannot
    correct. coral_weight: λ_C. target_labels: also train on the original set's labels."""

    correction_eps: float | None = None
    correction_step: float = 2 / 255
    correction_steps: int = 10
    failures: Literal["keep", "drop"] = "keep"
    coral_weight: float = 1.0
    target_labels: bool = False
    correction_batch_size: int = 500

    def __post_init__(self):
        if self.coral_weight < 0:
            raise ConfigError(f"method.coral_weight must be non-negative, got {self.coral_weight}.")
        if self.failures not in ("keep", "drop"):
            raise ConfigError(f"method.failures must be 'keep' or 'drop', got {self.failures!r}.")


class AdCorDA(Method):
    name = "adcorda"
    Options = AdCorDAOptions

    def __init__(self, options: AdCorDAOptions, threat):
        super().__init__(options, threat)
        eps = options.correction_eps if options.correction_eps is not None else threat.eps
        self.correct = Correct(eps, options.correction_step, options.correction_steps, norm=threat.norm)
        self.target: ImageDataset | None = None
        self.augment = None

    def prepare(self, model, train_set: ImageDataset, run_dir: Path, device: torch.device, augment) -> ImageDataset:
        """The corrected set D' (computed now with the model's current weights, or read back from the
        run folder when resuming); the original set stays on the device as the target domain."""
        self.target = ImageDataset(train_set.images.to(device), train_set.labels.to(device), train_set.classes,
                                   train_set.info, train_set.split)
        self.augment = augment
        folder = run_dir / CORRECTED_DIR
        if not (folder / "images.safetensors").is_file():
            images, labels, counts = corrected_set(model, train_set, self.correct, self.options.failures,
                                                   self.options.correction_batch_size, device)
            atomic_write(folder / "images.safetensors", lambda tmp: save_file({"images": images, "labels": labels},
                                                                                tmp))
            atomic_write_text(folder / "counts.json", json.dumps(counts, indent=1))
        saved = load_file(folder / "images.safetensors")
        return ImageDataset(saved["images"], saved["labels"], train_set.classes, train_set.info, "corrected")

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        if self.target is None:
            raise RuntimeError("adcorda's prepare() must run before its steps (the trainer calls it).")
        rows = torch.randint(len(self.target), (len(y),), generator=ctx.generator).to(self.target.images.device)
        x_target = self.target.images[rows]
        if self.augment is not None:
            x_target = self.augment(x_target, ctx.generator)
        x_target = layout_like(x_target.to(x.dtype).div_(255), x)
        source_features, target_features = model.penultimate(x), model.penultimate(x_target)
        logits = model.fc(source_features)
        source_loss = ctx.cross_entropy(logits, y)
        coral = coral_loss(source_features, target_features)
        loss = source_loss + self.options.coral_weight * coral
        logs = {"source_loss": source_loss.detach(), "coral": coral.detach()}
        if self.options.target_labels:
            target_loss = ctx.cross_entropy(model.fc(target_features), self.target.labels[rows])
            loss = loss + target_loss
            logs["target_loss"] = target_loss.detach()
        return StepOutput(loss, logits, logs)


def corrected_set(model, train_set: ImageDataset, attack: Correct, failures: str, batch_size: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(uint8 images, labels, counts) of D': each misclassified image replaced by its correction.

    An image counts as corrected only if the model classifies its stored 8-bit version correctly."""
    images, labels = train_set.images.clone(), train_set.labels.clone()
    keep = torch.ones(len(labels), dtype=torch.bool)
    misclassified = corrected = 0
    for start in range(0, len(labels), batch_size):
        x = images[start:start + batch_size].to(device).float() / 255
        y = labels[start:start + batch_size].to(device)
        with torch.no_grad():
            wrong = (_eval_predictions(model, x) != y).nonzero().flatten()
        if not len(wrong):
            continue
        x_corr, _ = attack.correct(model, x[wrong], y[wrong])
        stored = (x_corr * 255).round().to(torch.uint8)
        with torch.no_grad():
            success = _eval_predictions(model, stored.float() / 255) == y[wrong]
        rows = (start + wrong.cpu())
        images[rows[success.cpu()]] = stored[success].cpu()
        keep[rows[~success.cpu()]] = failures == "keep"
        misclassified += len(wrong)
        corrected += int(success.sum())
    counts = {"training_images": len(labels), "misclassified": misclassified, "corrected": corrected,
              "failed": misclassified - corrected, "failures": failures, "corrected_set_images": int(keep.sum()),
              "attack": {"eps": attack.eps, "step": attack.alpha, "steps": attack.steps, "norm": attack.norm}}
    return images[keep].contiguous(), labels[keep].contiguous(), counts


def _eval_predictions(model, x: torch.Tensor) -> torch.Tensor:
    with running_mode(model, "eval"):
        return model(x).argmax(1)
