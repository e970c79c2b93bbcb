"""Tiny-ImageNet-200 as released (tiny-imagenet-200.zip, extracted): `train/<wnid>/images/*.JPEG`
and `val/images/*.JPEG`, labelled by `val/val_annotations.txt`. The released `test/` has no
labels, so the "test" split is val's 10,000 images, as in the Tiny-ImageNet literature."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .imagefolder import image_names

ANNOTATIONS = "val_annotations.txt"


def list_tiny_imagenet(root: Path, split: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Class names (the sorted wnids of train/) and (file, label) pairs of `split` ("train" or "test")."""
    if split not in ("train", "test"):
        raise DataError(f"tinyimagenet has splits train and test (its labelled val images), not '{split}'.")
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"{train} does not exist; expected the extracted tiny-imagenet-200.zip "
                        "(train/<wnid>/images/, val/images/ and val/val_annotations.txt).")
    classes = tuple(sorted(e.name for e in os.scandir(train) if e.is_dir()))
    label_of = {wnid: label for label, wnid in enumerate(classes)}
    if split == "train":
        files = []
        for wnid in classes:
            folder = train / wnid / "images"
            if not folder.is_dir():
                raise DataError(f"{folder} does not exist; Tiny-ImageNet keeps each class's images in <wnid>/images/.")
            files += [(folder / name, label_of[wnid]) for name in image_names(folder)]
        return classes, files
    annotations = root / "val" / ANNOTATIONS
    if not annotations.is_file():
        raise DataError(f"{annotations} does not exist; it labels Tiny-ImageNet's val images (the test split).")
    labels = {}
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise DataError(f"{annotations} line {number} ({line.strip()!r}) does not name an image and one of the "
                            f"{len(classes)} training classes.")
        labels[fields[0]] = label_of[fields[1]]
    folder = root / "val" / "images"
    names = image_names(folder) if folder.is_dir() else []
    unlabelled = [name for name in names if name not in labels]
    if unlabelled or not names:
        raise DataError(f"{folder} holds {len(names)} images, {len(unlabelled)} of them not in {ANNOTATIONS} "
                        f"({unlabelled[0] if unlabelled else 'none to read'}).")
    return classes, [(folder / name, labels[name]) for name in names]
