"""Checkpoints: tensors in safetensors, everything else in a JSON sidecar. Nothing is unpickled.

Layout of `<run>/checkpoints/`: `epoch-NNNN.safetensors` + `epoch-NNNN.json`, and
`latest.json` naming the newest complete pair. Every file is written to a temporary
name and renamed into place, and `latest.json` moves only after both files of a pair
exist, so a run killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import RobustrainError
from ..io import atomic_write, atomic_write_text


def pack_state(modules: dict[str, nn.Module],
               optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict, dict[str, dict]]:
    """(tensors, {optimizer name: json-able state}) for the named modules and optimizers."""
    tensors = {f"{prefix}/{k}": v.detach().contiguous()
               for prefix, module in modules.items() for k, v in module.state_dict().items()}
    states = {}
    for optimizer_name, optimizer in optimizers.items():
        optim = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, entry in optim["state"].items():
            for name, value in entry.items():
                if torch.is_tensor(value):
                    tensors[f"{optimizer_name}/{pid}/{name}"] = value.detach().contiguous()
                else:
                    scalars.setdefault(str(pid), {})[name] = value
        states[optimizer_name] = {"param_groups": optim["param_groups"], "scalars": scalars}
    return tensors, states


def unpack_state(tensors: dict[str, torch.Tensor], optimizer_states: dict[str, dict], modules: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer]) -> None:
    for prefix, module in modules.items():
        start = f"{prefix}/"
        module.load_state_dict({k[len(start):]: v for k, v in tensors.items() if k.startswith(start)})
    for optimizer_name, optimizer in optimizers.items():
        state: dict[int, dict[str, Any]] = {}
        start = f"{optimizer_name}/"
        for key, value in tensors.items():
            if key.startswith(start):
                pid, name = key[len(start):].split("/", 1)
                state.setdefault(int(pid), {})[name] = value
        saved = optimizer_states[optimizer_name]
        for pid, entries in saved["scalars"].items():
            state.setdefault(int(pid), {}).update(entries)
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def save_checkpoint(run_dir: Path, epoch: int, tensors: dict[str, torch.Tensor], sidecar: dict) -> None:
    folder = run_dir / "checkpoints"
    stem = f"epoch-{epoch:04d}"
    atomic_write(folder / f"{stem}.safetensors", lambda tmp: save_file(tensors, tmp))
    atomic_write_text(folder / f"{stem}.json", json.dumps(sidecar, indent=1))
    atomic_write_text(folder / "latest.json", json.dumps({"epoch": epoch, "stem": stem}))
    for old in folder.glob("epoch-*"):
        if not old.name.startswith(stem):
            old.unlink()


def load_latest(run_dir: Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict] | None:
    """The newest complete checkpoint of a run, or None if it has none."""
    pointer = run_dir / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    try:
        stem = json.loads(pointer.read_text())["stem"]
        sidecar = json.loads((run_dir / "checkpoints" / f"{stem}.json").read_text())
        tensors = load_file(run_dir / "checkpoints" / f"{stem}.safetensors", device=str(device))
    except (OSError, ValueError, KeyError) as error:
        raise RobustrainError(f"the checkpoint in {run_dir / 'checkpoints'} cannot be read ({error}).") from None
    return tensors, sidecar
