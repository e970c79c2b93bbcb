"""Checkpoints: tensors in safetensors, everything else in a JSON sidecar. Nothing is unpickled.

Layout of `<run>/checkpoints/`: `epoch-NNNN.safetensors` + `epoch-NNNN.json` at the end of an
epoch (`epoch-NNNN-step-SSSSSSS.*` within one, after step S), the newest two kept, and
`latest.json` naming the newest complete pair. Every file is written to a
temporary name and renamed into place, and `latest.json` moves only after both files of a pair
exist, so a run killed at any moment leaves the previous checkpoint intact; a newest checkpoint
damaged afterwards (a full disk, a copy cut short) falls back to the one before it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import RobustrainError
from ..io import atomic_write, atomic_write_text
from ..results import Cost
from ..runs import RunFolder


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


def weights_cost(sidecar: dict) -> Cost | None:
    """What the weights of a checkpoint cost: its run's training plus that run's initialisation;
    None when the latter is unknown (a plain state dict). Checkpoints saved before runs could start
    from other weights have no init_cost: they started from scratch."""
    init_cost = Cost.from_json(sidecar["init_cost"]) if "init_cost" in sidecar else Cost()
    return None if init_cost is None else Cost.from_json(sidecar["cost"]) + init_cost


KEEP = 2  # the newest checkpoint and the one before it, to fall back on if the newest is damaged
LATEST = "latest.json"  # {"epoch", "stem"} of the newest complete checkpoint


def save_checkpoint(run_dir: Path, epoch: int, tensors: dict[str, torch.Tensor], sidecar: dict,
                    step: int | None = None) -> None:
    """The checkpoint at the end of `epoch`, or within it after `step` training steps."""
    folder = RunFolder(run_dir).checkpoints
    stem = f"epoch-{epoch:04d}" if step is None else f"epoch-{epoch:04d}-step-{step:07d}"
    atomic_write(folder / f"{stem}.safetensors", lambda tmp: save_file(tensors, tmp))
    atomic_write_text(folder / f"{stem}.json", json.dumps(sidecar, indent=1))
    pointer = {"epoch": epoch, "stem": stem} if step is None else {"epoch": epoch, "step": step, "stem": stem}
    atomic_write_text(folder / LATEST, json.dumps(pointer))
    for old in _stems(folder)[KEEP:]:
        for suffix in (".safetensors", ".json"):
            (folder / f"{old}{suffix}").unlink(missing_ok=True)


def epoch_checkpoints(run_dir: Path) -> list[Path]:
    """The run's kept end-of-epoch checkpoint files, oldest first (within-epoch ones left out)."""
    folder = RunFolder(run_dir).checkpoints
    return [folder / f"{stem}.safetensors" for stem in reversed(_stems(folder)) if len(stem.split("-")) == 2]


def _order(stem: str) -> tuple[int, float]:
    """(epoch, step) of a checkpoint name; the end of an epoch comes after every step within it."""
    parts = stem.split("-")
    return int(parts[1]), (int(parts[3]) if len(parts) == 4 else float("inf"))


def _stems(folder: Path) -> list[str]:
    """Checkpoint names in the folder, newest first."""
    names = {p.name.split(".")[0] for p in folder.glob("epoch-*.*")}
    return sorted((n for n in names if _is_stem(n)), key=_order, reverse=True)


def _is_stem(name: str) -> bool:
    parts = name.split("-")
    return (len(parts) == 2 or (len(parts) == 4 and parts[2] == "step")) and parts[1].isdigit() and parts[-1].isdigit()


def read_latest_pointer(run_dir: Path) -> dict | None:
    """latest.json of a run: {"epoch", "stem"} (and "step" within an epoch) of its newest complete
    checkpoint; None when it is missing or damaged."""
    try:
        pointer = json.loads((RunFolder(run_dir).checkpoints / LATEST).read_text())
        return pointer if isinstance(pointer, dict) and {"epoch", "stem"} <= set(pointer) else None
    except (OSError, ValueError):
        return None


def newest_readable_epoch(run_dir: Path) -> int | None:
    """The last finished epoch of the newest checkpoint if its file opens (only its header is
    read), else None (also when it was saved within the first epoch)."""
    pointer = read_latest_pointer(run_dir)
    if pointer is None or pointer["epoch"] - ("step" in pointer) < 0:
        return None
    try:
        with safe_open(RunFolder(run_dir).checkpoints / f"{pointer['stem']}.safetensors", framework="pt"):
            pass
    except Exception:  # safetensors raises its own error types for damaged files
        return None
    return pointer["epoch"] - ("step" in pointer)


def _read(folder: Path, stem: str, device: torch.device | str) -> tuple[dict[str, torch.Tensor], dict]:
    sidecar = json.loads((folder / f"{stem}.json").read_text())
    tensors = load_file(folder / f"{stem}.safetensors", device=str(device))
    return tensors, sidecar


def load_latest(run_dir: Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict] | None:
    """The newest readable checkpoint of a run, or None if it has none.

    If the newest one (named by latest.json) cannot be read, the one before it is used, with a warning
    on stderr; if none can be read, the error names the newest.
    """
    folder = RunFolder(run_dir).checkpoints
    if not (folder / LATEST).is_file():
        return None
    pointer = read_latest_pointer(run_dir)
    newest = pointer["stem"] if pointer is not None and _is_stem(str(pointer["stem"])) else None
    candidates = ([newest] if newest else []) + [s for s in _stems(folder)
                                                 if s != newest and (not newest or _order(s) < _order(newest))]
    first_error = None
    for stem in candidates:
        try:
            checkpoint = _read(folder, stem, device)
        except Exception as error:  # safetensors raises its own error types for damaged files
            first_error = first_error or f"{stem}: {(str(error).splitlines() or [type(error).__name__])[0]}"
            continue
        if stem != newest:
            print(f"robustrain: warning: the newest checkpoint cannot be read ({first_error}); using {stem} instead.",
                  file=sys.stderr)
        return checkpoint
    raise RobustrainError(f"no checkpoint in {folder} can be read ({first_error or 'latest.json is damaged'}).")
