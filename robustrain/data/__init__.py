"""Datasets, the device-resident and streaming loaders, tensor augmentations, image files and shards."""

from .augment import crop_flip, random_crop, random_flip
from .dataset import DatasetInfo, ImageDataset, make_dataset
from .files import EvalTransform, FileImages, TrainTransform, iterate_uint8
from .loader import DeviceLoader, stream_seed
from .registry import DATASETS, load_dataset
from .shards import read_shards, write_shards
from .stream import StreamLoader

__all__ = ["DATASETS", "DatasetInfo", "DeviceLoader", "EvalTransform", "FileImages", "ImageDataset", "StreamLoader",
           "TrainTransform", "crop_flip", "iterate_uint8", "load_dataset", "make_dataset", "random_crop", "random_flip",
           "read_shards", "stream_seed", "write_shards"]
