"""Encoded images on disk, decoded when read: the records (image files, or members of tar shards),
the ImageNet-style transforms applied as each image is decoded, and `FileImages`, the lazy
counterpart of a uint8 (N, C, H, W) tensor that the streaming path and the folder cache share.

Every random choice of an image's training view comes from a generator seeded by (run seed,
epoch, image index), so a view does not depend on worker count, batch order or where an
epoch was resumed.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

COLORS = ("auto", "rgb", "grey")


@dataclass(frozen=True)
class Records:
    """Where N encoded images live: `paths[i]` whole, or, for members of tar shards, `sizes[i]`
    bytes at `offsets[i]` of `paths[shard[i]]`."""

    paths: tuple[str, ...]
    shard: np.ndarray | None = None
    offsets: np.ndarray | None = None
    sizes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths) if self.shard is None else len(self.shard)

    def name(self, i: int) -> str:
        if self.shard is None:
            return self.paths[i]
        return f"{self.paths[self.shard[i]]} (member at byte {self.offsets[i]})"

    def read(self, i: int) -> bytes:
        path = self.paths[i] if self.shard is None else self.paths[self.shard[i]]
        try:
            with open(path, "rb") as file:
                if self.shard is None:
                    return file.read()
                file.seek(int(self.offsets[i]))
                return file.read(int(self.sizes[i]))
        except FileNotFoundError:
            raise DataError(f"image {path} disappeared while {os.path.dirname(path)} was being read; run again once "
                            "the folder has stopped changing.") from None


def decode(data: bytes, name: str, color: str) -> Image.Image:
    """An 8-bit "L" or "RGB" image; 16-bit grey images are scaled to 8 bits, not clipped.
    color: "auto" keeps the kind stored, "rgb" / "grey" converts."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                image = Image.fromarray(np.round(np.asarray(image, dtype=np.float64) / 257).clip(0, 255)
                                        .astype(np.uint8), mode="L")
            elif image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "F") else "RGB")
            if color != "auto":
                image = image.convert("RGB" if color == "rgb" else "L")
            image.load()
            return image
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot decode image {name} ({error}).") from None


def center_crop_box(width: int, height: int, crop_width: int, crop_height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centred window, rounded as torchvision's center_crop."""
    left, top = int(round((width - crop_width) / 2)), int(round((height - crop_height) / 2))
    return left, top, left + crop_width, top + crop_height


@dataclass(frozen=True)
class EvalTransform:
    """The evaluation view: resize the shorter side to `resize` pixels (bilinear, antialiased), then
    cut the centred `crop` x `crop` window (ImageNet: 256, 224). None: that step is skipped."""

    resize: int | None = None
    crop: int | None = None

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.resize is not None:
            width, height = image.size
            short = min(width, height)
            # torchvision's Resize(int): the shorter side becomes `resize`, the longer one is truncated
            size = (self.resize, int(self.resize * height / width)) if width == short else \
                (int(self.resize * width / height), self.resize)
            if size != image.size:
                image = image.resize(size, Image.BILINEAR)
        if self.crop is not None:
            width, height = image.size
            if width < self.crop or height < self.crop:
                raise ValueError(f"{width}x{height} is smaller than the {self.crop}-pixel crop")
            image = image.crop(center_crop_box(width, height, self.crop, self.crop))
        return image


RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


def random_resized_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop window (scale 0.08-1 of the area, aspect 3/4-4/3 drawn
    log-uniformly; ten tries, then the centred window of the largest allowed aspect)."""
    area = width * height
    log_ratio = (math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*RRC_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    ratio = width / height
    if ratio < RRC_RATIO[0]:
        w, h = width, int(round(width / RRC_RATIO[0]))
    elif ratio > RRC_RATIO[1]:
        w, h = int(round(height * RRC_RATIO[1])), height
    else:
        w, h = width, height
    return center_crop_box(width, height, w, h)


@dataclass(frozen=True)
class TrainTransform:
    """A training view made as each image is decoded.

    random_resized_crop: RandomResizedCrop to `size` x `size` (bilinear), then a flip with
        probability 1/2 (the ImageNet recipe). crop_flip / crop / none: the evaluation view, then
        CIFAR's padded random crop (`padding` pixels of zeros, or mirrored with `padding_mode`
        "reflect") and flip, as the device-resident path does.
    """

    augment: Literal["random_resized_crop", "crop_flip", "crop", "none"]
    view: EvalTransform = field(default_factory=EvalTransform)
    size: int | None = None
    padding: int = 4
    padding_mode: Literal["zeros", "reflect"] = "zeros"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if self.augment == "random_resized_crop":
            box = random_resized_box(*image.size, rng)
            image = image.resize((self.size, self.size), Image.BILINEAR, box=box)
        else:
            image = self.view(image)
            if self.augment != "none" and self.padding:
                top, left = (int(v) for v in rng.integers(0, 2 * self.padding + 1, size=2))
                width, height = image.size
                image = self._padded(image).crop((left, top, left + width, top + height))
        if self.augment in ("random_resized_crop", "crop_flip") and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    def _padded(self, image: Image.Image) -> Image.Image:
        p = self.padding
        if self.padding_mode == "reflect":
            pixels = np.asarray(image)
            return Image.fromarray(np.pad(pixels, ((p, p), (p, p)) + ((0, 0),) * (pixels.ndim - 2), mode="reflect"))
        padded = Image.new(image.mode, (image.width + 2 * p, image.height + 2 * p))
        padded.paste(image, (p, p))
        return padded


def view_seed(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of image `index`'s training view in `epoch` of a run with `seed`."""
    return np.random.default_rng([seed, epoch, index])


