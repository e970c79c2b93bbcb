"""A trained model back from its run folder (or one of its checkpoint files), with its test set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

from ..data import ImageDataset, load_dataset
from ..errors import RobustrainError
from ..models import Classifier
from .checkpoint import load_latest
from .run_config import RunConfig
from .trainer import build_model, load_run_config


@dataclass(frozen=True)
class TrainedRun:
    folder: Path
    config: RunConfig
    model: Classifier
    test_set: ImageDataset


def load_run(path: str | Path) -> TrainedRun:
    """path: a run folder (its newest checkpoint) or a `checkpoints/epoch-N.safetensors` file of one."""
    path = Path(path)
    if path.is_dir():
        folder = path
        checkpoint = load_latest(folder)
        if checkpoint is None:
            raise RobustrainError(f"{folder} has no checkpoint; expected a run folder made by `robustrain train`")
        tensors = checkpoint[0]
    elif path.is_file() and path.suffix == ".safetensors" and path.parent.name == "checkpoints":
        folder = path.parent.parent
        try:
            tensors = load_file(path)
        except Exception as error:  # safetensors raises its own error types for damaged files
            raise RobustrainError(f"{path} cannot be read as a checkpoint ({error})") from None
    else:
        raise RobustrainError(f"{path} is neither a run folder nor a checkpoints/*.safetensors file of one")
    config = load_run_config(folder)
    test_set = load_dataset(config.data.name, config.data.root, "test", download=config.data.download)
    model = build_model(config, test_set.info)
    weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise RobustrainError(f"the checkpoint of {folder} does not fit its configured model: "
                              f"{str(error).splitlines()[0]}") from None
    return TrainedRun(folder, config, model, test_set)
