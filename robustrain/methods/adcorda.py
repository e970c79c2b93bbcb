"""AdCorDA (Shen et al., 2024): refine a trained classifier by adversarial correction, then
domain adaptation back to the original training set.

No official code exists and only the abstract was available; every open choice is an option,
and the defaults take this reading (spec section 3, [INF]):

1. Correction (`prepare`, once, with the initial weights): every training image the model
   misclassifies is attacked toward its true label (`attacks.Correct`: loss-descending PGD inside
   an eps-ball, each image stopping at its first success). The corrected set D' is the training
   set with each corrected image in place of its original; an image that cannot be corrected is
   kept as it was (`failures: keep`) or dropped (`drop`). `correct_fraction` < 1 corrects only a
   fixed random share of the misclassified images (the same share for every seed);
   `keep_originals: true` keeps every original and adds the corrected images beside them. D' and
   its counts are written to `<run>/corrected/` and reused when the run is resumed.
2. Domain adaptation: fine-tune on D' (labelled source) with Deep CORAL (Sun & Saenko, 2016)
   against random batches of the original set D (target), on the penultimate features
   (`coral_on: penultimate`) or, as Deep CORAL does, on the last layer's outputs (`logits`):

       L = CE(f(x_s), y_s) + λ_C · ||Cov(h(x_s)) - Cov(h(x_t))||_F² / (4 d²)

   λ_C is `coral_weight`; with `coral_balance: true` it is `coral_weight` · CE / CORAL measured on
   the first step and then held, so that the two terms start of the same size (Sun & Saenko choose
   a fixed weight that makes them about equal). (+ CE(f(x_t), y_t) with `target_labels: true`; the
   default uses no labels of D.) Epochs, learning rate and schedule are the run's. A
   weight-quantized model (model option `weight_bits`) stays quantized: its layers fake-quantize
   with a straight-through estimator.
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
from ..host import to_device
from ..io import atomic_write, atomic_write_text
from .base import METHODS, Method, StepContext, StepOutput, layout_like

CORRECTED_DIR = "corrected"


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: squared Frobenius distance of the feature covariances (unbiased), / 4d²."""
    if source.shape[1] != target.shape[1] or len(source) < 2 or len(target) < 2:
        raise ValueError(f"CORAL needs two batches of at least 2 rows with the same feature size, got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}.")
    d = source.shape[1]
    return (_covariance(source) - _covariance(target)).pow(2).sum() / (4 * d * d)


def _covariance(rows: torch.Tensor) -> torch.Tensor:
    """The unbiased covariance of the columns. Not torch.cov: it asks the device whether its
    normalising factor is positive, a host synchronisation in every step."""
    centred = rows.float() - rows.float().mean(0, keepdim=True)
    return centred.T @ centred / (len(rows) - 1)


@dataclass(frozen=True)
class AdCorDAOptions:
    """correction_eps / correction_step / correction_steps: the correction attack (L-inf by the
    run's threat norm; eps None: the threat's eps). failures: keep or drop images the attack cannot
    correct. correct_fraction: the share of misclassified images that are corrected. keep_originals:
    D' holds every original and the corrected images beside them. coral_on: the layer CORAL aligns.
    coral_weight: λ_C, or, with coral_balance, its multiplier of CE / CORAL on the first step.
    target_labels: also train on the original set's labels."""

    correction_eps: float | None = None
    correction_step: float = 2 / 255
    correction_steps: int = 10
    failures: Literal["keep", "drop"] = "keep"
    correct_fraction: float = 1.0
    keep_originals: bool = False
    coral_on: Literal["penultimate", "logits"] = "penultimate"
    coral_weight: float = 1.0
    coral_balance: bool = False
    target_labels: bool = False
    correction_batch_size: int = 500

    def __post_init__(self):
        if self.coral_weight < 0:
            raise ConfigError(f"method.coral_weight must be non-negative, got {self.coral_weight}.")
        if self.failures not in ("keep", "drop"):
            raise ConfigError(f"method.failures must be 'keep' or 'drop', got {self.failures!r}.")
        if not 0 < self.correct_fraction <= 1:
            raise ConfigError(f"method.correct_fraction must be in (0, 1], got {self.correct_fraction}.")


