"""Building blocks shared by the models."""

from .batchnorm import RoutedBatchNorm2d
from .condition import DEFAULT, Condition
from .normalize import Normalize

__all__ = ["Condition", "DEFAULT", "Normalize", "RoutedBatchNorm2d"]
