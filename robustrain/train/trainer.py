"""The training loop: everything a method does not do itself, done once.

Randomness is derived from (seed, epoch, stream) at the start of every epoch, so an
epoch depends only on the checkpoint it starts from: a resumed run replays exactly
what an uninterrupted one does, and on a CPU gives bitwise the same metrics.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from ..config import to_dict
from ..data import DatasetInfo, DeviceLoader, FileImages, ImageDataset, StreamLoader, crop_flip, stream_seed
from ..errors import ConfigError, RobustrainError
from ..evaluate import accuracy
from ..methods import Method, StepContext, method_from_section
from ..provenance import process_record
from ..results import Cost, RunResults
from ..runs import RunFolder
from .checkpoint import load_latest, newest_readable_epoch, pack_state, save_checkpoint, unpack_state
from .cost import PassCounter
from .distributed import Distributed, all_reduce_sum, average_gradients, joined, resolve_device, synchronise_batch_norm
from .final import final_evaluation, per_condition, robust_accuracy
from .init import load_initial_weights
from .optim import build_optimizer
from .run_config import RunConfig, build_model
from .schedules import lr_factor, momentum_at

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def validate(config: RunConfig) -> Method:
    """Every check that needs no data: the method's settings and the model's options (the model is
    built on the meta device, so nothing is allocated); raises ConfigError. Returns the method, which
    draws nothing at random when built (its modules that need the model come in `attach`)."""
    method = method_from_section(config.method, config.threat)
    info = DatasetInfo("check", 10, config.model.get("in_channels", 3), (32, 32), (0.5,) * 3, (0.25,) * 3)
    with torch.device("meta"):
        build_model(config, info)
    return method


def load_training_data(config: RunConfig) -> tuple[ImageDataset, ImageDataset]:
    data = config.data
    train_set, test_set = data.load("train"), data.load("test")
    if data.train_limit is not None:
        # A fixed random subset (not the first N, which an ImageFolder sorts by class), the
        # same for every run seed so that runs with different seeds see the same images.
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))
        keep = order[:data.train_limit].sort().values
        train_set = dataclasses.replace(train_set, images=train_set.images[keep], labels=train_set.labels[keep])
    return train_set, test_set


def _augmentation(config: RunConfig):
    if config.data.augment == "none":
        return None
    padding, mode, flip = config.data.crop_padding, config.data.crop_padding_mode, config.data.augment == "crop_flip"
    return lambda images, generator: crop_flip(images, generator, padding, flip, mode)


def _loader(config: RunConfig, train_set: ImageDataset, device: torch.device,
            cluster: Distributed) -> DeviceLoader | StreamLoader:
    """The device-resident loader for a split in memory; the streaming one for a split on disk."""
    common = dict(shuffle=True, seed=config.seed, last_batch=config.last_batch, device=device,
                  channels_last=config.channels_last, shard=(cluster.rank, cluster.world))
    if isinstance(train_set.images, FileImages):
        return StreamLoader(train_set, config.batch_size, transform=config.data.train_transform(), **common)
    return DeviceLoader(train_set, config.batch_size, augment=_augmentation(config), **common)


@dataclasses.dataclass(frozen=True)
class EpochProgress:
    """Where an epoch stands after `step` training steps: the running sums of its metrics record
    and every random stream's state, so that a run resumed from here replays the rest exactly."""

    step: int
    seen: int
    elapsed_s: float
    sums: dict[str, torch.Tensor]
    rng: dict[str, torch.Tensor]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**{f"progress/{k}": v.detach().cpu().reshape(1) for k, v in self.sums.items()},
                **{f"rng/{k}": v for k, v in self.rng.items()}}

    @classmethod
    def read(cls, tensors: dict[str, torch.Tensor], sidecar: dict, device: torch.device) -> EpochProgress:
        sums = {k[len("progress/"):]: v.reshape(()).to(device) for k, v in tensors.items() if k.startswith("progress/")}
        rng = {k[len("rng/"):]: v.cpu() for k, v in tensors.items() if k.startswith("rng/")}
        return cls(sidecar["step"], sidecar["seen"], sidecar["elapsed_s"], sums, rng)


