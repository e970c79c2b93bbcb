"""Start a run from trained weights: another run's folder or a plain state dict.

A run folder brings its pretraining cost along, so that a fine-tuned model's total cost
(pretraining + fine-tuning) can be read from its own results. A plain state dict
(.safetensors, or .pt/.pth read with torch.load(weights_only=True), which refuses
arbitrary objects) has no known cost.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import ConfigError, RobustrainError
from ..results import Cost
from .checkpoint import load_latest, weights_cost

NESTED_ENTRIES = ("state_dict", "model", "model_state_dict", "net")


@dataclass(frozen=True)
class InitConfig:
    """path: a run folder or a state-dict file. key_map: (pattern, replacement) regular
    expressions applied in order to every key of a foreign state dict, e.g.
    [["^module\\\\.", ""], ["^linear\\\\.", "fc."]]. entry: the key of a checkpoint dict that
    holds the state dict (tried automatically: state_dict, model, model_state_dict, net)."""

    path: str | None = None
    key_map: tuple[tuple[str, str], ...] = ()
    entry: str | None = None

    def __post_init__(self):
        for pattern, _ in self.key_map:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(f"init.key_map pattern {pattern!r} is not a regular expression ({error}).") from None


def _read_state_dict(path: Path, entry: str | None) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own text here advises loading with weights_only=False, which runs the file's code
        raise RobustrainError(f"{path} holds Python objects besides tensors and plain containers, which robustrain "
                              "does not unpickle (that could run code); save its state dict alone "
                              "(torch.save(model.state_dict(), ...)) or as .safetensors.") from None
    except Exception:  # torch raises several types for files it did not write
        raise RobustrainError(f"cannot read {path} as a state dict: it is not a file written by torch.save "
                              "(or .safetensors).") from None
    if entry is not None:
        if not isinstance(loaded, dict) or entry not in loaded:
            raise ConfigError(f"init.entry {entry!r} is not a key of {path}.")
        loaded = loaded[entry]
    elif isinstance(loaded, dict) and not any(torch.is_tensor(v) for v in loaded.values()):
        found = [k for k in NESTED_ENTRIES if isinstance(loaded.get(k), dict)]
        if not found:
            raise ConfigError(f"{path} holds no tensors at its top level and none of {list(NESTED_ENTRIES)}; "
                              f"name the entry that holds the weights with init.entry.")
        loaded = loaded[found[0]]
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return {k: v for k, v in loaded.items() if torch.is_tensor(v)}


def load_initial_weights(model: nn.Module, config: InitConfig, rename_hint: str = "init.key_map") -> Cost | None:
    """Load `config.path` into `model`; return the source's total training cost, or None if unknown.

    Every parameter and buffer must be matched, except the input normalisation, which
    comes from the dataset when the source does not carry it. rename_hint: the setting that
    renames keys where the caller is (a training setting, or eval's --rename).
    """
    path = Path(config.path)
    cost = None
    if path.is_dir():
        checkpoint = load_latest(path)
        if checkpoint is None:
            raise RobustrainError(f"init path {path} is a folder without a checkpoint; expected a run folder.")
        tensors = {k[len("model/"):]: v for k, v in checkpoint[0].items() if k.startswith("model/")}
        cost = weights_cost(checkpoint[1])
    elif path.is_file():
        tensors = _read_state_dict(path, config.entry)
    else:
        raise ConfigError(f"init path {path} does not exist; expected a run folder or a state-dict file.")
    for pattern, replacement in config.key_map:
        tensors = {re.sub(pattern, replacement, k): v for k, v in tensors.items()}
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as error:
        mismatch = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise RobustrainError(f"weights in {path} do not fit the model: {mismatch}") from None
    missing = [k for k in result.missing_keys if not k.startswith("normalize.")]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        raise RobustrainError(f"weights in {path} do not fit the model: {len(missing)} of its tensors are missing "
                              f"(first: {missing[:3]}) and {len(unexpected)} are unexpected (first: {unexpected[:3]}); "
                              f"rename keys with {rename_hint}.")
    return cost