def decode_workers() -> int:
    """Processes that decode images: $ROBUSTRAIN_DECODE_WORKERS, else one per CPU core this process may use."""
    given = os.environ.get("ROBUSTRAIN_DECODE_WORKERS")
    if given is not None:
        if not given.isdigit() or int(given) < 1:
            raise DataError(f"ROBUSTRAIN_DECODE_WORKERS must be a whole number of at least 1, got {given!r}.")
        return int(given)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class DecodeItems(torch.utils.data.Dataset):
    """Item k: (image rows[k] as uint8 CHW, or None and the sentence saying why not). Errors travel
    as values so that a bad file is reported in one sentence, not as a worker's traceback."""

    records: Records
    rows: np.ndarray
    color: str
    shape: tuple[int, int, int]
    transform: EvalTransform | TrainTransform
    seed: int = 0
    epoch: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[np.ndarray | None, str | None]:
        row = int(self.rows[k])
        name = self.records.name(row)
        try:
            image = decode(self.records.read(row), name, self.color)
            if isinstance(self.transform, TrainTransform):
                image = self.transform(image, view_seed(self.seed, self.epoch, row))
            else:
                image = self.transform(image)
        except DataError as error:
            return None, str(error)
        except (OSError, ValueError) as error:
            return None, f"cannot read image {name} ({error})."
        array = np.asarray(image, dtype=np.uint8)
        array = array[:, :, None] if array.ndim == 2 else array
        if array.shape[2] != self.shape[0]:
            kinds = {1: "grayscale", 3: "RGB"}
            return None, (f"image {name} is {kinds[array.shape[2]]} but {self.records.name(int(self.rows[0]))} is "
                          f"{kinds[self.shape[0]]}; "
                          "set data.color to rgb (or grey) to convert every image when it is read, or convert those "
                          "files yourself.")
        if array.shape[:2] != self.shape[1:]:
            first = self.records.name(int(self.rows[0]))
            return None, (f"image {name} is {array.shape[1]}x{array.shape[0]} but {first} "
                          f"is {self.shape[2]}x{self.shape[1]}; all images must have one size (or set data.image_size "
                          "to resize and crop them as they are read).")
        return np.ascontiguousarray(array.transpose(2, 0, 1)), None


def _collate(items: list[tuple[np.ndarray | None, str | None]]) -> tuple[torch.Tensor | None, str | None]:
    for _, error in items:
        if error is not None:
            return None, error
    return torch.from_numpy(np.stack([array for array, _ in items])), None


