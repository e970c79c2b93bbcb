"""Evaluation of any `x -> logits` module."""

from .accuracy import accuracy

__all__ = ["accuracy"]
