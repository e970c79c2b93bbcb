import csv
import dataclasses
import gzip
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from robustrain.data import DeviceLoader, crop_flip, load_dataset, make_dataset
from robustrain.data import cifar as cifar_module
from robustrain.data import files as image_files, imagefolder
from robustrain.errors import DataError

from .conftest import shared_data

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar_folder(folder: Path, release, rng, per_batch: int = 3, classes: int = 10) -> dict:
    """Write batches in the official python layout; return {file: (data, labels)}."""
    folder.mkdir(parents=True)
    written = {}
    for files in release.files.values():
        for name in files:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, classes, per_batch)]
            entry = {b"batch_label": name.encode(), release.label_key: labels, b"data": data,
                     b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
            (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
            written[name] = (data, labels)
    names = [n.encode() for n in CIFAR10_NAMES] if classes == 10 else [f"class{i}".encode() for i in range(classes)]
    (folder / release.meta_file).write_bytes(pickle.dumps({release.names_key: names}, protocol=2))
    return written


def tar_folder(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


@pytest.mark.parametrize("packed", [True, False])
def test_cifar10_official_layout(tmp_path, packed):
    rng = np.random.default_rng(0)
    written = write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py", cifar_module.CIFAR10, rng)
    root = tmp_path / "root"
    root.mkdir()
    if packed:
        tar_folder(tmp_path / "src" / "cifar-10-batches-py", root / "cifar-10-python.tar.gz")
    else:
        (tmp_path / "src" / "cifar-10-batches-py").rename(root / "cifar-10-batches-py")
    train = load_dataset("cifar10", root, "train")
    test = load_dataset("cifar10", root, "test")
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert list(train.classes) == CIFAR10_NAMES
    data, labels = written["data_batch_2"]
    # The official row layout: 1024 red values, then green, then blue, each row-major.
    image = train.images[3]
    assert image[0, 0, 1] == data[0][1] and image[0, 1, 0] == data[0][32] and image[1, 0, 0] == data[0][1024]
    assert image[2, 31, 31] == data[0][3071]
    assert train.labels[3:6].tolist() == labels
    assert test.info.mean == (0.4914, 0.4822, 0.4465) and test.info.num_classes == 10


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    written = write_cifar_folder(tmp_path / "cifar-100-python", cifar_module.CIFAR100, rng, classes=100)
    test = load_dataset("cifar100", tmp_path, "test")
    assert test.info.num_classes == 100 and test.labels.tolist() == written["test"][1]


def test_cifar_archive_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder, cifar_module.CIFAR10, np.random.default_rng(0))

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Payload()}))
    with pytest.raises(DataError, match="refusing to unpickle builtins.print"):
        load_dataset("cifar10", tmp_path, "test")


def test_cifar_absent_offline_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="cifar10 not found under .*download=True"):
        load_dataset("cifar10", tmp_path, "train")


def test_cifar_download_checks_md5_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_cifar_folder(source / "cifar-10-batches-py", cifar_module.CIFAR10, np.random.default_rng(2))
    archive = tmp_path / "served.tar.gz"
    tar_folder(source / "cifar-10-batches-py", archive)
    good_md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = tmp_path / "root"

    release = dataclasses.replace(cifar_module.CIFAR10, url=archive.as_uri(), md5="0" * 32)
    monkeypatch.setitem(cifar_module.RELEASES, "cifar10", release)
    with pytest.raises(DataError, match="has md5"):
        load_dataset("cifar10", root, "test", download=True)
    assert not root.exists() or list(root.iterdir()) == []

    monkeypatch.setitem(cifar_module.RELEASES, "cifar10", dataclasses.replace(release, md5=good_md5))
    test = load_dataset("cifar10", root, "test", download=True)
    assert len(test) == 3 and (root / "cifar-10-python.tar.gz").is_file()


