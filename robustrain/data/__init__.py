"""Datasets, the device-resident loader and tensor augmentations."""

from .augment import crop_flip, random_crop, random_flip
from .dataset import DatasetInfo, ImageDataset, make_dataset
from .loader import DeviceLoader, stream_seed
from .registry import DATASETS, load_dataset

__all__ = ["DATASETS", "DatasetInfo", "DeviceLoader", "ImageDataset", "crop_flip", "load_dataset",
           "make_dataset", "random_crop", "random_flip", "stream_seed"]
