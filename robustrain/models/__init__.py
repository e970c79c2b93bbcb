"""Model registry and constructors."""

from .base import INIT_SCHEMES, BoundClassifier, Classifier, initialize
from .registry import MODELS, create_model, list_models, model_options

__all__ = ["INIT_SCHEMES", "MODELS", "BoundClassifier", "Classifier", "create_model", "initialize", "list_models",
           "model_options"]