def _finished(folder: RunFolder, epochs: int) -> bool:
    """The run has its results and a readable checkpoint of its last epoch (a missing or damaged one:
    the run is resumed as usual, which says why)."""
    epoch = newest_readable_epoch(folder.path)
    return epoch is not None and epoch + 1 >= epochs and folder.results_file.is_file()


def train(config: RunConfig, *, resume: bool = False, progress: bool = True) -> RunResults | None:
    """Train (or, with resume, continue) the run of `config` in `config.out`; return its results
    (None in the processes other than the first of a data-parallel run)."""
    if config.out is None:
        raise ConfigError("no output folder: set out (CLI: --out RUN_DIR).")
    folder = RunFolder(Path(config.out))
    folder.check_resumable() if resume else folder.check_new()
    if resume and _finished(folder, config.epochs):
        if progress:
            tqdm.write(f"{folder.path} finished all {config.epochs} epochs already; nothing to train.")
        return folder.results()
    with joined("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu") as cluster:
        device = resolve_device(config.device, cluster.local_rank)
        method = _check_before_data(config, device, cluster)
        train_set, test_set = load_training_data(config)
        state = _build(config, method, train_set.info, device, cluster)
        start = _start(config, folder, state, device, resume)
        cluster.barrier()  # every process has checked the folder before process 0 writes into it
        if cluster.writer:
            if not resume:
                folder.write_config(config)
            folder.keep_metrics_before(start.epoch)
            folder.append_provenance(process_record(device, start.epoch))
        counter = PassCounter(start.cost.forward_backward, start.cost.forward_only)
        train_set_used, totals = _prepare(config, folder, state, train_set, start.epoch_start_cost, counter, device,
                                          cluster)
        saver = Checkpointer(folder, config, state, start.init_cost)
        if config.compile:
            state.model.compile(mode=config.compile_mode)  # every path methods call, in place
        training = EpochParts(config, _loader(config, train_set_used, device, cluster), state, device, cluster)
        for epoch in range(start.epoch, config.epochs):
            record, totals = _run_epoch(training, epoch, totals, counter, saver,
                                        start.resumed if epoch == start.epoch else None, progress)
            if cluster.writer:
                _record_epoch(training, epoch, record, folder, test_set, saver, totals)
        cluster.barrier()
        if not cluster.writer:
            return None
        return final_evaluation(folder, config, state.model, test_set, device, totals, start.init_cost, progress)


def _check_before_data(config: RunConfig, device: torch.device, cluster: Distributed) -> Method:
    """Every refusal that needs no data; the method, built."""
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (GradScaler); use bf16 or fp32 on a CPU.")
    method = validate(config)  # a bad method or model setting is refused before any data is read
    if config.checkpoint_every is not None and cluster.world > 1:
        raise ConfigError(f"checkpoint_every saves one process's random streams, so it works in single-process "
                          f"runs; this run has {cluster.world} processes (they checkpoint at the end of each epoch).")
    return method


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """What a checkpoint saves and restores: the model, the method and their optimisers."""

    model: torch.nn.Module
    method: Method
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    optimizers: dict[str, torch.optim.Optimizer]

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model, "method": self.method}


