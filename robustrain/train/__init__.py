"""The generic training loop and what it is configured with.

The loop itself (`trainer`) is imported on the first call of `train`, so that loading a trained
run for evaluation (`load.load_run`) never imports it."""

from .distributed import resolve_device
from .optim import OptimConfig, build_optimizer
from .run_config import DataConfig, EvalConfig, RunConfig, build_model, read_run_config
from .schedules import ScheduleConfig, learning_rate_curve, lr_factor


def train(config: RunConfig, *, resume: bool = False, progress: bool = True) -> dict:
    """Train (or, with resume, continue) the run of `config` in `config.out`; return its results."""
    from .trainer import train as run_training_loop

    return run_training_loop(config, resume=resume, progress=progress)


__all__ = ["DataConfig", "EvalConfig", "OptimConfig", "RunConfig", "ScheduleConfig", "build_model", "build_optimizer",
           "learning_rate_curve", "lr_factor", "read_run_config", "resolve_device", "train"]
