"""Model registry and constructors."""

from .base import BoundClassifier, Classifier
from .registry import create_model, list_models, model_options

__all__ = ["BoundClassifier", "Classifier", "create_model", "list_models", "model_options"]