def _worker_context():
    # fork: the workers only run Pillow and NumPy, and a spawned worker would re-run the caller's
    # main module (breaking scripts without a __main__ guard); spawn where fork does not exist
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def decoded_batches(items: DecodeItems, batches: list[np.ndarray], workers: int,
                    pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """uint8 (B, C, H, W) tensors of `items`, one per list of item positions in `batches`, in order,
    decoded by `workers` processes (in this one when 1), at most two batches ahead per worker."""
    if not batches:
        return
    parallel = workers > 1 and len(batches) > 1
    loader = torch.utils.data.DataLoader(
        items, batch_sampler=[b.tolist() for b in batches], num_workers=workers if parallel else 0,
        collate_fn=_collate, pin_memory=pin_memory, multiprocessing_context=_worker_context() if parallel else None,
        prefetch_factor=2 if parallel else None)
    for tensor, error in loader:
        if error is not None:
            raise DataError(error)
        yield tensor


DECODE_CHUNK = 256  # images per task when a whole set is decoded: large enough that a task's start costs little


@dataclass(frozen=True)
class FileImages:
    """uint8 images (N, C, H, W) that stay encoded on disk until read: indexing gives another
    FileImages, `to(device)` decodes them all, `batches` decodes them in order a batch at a time.

    It answers the few questions every consumer of an image tensor asks (len, shape, dtype,
    indexing, to) so that evaluation code reads either kind the same way.
    """

    records: Records
    rows: np.ndarray
    shape_chw: tuple[int, int, int]
    color: str = "auto"
    transform: EvalTransform = field(default_factory=EvalTransform)
    workers: int = 1

    dtype = torch.uint8

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), *self.shape_chw)

    @property
    def nbytes(self) -> int:
        """The size the images take decoded."""
        return int(np.prod(self.shape))

    def dim(self) -> int:
        return 4

    def __getitem__(self, key) -> FileImages:
        if isinstance(key, int):
            raise TypeError("FileImages are indexed by a slice or an index tensor, which keeps the batch dimension")
        if torch.is_tensor(key):
            key = key.cpu().numpy()
        return replace(self, rows=self.rows[key])

    def batches(self, batch_size: int, pin_memory: bool = False) -> Iterator[torch.Tensor]:
        positions = np.arange(len(self.rows))
        items = DecodeItems(self.records, self.rows, self.color, self.shape_chw, self.transform)
        yield from decoded_batches(items, [positions[i:i + batch_size] for i in range(0, len(positions), batch_size)],
                                   self.workers, pin_memory)

    def to(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Every image decoded, into one tensor filled batch by batch (no second copy of the set)."""
        images = torch.empty(self.shape, dtype=torch.uint8)
        start = 0
        for batch in self.batches(DECODE_CHUNK):
            images[start:start + len(batch)] = batch
            start += len(batch)
        return images.to(device)


def _probe_shape(records: Records, color: str, view: EvalTransform) -> tuple[int, int, int]:
    """(C, H, W) of the first image after `view`, read from its header alone (nothing is decoded)."""
    name = records.name(0)
    try:
        with Image.open(io.BytesIO(records.read(0))) as image:
            mode, size = image.mode, image.size
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot decode image {name} ({error}).") from None
    channels = {"rgb": 3, "grey": 1}.get(color, 1 if mode in ("L", "1", "F", "I", "I;16", "I;16B", "I;16L", "I;16N")
                                          else 3)
    try:
        width, height = view(Image.new("L", size)).size
    except ValueError as error:
        raise DataError(f"cannot read image {name} ({error}).") from None
    return channels, height, width


def open_file_images(records: Records, color: str, view: EvalTransform, workers: int | None = None) -> FileImages:
    """FileImages over every record; the shape is the first image's after `view`."""
    if color not in COLORS:
        raise DataError(f"data.color must be one of {', '.join(COLORS)}, got {color!r}.")
    if not len(records):
        raise DataError("no images to read.")
    return FileImages(records, np.arange(len(records)), _probe_shape(records, color, view), color, view,
                      decode_workers() if workers is None else workers)


def iterate_uint8(images: torch.Tensor | FileImages, batch_size: int,
                  pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """Consecutive batches of uint8 images, sliced from a tensor or decoded from files."""
    if isinstance(images, FileImages):
        yield from images.batches(batch_size, pin_memory)
    else:
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]