def _build(config: RunConfig, method: Method, info: DatasetInfo, device: torch.device,
           cluster: Distributed) -> TrainingState:
    torch.manual_seed(config.seed)
    model = build_model(config, info).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = method.to(device)
    method.attach(model)
    method.check_images(model, (info.channels, *info.image_size))
    synchronise_batch_norm(model, config.sync_bn and cluster.world > 1)
    optimizer = build_optimizer(config.optim, [model, method], exclude=method.self_trained_parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    optimizers = {"optimizer": optimizer, **{f"method.{name}": o for name, o in method.optimizers().items()}}
    return TrainingState(model, method, optimizer, scaler, optimizers)


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a run starts: its first epoch, the cost so far, the cost of the weights it started
    from (None: unknown), and, when resumed within an epoch, that epoch's progress and its cost
    at its start."""

    epoch: int = 0
    cost: Cost = Cost()
    init_cost: Cost | None = Cost()
    resumed: EpochProgress | None = None
    epoch_start_cost: Cost = Cost()


def _start(config: RunConfig, folder: RunFolder, state: TrainingState, device: torch.device, resume: bool) -> Start:
    """Restore the newest checkpoint (resume), load the initial weights (init.path), or start afresh."""
    checkpoint = load_latest(folder.path, device) if resume else None
    if checkpoint is None:
        init_cost = load_initial_weights(state.model, config.init) if config.init.path is not None else Cost()
        return Start(init_cost=init_cost)
    tensors, sidecar = checkpoint
    unpack_state(tensors, sidecar["optimizers"], state.modules, state.optimizers)
    state.scaler.load_state_dict(sidecar["scaler"])
    cost, init_cost = Cost.from_json(sidecar["cost"]), Cost.from_json(sidecar["init_cost"])
    if "step" in sidecar:  # saved within an epoch: that epoch goes on from its next step
        return Start(sidecar["epoch"], cost, init_cost, EpochProgress.read(tensors, sidecar, device),
                     Cost.from_json(sidecar["epoch_start_cost"]))
    return Start(sidecar["epoch"] + 1, cost, init_cost, epoch_start_cost=cost)


def _prepare(config: RunConfig, folder: RunFolder, state: TrainingState, train_set: ImageDataset, before: Cost,
             counter: PassCounter, device: torch.device, cluster: Distributed) -> tuple[ImageDataset, Cost]:
    """The method's phase before the first epoch (AdCorDA's correction), counted in the run's cost;
    returns the training set it leaves and the cost so far. Process 0 runs it and stores its result
    in the run folder; the others read it from there."""
    handle, started = counter.attach(state.model), time.perf_counter()
    if cluster.writer:
        train_set = state.method.prepare(state.model, train_set, folder.path, device, _augmentation(config))
    cluster.barrier()
    if not cluster.writer:
        train_set = state.method.prepare(state.model, train_set, folder.path, device, _augmentation(config))
    handle.remove()
    return train_set, dataclasses.replace(before, forward_backward=counter.forward_backward,
                                          forward_only=counter.forward_only,
                                          train_time_s=before.train_time_s + time.perf_counter() - started)


@dataclasses.dataclass(frozen=True)
class Checkpointer:
    """Saves the training state with the run's cost: at the end of an epoch, or within one with
    the epoch's progress and its cost at its start."""

    folder: RunFolder
    config: RunConfig
    state: TrainingState
    init_cost: Cost | None

    def save(self, epoch: int, cost: Cost, progress: EpochProgress | None = None,
             epoch_start_cost: Cost | None = None) -> None:
        tensors, optimizer_states = pack_state(self.state.modules, self.state.optimizers)
        sidecar = {"epoch": epoch, "seed": self.config.seed, "optimizers": optimizer_states,
                   "scaler": self.state.scaler.state_dict(), "cost": cost.to_json(),
                   "init_cost": self.init_cost.to_json() if self.init_cost is not None else None,
                   "config": to_dict(self.config)}
        if progress is not None:
            tensors.update(progress.tensors())
            sidecar.update(step=progress.step, seen=progress.seen, elapsed_s=progress.elapsed_s,
                           epoch_start_cost=epoch_start_cost.to_json())
        save_checkpoint(self.folder.path, epoch, tensors, sidecar, step=progress.step if progress else None)


