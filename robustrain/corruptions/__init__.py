"""CIFAR-10-C / ImageNet-C corruptions as batched tensor operations, and the released file layout."""

from .files import load_corrupted, write_corrupted
from .registry import (BENCHMARK, CHUNK, CORRUPTIONS, EXTRA, GENERATOR_VERSION, SEVERITIES, Corruption, corrupt,
                       corrupt_uint8, get_corruption)
from .tables import TABLES, table_for

__all__ = ["BENCHMARK", "CHUNK", "CORRUPTIONS", "Corruption", "EXTRA", "GENERATOR_VERSION", "SEVERITIES", "TABLES",
           "corrupt", "corrupt_uint8", "get_corruption", "load_corrupted", "table_for", "write_corrupted"]
