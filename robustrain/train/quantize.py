"""Post-training weight quantization of a run: a new run folder whose model computes with k-bit
weights (the model option `weight_bits`), a valid `--init` for refinement (AdCorDA) or for
quantization-aware fine-tuning."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from ..config import to_dict
from ..errors import RobustrainError
from ..nn import SlimmableConv2d, SlimmableLinear
from ..nn.quantize import check_bits, quantize_weight
from ..results import Cost, RunResults
from ..runs import RunFolder
from .checkpoint import load_latest, pack_state, save_checkpoint, weights_cost
from .init import InitConfig
from .distributed import resolve_device
from .final import final_evaluation
from .load import load_run
from .optim import build_optimizer
from .run_config import build_model


def quantize_layers(model: torch.nn.Module, bits: int) -> None:
    """Replace every convolution and linear weight by its k-bit per-channel quantization, in place."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, (SlimmableConv2d, SlimmableLinear)):
                layer.weight.copy_(quantize_weight(layer.weight, bits))


def quantize_run(source: str | Path, bits: int, out: str | Path, device: str = "auto") -> RunResults:
    """Write run `out`: the newest weights of run `source` quantized to `bits` bits, evaluated as
    every run is at its end (clean accuracy, PGD); its cost is the source's (no training)."""
    try:
        check_bits(bits)
    except ValueError as error:
        raise RobustrainError(str(error)) from None
    run = load_run(source)
    if run.config.model.get("weight_bits") is not None:
        raise RobustrainError(f"{source} is already quantized ({run.config.model['weight_bits']} bits); quantize its "
                              "full-precision source instead")
    source_sidecar = load_latest(run.folder)[1]
    config = dataclasses.replace(run.config, model={**run.config.model, "weight_bits": bits}, out=str(out),
                                 init=InitConfig(path=str(source)))
    target = resolve_device(config.device if device == "auto" else device)
    model = build_model(config, run.test_set.info)
    model.load_state_dict(run.model.state_dict())
    quantize_layers(model, bits)
    model = model.to(target)
    out = Path(out)
    if out.exists():
        raise RobustrainError(f"{out} already exists; choose another --out")
    # Built under a temporary name and renamed at the end: an interrupted command leaves no run.
    partial = RunFolder(out.with_name(f".{out.name}.partial"))
    shutil.rmtree(partial.path, ignore_errors=True)
    try:
        partial.check_new()
        partial.write_config(config)
        init_cost = weights_cost(source_sidecar)
        tensors, optimizer_states = pack_state({"model": model}, {"optimizer": build_optimizer(config.optim, [model])})
        last = config.epochs - 1
        sidecar = {"epoch": last, "seed": config.seed, "optimizers": optimizer_states, "scaler": {},
                   "cost": Cost().to_json(), "init_cost": init_cost.to_json() if init_cost is not None else None,
                   "config": to_dict(config)}
        save_checkpoint(partial.path, last, tensors, sidecar)
        results = final_evaluation(partial, config, model, run.test_set, target, Cost(), init_cost)
        partial.path.rename(out)
    finally:
        shutil.rmtree(partial.path, ignore_errors=True)
    return results