def _run_epoch(parts: EpochParts, epoch: int, before: Cost, counter: PassCounter, saver: Checkpointer,
               resumed: EpochProgress | None, progress: bool) -> tuple[dict, Cost]:
    """Train one epoch (checkpointing within it every `checkpoint_every` steps); returns its
    metrics record and the run's cost after it, passes summed over every process."""
    passes = torch.tensor([counter.forward_backward, counter.forward_only], dtype=torch.float64)

    def within_epoch(state: EpochProgress) -> None:
        saver.save(epoch, Cost(counter.forward_backward, counter.forward_only, before.train_time_s + state.elapsed_s,
                               before.images + state.seen), state, before)

    handle = counter.attach(parts.state.model)
    record = _train_epoch(parts, epoch, progress, resumed, within_epoch)
    handle.remove()
    epoch_passes = all_reduce_sum(torch.tensor([counter.forward_backward, counter.forward_only],
                                               dtype=torch.float64) - passes, parts.cluster.world)
    counter.forward_backward, counter.forward_only = (int(v) for v in passes + epoch_passes)
    return record, Cost(counter.forward_backward, counter.forward_only, before.train_time_s + record["epoch_time_s"],
                        before.images + record["images"])


def _record_epoch(parts: EpochParts, epoch: int, record: dict, folder: RunFolder, test_set: ImageDataset,
                  saver: Checkpointer, cost: Cost) -> None:
    """Process 0 after an epoch: test accuracy (and PGD accuracy with `eval.epoch_pgd_limit`), the
    metrics line, the checkpoint, a line on the console."""
    config = parts.config
    record["test_acc"] = per_condition(parts.state.model, lambda net: accuracy(
        net, test_set, batch_size=config.eval.batch_size, device=parts.device))
    if config.eval.epoch_pgd_limit is not None:
        record["test_pgd_acc"] = per_condition(parts.state.model, lambda net: robust_accuracy(
            net, test_set, config, parts.device, config.eval.epoch_pgd_limit))
    folder.append_metrics(record)
    saver.save(epoch, cost)
    robust = f"  test PGD acc {_shown(record['test_pgd_acc'])}" if "test_pgd_acc" in record else ""
    tqdm.write(f"epoch {epoch + 1}/{config.epochs}  loss {record['train_loss']:.4f}  train acc "
               f"{record['train_acc']:.4f}  test acc {_shown(record['test_acc'])}{robust}  "
               f"{record['images_per_s']:.0f} img/s")


