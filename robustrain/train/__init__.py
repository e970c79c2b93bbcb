"""The generic training loop and what it is configured with."""

from .optim import OptimConfig, build_optimizer
from .run_config import DataConfig, EvalConfig, RunConfig
from .schedules import ScheduleConfig, learning_rate_curve, lr_factor
from .trainer import load_run_config, resolve_device, train

__all__ = ["DataConfig", "EvalConfig", "OptimConfig", "RunConfig", "ScheduleConfig", "build_optimizer",
           "learning_rate_curve", "load_run_config", "lr_factor", "resolve_device", "train"]
