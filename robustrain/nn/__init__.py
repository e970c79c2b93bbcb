"""Building blocks shared by the models."""

from .batchnorm import NormSpec, RoutedBatchNorm2d
from .condition import DEFAULT, Condition
from .film import FiLM
from .lambda_codes import ENCODINGS, LambdaCodes, encoding_matrix
from .normalize import Normalize
from .slimmable import SlimmableConv2d, SlimmableLinear, channels_at

__all__ = ["Condition", "DEFAULT", "ENCODINGS", "FiLM", "LambdaCodes", "NormSpec", "Normalize", "RoutedBatchNorm2d",
           "SlimmableConv2d", "SlimmableLinear", "channels_at", "encoding_matrix"]
