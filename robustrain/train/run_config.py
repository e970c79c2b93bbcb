"""The configuration of one training run, as saved in its folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import from_dict
from ..data import EvalTransform, ImageDataset, TrainTransform, load_dataset
from ..errors import ConfigError
from ..methods import Threat
from ..models import Classifier, create_model, initialize
from ..runs import RunFolder
from .init import InitConfig
from .optim import OptimConfig
from .schedules import ScheduleConfig


@dataclass(frozen=True)
class DataConfig:
    """name/root/download/color: as `load_dataset` (color: auto, rgb or grey, for image folders).
    augment: training augmentation: crop_flip / crop (CIFAR's padded random crop, `crop_padding`
    pixels of zeros, or of the image mirrored at its border with `crop_padding_mode: reflect`, as
    numpy's and torch's "reflect" pad), random_resized_crop (ImageNet's, to image_size, then a flip;
    needs streaming) or none.
    train_limit: train on a fixed random subset of N training images (CPU-sized experiments).
    image_size / resize: for image folders and shards, the evaluation view: the shorter side resized
    to `resize`, then the centred image_size x image_size window (ImageNet: 256 and 224); unset:
    as stored. stream: decode batch by batch in worker processes instead of holding the decoded
    split in memory (and on the device): true, false, or unset to stream a split whose decoded
    size exceeds stream_above_gb. test_split: the folder (or shard prefix) of the test split, e.g.
    "val" for ImageNet's layout."""

    name: str = "digits"
    root: str | None = None
    download: bool = False
    color: Literal["auto", "rgb", "grey"] = "auto"
    augment: Literal["crop_flip", "crop", "random_resized_crop", "none"] = "crop_flip"
    crop_padding: int = 4
    crop_padding_mode: Literal["zeros", "reflect"] = "zeros"
    train_limit: int | None = None
    image_size: int | None = None
    resize: int | None = None
    stream: bool | None = None
    stream_above_gb: float = 8.0
    test_split: str = "test"

    def __post_init__(self):
        if self.train_limit is not None and self.train_limit < 1:
            raise ConfigError(f"data.train_limit must be at least 1, got {self.train_limit}.")
        if self.crop_padding < 0:
            raise ConfigError(f"data.crop_padding must be non-negative, got {self.crop_padding}.")
        for key in ("image_size", "resize"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be a positive number of pixels (or unset), got "
                                  f"{getattr(self, key)}.")
        if self.augment == "random_resized_crop" and self.image_size is None:
            raise ConfigError("data.augment random_resized_crop needs data.image_size (the size of the crops it "
                              "makes).")
        if self.augment == "random_resized_crop" and self.stream is False:
            raise ConfigError("data.augment random_resized_crop cuts from the stored images, so it needs streaming; "
                              "set data.stream to true (or leave it unset).")

    @property
    def view(self) -> EvalTransform:
        return EvalTransform(resize=self.resize, crop=self.image_size)

    def load(self, split: Literal["train", "test"]) -> ImageDataset:
        """The split as configured (streamed or in memory; random_resized_crop streams the training split)."""
        stream = True if split == "train" and self.augment == "random_resized_crop" else self.stream
        return load_dataset(self.name, self.root, self.test_split if split == "test" else split, download=self.download,
                            color=self.color, view=self.view, stream=stream,
                            stream_above_bytes=int(self.stream_above_gb * 2**30))

    def train_transform(self) -> TrainTransform:
        """The training view of a streamed split, made as each image is decoded."""
        return TrainTransform(self.augment, self.view, self.image_size, self.crop_padding, self.crop_padding_mode)


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation that ends every run: clean accuracy on the whole test set and
    PGD-`pgd_steps` (step `pgd_step_size`, eps/4 when unset; random start) on a fixed random
    subset of `pgd_limit` test images (all when unset). A conditioned model (OAT) is evaluated
    in each of its settings. epoch_pgd_limit: also the same PGD after every epoch, on a fixed random
    `epoch_pgd_limit` test images, logged as `test_pgd_acc` (unset: not measured), which is where
    robust overfitting shows (Rice et al. 2020 select the epoch by it)."""

    pgd_steps: int = 20
    pgd_step_size: float | None = None
    pgd_restarts: int = 1
    pgd_limit: int | None = None
    batch_size: int = 500
    epoch_pgd_limit: int | None = None

    def __post_init__(self):
        for name in ("pgd_limit", "epoch_pgd_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"eval.{name} must be a positive number of test images (or unset), got {value}.")


@dataclass(frozen=True)
class RunConfig:
    """model / method: a mapping with `name` and that model's or method's own options; the model's
    input normalisation is the training data's per-channel mean and std unless `model.mean` and
    `model.std` say otherwise (e.g. [0, 0, 0] and [1, 1, 1]: none, as code that feeds [0, 1] images
    to the network unnormalised has it), and its weights PyTorch's initialisation unless
    `model.init` names another (`robustrain.models.initialize`).
    init: start from another run's or a state dict's weights (fine-tuning).
    sync_bn: under torchrun, BatchNorm statistics of the global batch instead of each process's share.
    checkpoint_every: also checkpoint every N training steps within an epoch, so that a resumed run
    continues from there (long ImageNet epochs); unset: at the end of each epoch only."""

    data: DataConfig = field(default_factory=DataConfig)
    model: dict = field(default_factory=lambda: {"name": "small_cnn"})
    method: dict = field(default_factory=lambda: {"name": "standard"})
    threat: Threat = field(default_factory=Threat)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    init: InitConfig = field(default_factory=InitConfig)
    epochs: int = 10
    batch_size: int = 128
    last_batch: Literal["drop", "keep"] = "drop"
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    channels_last: bool = False
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    sync_bn: bool = False
    checkpoint_every: int | None = None
    out: str | None = None

    def __post_init__(self):
        for section in ("model", "method"):
            given = getattr(self, section)
            if "name" not in given:
                raise ConfigError(f"the {section} section {given} has no name: a {section} section or --set "
                                  f"{section}.KEY replaces the default {section} whole, so also give --{section} NAME "
                                  f"(or --set {section}.name=NAME).")
            if not isinstance(given.get("name"), str):
                raise ConfigError(f"{section}.name must name a registered {section}, got {given}.")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be a positive number of steps (or unset), got "
                              f"{self.checkpoint_every}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}.")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}.")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be positive (or unset), got {self.grad_clip}.")
        if self.schedule.momentum_at_peak is not None and self.optim.name != "sgd":
            raise ConfigError(f"schedule.momentum_at_peak cycles SGD's momentum; optim.name is {self.optim.name!r}.")


def read_run_config(folder: RunFolder) -> RunConfig:
    """The configuration a run folder holds, typed and checked."""
    return from_dict(RunConfig, folder.config_mapping())


def build_model(config: RunConfig, info) -> Classifier:
    """The model `config.model` names, for data described by `info` (classes, channels, normalisation)."""
    options = {"mean": info.mean, "std": info.std, "in_channels": info.channels,
               **{k: v for k, v in config.model.items() if k not in ("name", "init")}}
    try:
        model = create_model(config.model["name"], info.num_classes, **options)
        initialize(model, config.model.get("init", "default"))
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    return model
