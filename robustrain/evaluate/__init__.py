"""Evaluation of any `x -> logits` module: accuracy, the suites, the corruption metrics."""

from .accuracy import accuracy, correct_mask, fixed_subset
from .metrics import ALEXNET_ERRORS, mce, mean_corruption_error, relative_mce
from .suite import conditions_of, evaluate, model_fingerprint
from .suites import SUITES, Suite, get_suite

__all__ = ["ALEXNET_ERRORS", "SUITES", "Suite", "accuracy", "conditions_of", "correct_mask", "evaluate", "fixed_subset",
           "get_suite", "mce", "mean_corruption_error", "model_fingerprint", "relative_mce"]