def test_mnist_idx_from_shared_data_gz_and_raw(tmp_path):
    folder = shared_data("mnist")
    expected_md5 = {"t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    for name, md5 in expected_md5.items():
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == md5
    test = load_dataset("mnist", folder, "test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.uint8
    # Well-known facts of the official test set: it starts 7, 2, 1, 0, 4 and has 1,135 ones.
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert (test.labels == 1).sum().item() == 1135
    for name in expected_md5:
        (tmp_path / name[:-3]).write_bytes(gzip.decompress((folder / name).read_bytes()))
    raw = load_dataset("fashion_mnist", tmp_path, "test")
    assert torch.equal(raw.images, test.images) and raw.classes[0] == "T-shirt/top"
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", folder, "train")


def test_idx_with_wrong_length_is_rejected(tmp_path):
    header = bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(header + bytes(4))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + b"".join(
        n.to_bytes(4, "big") for n in (5, 2, 2)) + bytes(20))
    with pytest.raises(DataError, match="holds 4 bytes of data but its header promises shape"):
        load_dataset("mnist", tmp_path, "test")


def test_svhn_mat(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[10], [1], [9], [10]], dtype=np.uint8)})
    test = load_dataset("svhn", tmp_path, "test")
    assert test.labels.tolist() == [0, 1, 9, 0]
    assert torch.equal(test.images[2], torch.from_numpy(x[:, :, :, 2]).permute(2, 0, 1))


