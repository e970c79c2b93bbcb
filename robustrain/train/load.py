"""A trained model back from its run folder (or one of its checkpoint files), with its test set."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..config import from_dict
from ..data import ImageDataset
from ..errors import ConfigError, RobustrainError
from ..methods import Method, method_from_section
from ..models import Classifier
from .checkpoint import load_latest
from .init import InitConfig, load_initial_weights
from ..runs import RunFolder
from .run_config import RunConfig, build_model, read_run_config


@dataclass(frozen=True)
class TrainedRun:
    """A trained model with its run's configuration and test set; method_state: the training method's
    own tensors from the same checkpoint (e.g. EWS's controller; empty for weights from elsewhere)."""

    folder: Path
    config: RunConfig
    model: Classifier
    test_set: ImageDataset
    method_state: dict[str, torch.Tensor] = field(default_factory=dict)


def load_weights(path: str | Path, model: dict, data: dict, key_map: tuple[tuple[str, str], ...] = ()) -> TrainedRun:
    """A model trained elsewhere: a state dict (.safetensors, .pt) of a registered model.

    model: {"name": ..., **options}; data: {"name": ..., "root": ...} (the test split is loaded and
    supplies the input normalisation when the weights do not carry it). key_map renames keys, as
    `init.key_map` does for training.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is not a file; expected a run folder, a checkpoint or a state-dict file")
    config = from_dict(RunConfig, {"model": model, "data": data, "out": str(path.parent)})
    test_set = config.data.load("test")
    built = build_model(config, test_set.info)
    load_initial_weights(built, InitConfig(path=str(path), key_map=key_map),
                         rename_hint="--rename PATTERN=REPLACEMENT (e.g. --rename '^module\\.=')")
    return TrainedRun(path.parent, config, built, test_set)


def load_run(path: str | Path) -> TrainedRun:
    """path: a run folder (its newest checkpoint) or a `checkpoints/epoch-N.safetensors` file of one."""
    path = Path(path)
    owner = RunFolder.of_checkpoint(path)
    if path.is_dir():
        folder = path
        checkpoint = load_latest(folder)
        if checkpoint is None:
            raise RobustrainError(f"{folder} has no checkpoint; expected a run folder made by `robustrain train`")
        tensors = checkpoint[0]
    elif path.is_file() and owner is not None:
        folder = owner.path
        try:
            tensors = load_file(path)
        except Exception as error:  # safetensors raises its own error types for damaged files
            raise RobustrainError(f"{path} cannot be read as a checkpoint ({error})") from None
    else:
        raise RobustrainError(f"{path} is neither a run folder nor a checkpoints/*.safetensors file of one")
    config = read_run_config(RunFolder(folder))
    test_set = config.data.load("test")
    model = build_model(config, test_set.info)
    weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise RobustrainError(f"the checkpoint of {folder} does not fit its configured model: "
                              f"{str(error).splitlines()[0]}") from None
    method_state = {k[len("method/"):]: v for k, v in tensors.items() if k.startswith("method/")}
    return TrainedRun(folder, config, model, test_set, method_state)


def load_method(run: TrainedRun) -> Method:
    """The run's training method with its trained state (e.g. EWS's controller), attached to `run.model`."""
    method = method_from_section(run.config.method, run.config.threat)
    method.attach(run.model)
    method.load_state_dict(run.method_state)
    return method