@METHODS.register()
class AdCorDA(Method):
    name = "adcorda"
    Options = AdCorDAOptions

    def __init__(self, options: AdCorDAOptions, threat):
        super().__init__(options, threat)
        eps = options.correction_eps if options.correction_eps is not None else threat.eps
        self.correct = Correct(eps, options.correction_step, options.correction_steps, norm=threat.norm)
        self.target: ImageDataset | None = None
        self.augment = None
        # λ_C with coral_balance, measured on the first step (0: not yet); checkpointed with the run.
        self.register_buffer("balanced_weight", torch.zeros(()))

    def prepare(self, model, train_set: ImageDataset, run_dir: Path, device: torch.device, augment) -> ImageDataset:
        """The corrected set D' (computed now with the model's current weights, or read back from the
        run folder when resuming); the original set stays on the device as the target domain."""
        if not torch.is_tensor(train_set.images):
            raise ConfigError("AdCorDA keeps the training set and its corrected copy in memory (its target domain), "
                              "so it cannot stream; set data.stream to false.")
        self.target = ImageDataset(train_set.images.to(device), train_set.labels.to(device), train_set.classes,
                                   train_set.info, train_set.split)
        self.augment = augment
        folder = run_dir / CORRECTED_DIR
        if not (folder / "images.safetensors").is_file():
            images, labels, counts = corrected_set(model, train_set, self.correct, self.options, device)
            atomic_write(folder / "images.safetensors", lambda tmp: save_file({"images": images, "labels": labels},
                                                                                tmp))
            atomic_write_text(folder / "counts.json", json.dumps(counts, indent=1))
        saved = load_file(folder / "images.safetensors")
        return ImageDataset(saved["images"], saved["labels"], train_set.classes, train_set.info, "corrected")

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        if self.target is None:
            raise RuntimeError("adcorda's prepare() must run before its steps (the trainer calls it).")
        rows = to_device(torch.randint(len(self.target), (len(y),), generator=ctx.generator), self.target.images.device)
        x_target = self.target.images[rows]
        if self.augment is not None:
            x_target = self.augment(x_target, ctx.generator)
        x_target = layout_like(x_target.to(x.dtype).div_(255), x)
        terms = adaptation_terms(model, x, y, x_target, self.target.labels[rows], self.options, ctx.cross_entropy)
        if self.options.coral_balance and ctx.step == 0:
            # Measured once, on the run's first step (over every process), then held: a weight that
            # followed CE / CORAL at every step would make the term CE * log CORAL, whose gradient
            # grows without bound as CORAL shrinks (the logits collapse to a constant). Decided by
            # the host's step count, so no step asks the device for the buffer's value.
            self.balanced_weight.copy_(balanced_coral_weight(self.options.coral_weight, ctx.global_mean(
                terms.source_loss.detach()), ctx.global_mean(terms.coral.detach())))
        weight = self.balanced_weight if self.options.coral_balance else self.options.coral_weight
        logs = {"source_loss": terms.source_loss.detach(), "coral": terms.coral.detach(),
                "coral_weight": torch.as_tensor(weight, dtype=torch.float32).detach()}
        if terms.target_loss is not None:
            logs["target_loss"] = terms.target_loss.detach()
        return StepOutput(terms.total(weight), terms.logits, logs)


def balanced_coral_weight(coral_weight: float, cross_entropy: torch.Tensor, coral: torch.Tensor) -> torch.Tensor:
    """coral_weight * CE / CORAL: the weight that makes the CORAL term coral_weight times the CE term."""
    return coral_weight * cross_entropy / coral.clamp_min(torch.finfo(coral.dtype).tiny)