def test_digits_is_real_and_split_without_overlap():
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    assert len(train) + len(test) == 1797 and train.images.shape[1:] == (1, 8, 8)
    assert torch.bincount(test.labels).min() >= 35
    from sklearn.datasets import load_digits

    first = np.rint(load_digits().images[0] * 255 / 16)
    assert torch.equal(test.images[0, 0], torch.from_numpy(first.astype(np.uint8)))


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_decodes_once_and_reuses_its_cache(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    for i, name in enumerate(["cat", "cat", "dog", "dog"]):
        write_png(tmp_path / "train" / name / f"{i}.png", images[i])
    first = load_dataset("imagefolder", tmp_path, "train")
    assert first.classes == ("cat", "dog") and first.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(first.images[2], torch.from_numpy(images[2]).permute(2, 0, 1))

    def no_decoding(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(image_files, "decode", no_decoding)
    again = load_dataset("imagefolder", tmp_path, "train")
    assert torch.equal(again.images, first.images)


def test_image_folder_test_split_uses_training_statistics(tmp_path):
    write_png(tmp_path / "train" / "a" / "0.png", np.full((2, 2, 3), 255, np.uint8))
    write_png(tmp_path / "train" / "a" / "1.png", np.zeros((2, 2, 3), np.uint8))
    write_png(tmp_path / "test" / "a" / "0.png", np.zeros((2, 2, 3), np.uint8))
    test = load_dataset("imagefolder", tmp_path, "test")
    assert test.info.mean == pytest.approx((0.5, 0.5, 0.5))


@pytest.mark.parametrize("problem, message", [
    ("mixed_size", r"is 4x4 but .* is 3x3; all images must have one size"),
    ("empty_class", r"class folder .*dog holds no images"),
    ("corrupt", r"cannot decode image .*broken.png"),
    ("gray_and_rgb", r"image .*b.png is grayscale but .*a.png is RGB; set data.color"),
])
def test_bad_image_folders_are_named(tmp_path, problem, message):
    write_png(tmp_path / "train" / "cat" / "a.png", np.zeros((3, 3, 3), np.uint8))
    if problem == "mixed_size":
        write_png(tmp_path / "train" / "cat" / "b.png", np.zeros((4, 4, 3), np.uint8))
    elif problem == "empty_class":
        (tmp_path / "train" / "dog").mkdir()
    elif problem == "corrupt":
        (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    else:
        write_png(tmp_path / "train" / "cat" / "b.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=message):
        load_dataset("imagefolder", tmp_path, "train")


def test_labels_out_of_range_are_reported():
    with pytest.raises(DataError, match="label 3 is out of range; labels must lie in 0..2"):
        make_dataset("toy", "train", torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 3]), ["a", "b", "c"])


@pytest.mark.slow
def test_cifar10_jpeg_matches_the_exact_official_pixels():
    jpeg_root, exact = shared_data("cifar10-jpeg"), shared_data("cifar10-exact")
    test = load_dataset("cifar10", jpeg_root, "test")
    assert len(test) == 10000 and torch.bincount(test.labels).tolist() == [1000] * 10
    with open(jpeg_root / "test_index.csv") as f:
        rows = list(csv.DictReader(f))
    position = {row["path"]: i for i, row in enumerate(sorted(rows, key=lambda r: r["path"]))}
    official_to_position = {int(r["test_index"]): position[r["path"]] for r in rows}
    npz = np.load(exact / "cifar10_exact_subset.npz")
    chosen = [official_to_position[int(i)] for i in npz["test_index"]]
    ours = test.images[chosen].permute(0, 2, 3, 1).numpy().astype(np.float64)
    assert test.labels[chosen].tolist() == npz["y_test"].tolist()
    # JPEG export: about 5.8/255 mean absolute difference to the official pixels (data README).
    assert np.abs(ours - npz["x_test"]).mean() < 8


def test_loader_batches_cover_each_image_once_and_are_seeded():
    data = make_dataset("toy", "train", torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10) % 3,
                        ["a", "b", "c"])
    keep = DeviceLoader(data, 4, shuffle=True, seed=1, last_batch="keep")
    drop = DeviceLoader(data, 4, shuffle=True, seed=1, last_batch="drop")
    assert len(keep) == 3 and len(drop) == 2
    seen = torch.cat([x.flatten() for x, _ in keep.epoch(0)]) * 255
    assert sorted(seen.round().int().tolist()) == list(range(10))
    assert [b[0].tolist() for b in keep.epoch(3)] == [b[0].tolist() for b in keep.epoch(3)]
    assert [b[0].tolist() for b in keep.epoch(3)] != [b[0].tolist() for b in keep.epoch(4)]
    x, y = next(iter(keep.epoch(0)))
    assert torch.equal(y, (x.flatten() * 255).round().long() % 3)


@pytest.mark.parametrize("mode, numpy_mode", [("zeros", "constant"), ("reflect", "reflect")])
def test_crop_flip_outputs_are_windows_of_the_padded_image(mode, numpy_mode):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (16, 3, 6, 6), dtype=torch.uint8)
    out = crop_flip(images, generator, padding=2, mode=mode)
    padded = torch.from_numpy(np.pad(images.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode=numpy_mode))
    flips = 0
    for i in range(16):
        windows = [padded[i, :, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        plain = any(torch.equal(out[i], w) for w in windows)
        mirrored = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 0 < flips < 16


def test_decoding_in_worker_processes_gives_the_same_cache(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (7, 3, 3, 3), dtype=np.uint8)
    for k in range(7):
        write_png(tmp_path / "train" / f"c{k % 2}" / f"{k}.png", arrays[k])
    monkeypatch.setattr(image_files, "DECODE_CHUNK", 2)  # 4 chunks over 2 workers
    records, _ = imagefolder.folder_records(imagefolder.list_image_folder(tmp_path, "train")[1])
    alone = image_files.open_file_images(records, "auto", image_files.EvalTransform(), workers=1).to("cpu")
    parallel = image_files.open_file_images(records, "auto", image_files.EvalTransform(), workers=2).to("cpu")
    assert torch.equal(alone, parallel) and alone.shape == (7, 3, 3, 3)
    order = [0, 2, 4, 6, 1, 3, 5]  # sorted by class folder, then name
    assert torch.equal(alone, torch.from_numpy(arrays[order]).permute(0, 3, 1, 2))
    monkeypatch.setenv("ROBUSTRAIN_DECODE_WORKERS", "0")
    with pytest.raises(DataError, match="ROBUSTRAIN_DECODE_WORKERS must be a whole number of at least 1"):
        image_files.decode_workers()


def test_channel_statistics_match_numpy_without_a_float_copy_of_the_set():
    from robustrain.data.dataset import channel_stats

    images = torch.randint(0, 256, (700, 3, 5, 4), dtype=torch.uint8)  # several chunks of 256
    pixels = images.numpy().transpose(1, 0, 2, 3).reshape(3, -1) / 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx(pixels.mean(1), abs=1e-12) and std == pytest.approx(pixels.std(1, ddof=1), abs=1e-12)


def test_a_streamed_reflect_padded_crop_is_a_window_of_numpys_reflect_pad():
    from robustrain.data import TrainTransform

    pixels = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    padded = np.pad(pixels, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    windows = [padded[r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
    transform = TrainTransform("crop", padding=2, padding_mode="reflect")
    for seed in range(8):
        out = np.asarray(transform(Image.fromarray(pixels), np.random.default_rng(seed)))
        assert any(np.array_equal(out, w) for w in windows)