def _shown(value: float | dict[str, float]) -> str:
    """An accuracy for the console; a conditioned model's as its range over the settings."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{min(value.values()):.4f}-{max(value.values()):.4f} over {len(value)} settings"


@dataclasses.dataclass(frozen=True)
class EpochParts:
    """What one epoch of a run works with: its settings, data, training state, device and processes."""

    config: RunConfig
    loader: DeviceLoader | StreamLoader
    state: TrainingState
    device: torch.device
    cluster: Distributed


def _train_epoch(parts: EpochParts, epoch: int, progress: bool, resumed: EpochProgress | None = None,
                 checkpoint: Callable[[EpochProgress], None] | None = None) -> dict:
    """One pass over the training data (from where `resumed` stands, if given); returns the epoch's
    metrics record (without test accuracy), summed over every process. Every
    `config.checkpoint_every` steps, `checkpoint` gets the epoch's progress."""
    config, loader, device, cluster = parts.config, parts.loader, parts.device, parts.cluster
    model, method, optimizer, scaler = parts.state.model, parts.state.method, parts.state.optimizer, parts.state.scaler
    # Each process has its own random streams (attack starts, dropout); process 0 has a single
    # process's, so one process replays exactly what it did before data parallelism existed.
    offset = 1000 * cluster.rank
    torch.manual_seed(stream_seed(config.seed, epoch, 1 + offset))
    shared = torch.Generator().manual_seed(stream_seed(config.seed, epoch, 3)) if cluster.world > 1 else None
    ctx = StepContext.seeded(stream_seed(config.seed, epoch, 2 + offset), device,
                             noise_seed=stream_seed(config.seed, epoch, 4 + offset),
                             label_smoothing=config.label_smoothing, shared_generator=shared, world=cluster.world)
    amp = dict(device_type=device.type, dtype=AMP_DTYPES.get(config.precision), enabled=config.precision != "fp32")
    model.train()
    method.train()
    steps = len(loader)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    logs_sum: dict[str, torch.Tensor] = {}
    seen, start, started = 0, 0, time.perf_counter()
    if resumed is not None:
        start, seen, started = resumed.step, resumed.seen, started - resumed.elapsed_s
        loss_sum, correct = resumed.sums["loss"].clone(), resumed.sums["correct"].clone()
        logs_sum = {k[len("logs/"):]: v.clone() for k, v in resumed.sums.items() if k.startswith("logs/")}
        _set_random_states(resumed.rng, ctx, device)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    bar = tqdm(total=steps, initial=start, desc=f"epoch {epoch + 1}/{config.epochs}",
               disable=not (progress and cluster.writer), leave=False)
    for index, (x, y) in enumerate(loader.epoch(epoch, start), start):
        epochs_done = epoch + index / steps
        lr = config.optim.lr * lr_factor(config.schedule, config.epochs, epochs_done)
        for group in optimizer.param_groups:
            group["lr"] = lr
            if config.schedule.momentum_at_peak is not None:
                group["momentum"] = momentum_at(config.schedule, config.optim.momentum, config.epochs, epochs_done)
        ctx.progress = epochs_done / config.epochs
        ctx.step = epoch * steps + index
        with _fits_in_memory(config.batch_size, device):
            with torch.autocast(**amp):
                out = method.step(model, x, y, ctx)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.loss).backward()
        average_gradients(parameters, cluster.world)
        if config.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        loss_sum += out.loss.detach() * len(y)
        correct += (out.logits.detach().argmax(1) == y).sum()
        for key, value in out.logs.items():
            logs_sum[key] = logs_sum.get(key, 0) + value.detach() * len(y)
        seen += len(y)
        if config.checkpoint_every and (index + 1) % config.checkpoint_every == 0 and index + 1 < steps:
            sums = {"loss": loss_sum, "correct": correct, **{f"logs/{k}": v for k, v in logs_sum.items()}}
            checkpoint(EpochProgress(index + 1, seen, time.perf_counter() - started, sums,
                                     _random_states(ctx, device)))
        bar.update()
        if progress and (index % 10 == 0 or index == steps - 1):
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}",
                            img_s=f"{seen / max(elapsed, 1e-9):.0f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    if cluster.world > 1:
        terms = [loss_sum.double(), correct.double(), torch.tensor(float(seen), device=device),
                 *(logs_sum[k].double() for k in sorted(logs_sum))]
        totals = all_reduce_sum(torch.stack(terms), cluster.world)
        loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
        logs_sum = dict(zip(sorted(logs_sum), totals[3:]))
    return {"epoch": epoch, "lr": lr, "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
            "epoch_time_s": seconds, "images_per_s": seen / seconds, "images": seen,
            "peak_memory_mb": peak_memory_mb(device),
            **{k: v.item() / seen for k, v in logs_sum.items()}}


def _random_states(ctx: StepContext, device: torch.device) -> dict[str, torch.Tensor]:
    """Every random stream a training step draws from, as tensors."""
    states = {"torch": torch.get_rng_state(), "step": ctx.generator.get_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    if ctx.noise_generator is not None:
        states["noise"] = ctx.noise_generator.get_state()
    return states


def _set_random_states(states: dict[str, torch.Tensor], ctx: StepContext, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    ctx.generator.set_state(states["step"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    if ctx.noise_generator is not None and "noise" in states:  # checkpoints from before the noise stream lack it
        ctx.noise_generator.set_state(states["noise"])


@contextmanager
def _fits_in_memory(batch_size: int, device: torch.device):
    """Turn running out of memory in a training step into one sentence with what to do."""
    try:
        yield
    except RuntimeError as error:  # torch.OutOfMemoryError (GPUs) is one; the CPU allocator raises a plain one
        message = str(error)
        if not isinstance(error, torch.OutOfMemoryError) and "can't allocate memory" not in message:
            raise
        raise RobustrainError(f"a training step with batch size {batch_size} does not fit in the memory of {device}; "
                              f"try --batch-size {max(1, batch_size // 2)}") from None


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated tensor memory on a GPU, the process's peak resident size on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
