"""robustrain: train image classifiers that are accurate and robust at once."""

from .data import load_dataset
from .evaluate import accuracy, evaluate  # noqa: F811 (the function is `robustrain.evaluate`)
from .models import create_model, list_models
from .train import RunConfig, train

__version__ = "0.1.0"

__all__ = ["RunConfig", "accuracy", "evaluate", "create_model", "list_models", "load_dataset", "train", "__version__"]