@dataclass(frozen=True)
class AdaptationTerms:
    """The terms of one domain-adaptation step: source CE, raw CORAL, target CE (None without
    target labels) and the source logits."""

    source_loss: torch.Tensor
    coral: torch.Tensor
    target_loss: torch.Tensor | None
    logits: torch.Tensor

    def total(self, coral_weight: float | torch.Tensor) -> torch.Tensor:
        """CE(source) + coral_weight * CORAL (+ CE(target))."""
        loss = self.source_loss + coral_weight * self.coral
        return loss if self.target_loss is None else loss + self.target_loss


def adaptation_terms(model, x_source, y_source, x_target, y_target, options: AdCorDAOptions,
                     cross_entropy) -> AdaptationTerms:
    """The loss terms of a step on a source batch (from D') and a target batch (from D)."""
    source_features, target_features = model.penultimate(x_source), model.penultimate(x_target)
    logits = model.fc(source_features)
    target_logits = model.fc(target_features) if options.coral_on == "logits" or options.target_labels else None
    aligned = (logits, target_logits) if options.coral_on == "logits" else (source_features, target_features)
    source_loss = cross_entropy(logits, y_source)
    target_loss = cross_entropy(target_logits, y_target) if options.target_labels else None
    return AdaptationTerms(source_loss, coral_loss(*aligned), target_loss, logits)


def corrected_set(model, train_set: ImageDataset, attack: Correct, options: AdCorDAOptions,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(uint8 images, labels, counts) of D': each selected misclassified image replaced by its
    correction (or, with keep_originals, added beside its original).

    An image counts as corrected only if the model classifies its stored 8-bit version correctly.
    The share selected by correct_fraction is drawn from a fixed stream, so it is the same for every
    seed and every batch size."""
    selected = torch.rand(len(train_set.labels), generator=torch.Generator().manual_seed(0)) < options.correct_fraction
    images, labels = train_set.images.clone(), train_set.labels.clone()
    keep = torch.ones(len(labels), dtype=torch.bool)
    added = torch.zeros(len(labels), dtype=torch.bool)
    misclassified = chosen = corrected = 0
    batch_size = options.correction_batch_size
    for start in range(0, len(labels), batch_size):
        x = images[start:start + batch_size].to(device).float() / 255
        y = labels[start:start + batch_size].to(device)
        with torch.no_grad():
            wrong = _eval_predictions(model, x) != y
        misclassified += int(wrong.sum())
        wrong = (wrong & selected[start:start + batch_size].to(device)).nonzero().flatten()
        if not len(wrong):
            continue
        x_corr = attack.run(model, x[wrong], y[wrong]).adversarial
        stored = (x_corr * 255).round().to(torch.uint8)
        with torch.no_grad():
            success = (_eval_predictions(model, stored.float() / 255) == y[wrong]).cpu()
        rows = start + wrong.cpu()
        images[rows[success]] = stored[success.to(stored.device)].cpu()
        added[rows[success]] = True
        keep[rows[~success]] = options.failures == "keep"
        chosen += len(wrong)
        corrected += int(success.sum())
    if options.keep_originals:
        images = torch.cat([train_set.images, images[added]])
        labels = torch.cat([train_set.labels, labels[added]])
    else:
        images, labels = images[keep], labels[keep]
    counts = {"training_images": len(train_set.labels), "misclassified": misclassified, "selected": chosen,
              "corrected": corrected, "failed": chosen - corrected, "failures": options.failures,
              "correct_fraction": options.correct_fraction, "keep_originals": options.keep_originals,
              "corrected_set_images": len(labels),
              "attack": {"eps": attack.eps, "step": attack.alpha, "steps": attack.steps, "norm": attack.norm}}
    return images.contiguous(), labels.contiguous(), counts


def _eval_predictions(model, x: torch.Tensor) -> torch.Tensor:
    with running_mode(model, "eval"):
        return model(x).argmax(1)
