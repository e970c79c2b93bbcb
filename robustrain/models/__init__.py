"""Model registry and constructors."""

from .base import BoundClassifier, Classifier
from .registry import MODELS, create_model, list_models, model_options

__all__ = ["MODELS", "BoundClassifier", "Classifier", "create_model", "list_models", "model_options"]
