"""Data beyond memory: images decoded when read, the streaming loader, ImageNet views, shards,
mid-epoch resume, bounded memory and the Tiny-ImageNet-style path through the CLI."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustrain.cli import main
from robustrain.corruptions import load_corrupted
from robustrain.data import EvalTransform, FileImages, StreamLoader, TrainTransform, load_dataset, read_shards, \
    write_shards
from robustrain.data.files import random_resized_box
from robustrain.errors import DataError
from robustrain.evaluate import Suite, evaluate
from robustrain.models import create_model
from robustrain.train import RunConfig, train
from robustrain.config import from_dict

from .test_train import read_metrics


def make_folder(root: Path, classes: int, per_class: int, size: int | tuple[int, int], test_per_class: int = 2,
                suffix: str = ".png", seed: int = 0) -> None:
    """root/{train,test}/n<class>/<k><suffix>: class-coloured noise, so that a model can learn it."""
    rng = np.random.default_rng(seed)
    width, height = (size, size) if isinstance(size, int) else size
    for split, count in (("train", per_class), ("test", test_per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                colour = np.array([(c * 97) % 256, (c * 53) % 256, (c * 29) % 256], np.float64)
                pixels = (colour + rng.normal(0, 30, (height, width, 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}{suffix}")


# The views against their definitions.

def test_eval_view_resizes_the_shorter_side_then_cuts_the_centre():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8))
    out = EvalTransform(resize=256, crop=224)(image)
    # 500x375 -> shorter side 256: 341x256 (the longer side truncated, as torchvision's Resize);
    # the centre 224 window of 341x256 starts at (round(58.5), 16) = (58, 16).
    expected = image.resize((341, 256), Image.BILINEAR).crop((58, 16, 282, 240))
    assert out.size == (224, 224) and np.array_equal(np.asarray(out), np.asarray(expected))


def test_random_resized_boxes_obey_scale_and_aspect_and_fall_back_to_the_centre():
    rng = np.random.default_rng(0)
    for width, height in ((500, 375), (64, 64), (100, 300)):
        for _ in range(300):
            left, top, right, bottom = random_resized_box(width, height, rng)
            w, h = right - left, bottom - top
            assert 0 <= left and 0 <= top and right <= width and bottom <= height and w > 0 and h > 0
            if (w, h) != (width, height) or width / height in (4 / 3, 3 / 4):
                # rounding to whole pixels moves the area and the aspect by at most about a pixel
                assert 0.08 * width * height - (w + h) <= w * h <= width * height
                assert 3 / 4 - 2 / min(w, h) <= w / h <= 4 / 3 + 2 / min(w, h)
    # 1000x10 admits no window of aspect 3/4..4/3 with 8% of the area: the fallback is the centred
    # window of aspect 4/3 and full height, 13x10.
    assert random_resized_box(1000, 10, rng) == (494, 0, 507, 10)


def test_training_views_depend_on_the_image_and_epoch_not_on_the_workers(tmp_path):
    make_folder(tmp_path, 3, 6, (40, 30))
    train_set = load_dataset("imagefolder", tmp_path, "train", stream=True)
    assert isinstance(train_set.images, FileImages) and train_set.images.shape == (18, 3, 30, 40)
    transform = TrainTransform("random_resized_crop", size=24)
    batches = {}
    for workers in (1, 2):
        loader = StreamLoader(train_set, 5, shuffle=True, transform=transform, seed=3, workers=workers)
        batches[workers] = [(x.clone(), y.clone()) for x, y in loader.epoch(1)]
    assert len(batches[1]) == 4 and batches[1][0][0].shape == (5, 3, 24, 24)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches[1], batches[2]))
    resumed = list(StreamLoader(train_set, 5, shuffle=True, transform=transform, seed=3).epoch(1, start=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[1][2:], resumed)) and len(resumed) == 2
    other_epoch = next(iter(StreamLoader(train_set, 5, shuffle=True, transform=transform, seed=3).epoch(2)))
    assert not torch.equal(other_epoch[0], batches[1][0][0])
    # every image once per epoch, labels travelling with their images
    labels = torch.cat([y for _, y in batches[1]]).sort().values
    assert labels.tolist() == sorted(train_set.labels.tolist())


def test_streamed_and_in_memory_splits_hold_the_same_pixels(tmp_path):
    make_folder(tmp_path, 2, 5, (36, 28))
    view = EvalTransform(resize=24, crop=20)
    streamed = load_dataset("imagefolder", tmp_path, "test", view=view, stream=True)
    decoded = load_dataset("imagefolder", tmp_path, "test", view=view, stream=False)
    assert torch.is_tensor(decoded.images) and decoded.images.shape == (4, 3, 20, 20)
    assert torch.equal(streamed.images.to("cpu"), decoded.images)
    assert torch.equal(streamed.images[torch.tensor([3, 0])].to("cpu"), decoded.images[[3, 0]])
    assert streamed.info.mean == pytest.approx(decoded.info.mean)  # all 10 training images are the sample
    with pytest.raises(DataError, match="streaming and data.image_size / data.resize apply to image folders"):
        load_dataset("digits", split="test", stream=True)


def test_a_split_above_the_threshold_streams_by_itself(tmp_path):
    make_folder(tmp_path, 2, 3, 16)
    assert torch.is_tensor(load_dataset("imagefolder", tmp_path, "train").images)
    small_budget = load_dataset("imagefolder", tmp_path, "train", stream_above_bytes=6 * 3 * 16 * 16 - 1)
    assert isinstance(small_budget.images, FileImages)


# Shards.

def test_shards_round_trip_through_pack(tmp_path, capsys):
    make_folder(tmp_path / "folder", 3, 5, 12, suffix=".jpg")
    assert main(["pack", str(tmp_path / "folder"), str(tmp_path / "shards"), "--shard-mb", "0.004"]) == 0
    assert "train: " in capsys.readouterr().out
    shards = sorted(p.name for p in (tmp_path / "shards").glob("*.tar"))
    assert len([s for s in shards if s.startswith("train-")]) > 1 and "test-000000.tar" in shards
    for split in ("train", "test"):
        folder = load_dataset("imagefolder", tmp_path / "folder", split)
        for stream in (False, True):
            packed = load_dataset("shards", tmp_path / "shards", split, stream=stream)
            assert packed.classes == folder.classes and torch.equal(packed.labels, folder.labels)
            assert torch.equal(packed.images.to("cpu"), folder.images)
    classes, records, labels = read_shards(tmp_path / "shards", "train")
    assert len(records) == 15 and labels.tolist() == sorted(labels.tolist())


def test_a_shard_without_labels_is_named(tmp_path):
    make_folder(tmp_path / "folder", 2, 2, 8)
    write_shards(tmp_path / "folder", "train", tmp_path / "shards")
    import tarfile

    with tarfile.open(tmp_path / "shards" / "train-000000.tar", "a") as tar:
        tar.add(tmp_path / "folder" / "train" / "n0000" / "0.png", arcname="extra.png")
    with pytest.raises(DataError, match="sample 'extra' has an image without a .cls label"):
        load_dataset("shards", tmp_path / "shards", "train")


# Training and evaluation through the streaming path.

def stream_config(root: Path, out: Path, **extra) -> RunConfig:
    return from_dict(RunConfig, {
        "data": {"name": "imagefolder", "root": str(root), "stream": True, "augment": "random_resized_crop",
                 "image_size": 24, "resize": 28, **extra.pop("data", {})},
        "model": {"name": "small_cnn", "width": 8}, "method": {"name": "standard"},
        "optim": {"lr": 0.05}, "eval": {"pgd_steps": 2, "pgd_limit": 8},
        "epochs": 2, "batch_size": 8, "device": "cpu", "out": str(out), **extra})


def test_streamed_training_is_seeded_and_resumes_mid_epoch_to_the_same_result(tmp_path):
    make_folder(tmp_path / "data", 4, 10, (32, 30))
    first = train(stream_config(tmp_path / "data", tmp_path / "a", checkpoint_every=2), progress=False)
    again = train(stream_config(tmp_path / "data", tmp_path / "b", checkpoint_every=2), progress=False)
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    assert first.measurements == again.measurements
    # A run stopped right after its checkpoint at step 4 of the last epoch: everything after it removed.
    stopped = tmp_path / "stopped"
    shutil.copytree(tmp_path / "a", stopped)
    checkpoints = stopped / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.json") if p.name != "latest.json") == \
        ["epoch-0001-step-0000004.json", "epoch-0001.json"]
    for path in (checkpoints / "epoch-0001.json", checkpoints / "epoch-0001.safetensors", stopped / "results.json"):
        path.unlink()
    (checkpoints / "latest.json").write_text(json.dumps({"epoch": 1, "step": 4, "stem": "epoch-0001-step-0000004"}))
    lines = (stopped / "metrics.jsonl").read_text().splitlines()
    (stopped / "metrics.jsonl").write_text(lines[0] + "\n")
    resumed = train(stream_config(tmp_path / "data", stopped, checkpoint_every=2), resume=True, progress=False)
    assert read_metrics(stopped) == read_metrics(tmp_path / "a")
    assert resumed.measurements == first.measurements
    sidecar = json.loads((checkpoints / "epoch-0001.json").read_text())
    original = json.loads((tmp_path / "a" / "checkpoints" / "epoch-0001.json").read_text())
    assert sidecar["cost"]["forward_backward"] == original["cost"]["forward_backward"] == 2 * 40
    assert sidecar["cost"]["images"] == original["cost"]["images"] == 80


def test_mid_epoch_resume_also_holds_for_data_in_memory(tmp_path):
    from .test_train import tiny_config

    config = from_dict(RunConfig, tiny_config(tmp_path / "a", {"name": "pgd_at", "steps": 2}, checkpoint_every=3))
    train(config, progress=False)
    stopped = tmp_path / "stopped"
    shutil.copytree(tmp_path / "a", stopped)
    stem = sorted(p.stem for p in (stopped / "checkpoints").glob("epoch-0001-step-*.json"))[-1]
    for path in list((stopped / "checkpoints").glob("epoch-0001.*")) + [stopped / "results.json"]:
        path.unlink()
    (stopped / "checkpoints" / "latest.json").write_text(json.dumps({"epoch": 1, "step": int(stem[-7:]),
                                                                      "stem": stem}))
    (stopped / "metrics.jsonl").write_text((stopped / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    train(from_dict(RunConfig, {**tiny_config(stopped, {"name": "pgd_at", "steps": 2}, checkpoint_every=3)}),
          resume=True, progress=False)
    assert read_metrics(stopped) == read_metrics(tmp_path / "a")


def test_evaluation_of_a_streamed_test_set_equals_the_in_memory_one(tmp_path):
    make_folder(tmp_path, 3, 2, 20, test_per_class=4)
    streamed = load_dataset("imagefolder", tmp_path, "test", stream=True)
    decoded = load_dataset("imagefolder", tmp_path, "test", stream=False)
    torch.manual_seed(0)
    model = create_model("small_cnn", 3, mean=decoded.info.mean, std=decoded.info.std, width=4).eval()
    suite = Suite("stream-check", ("gaussian_noise", "glass_blur"), (2,), None, ("pgd20",), 6, ())
    results = [evaluate(model, data, suite, progress=False)["summary"] for data in (streamed, decoded)]
    assert results[0] == results[1]


def test_imagenet_c_folders_are_read_as_released(tmp_path):
    make_folder(tmp_path / "clean", 2, 1, 16, test_per_class=3)
    shutil.copytree(tmp_path / "clean" / "test", tmp_path / "c" / "gaussian_noise" / "3")
    images, labels = load_corrupted(tmp_path / "c", "gaussian_noise", 3)
    clean = load_dataset("imagefolder", tmp_path / "clean", "test")
    assert isinstance(images, FileImages) and torch.equal(images.to("cpu"), clean.images)
    assert torch.equal(labels, clean.labels)
    with pytest.raises(DataError, match="no folder for split '4'"):
        load_corrupted(tmp_path / "c", "gaussian_noise", 4)


# Memory.

MEMORY_SCRIPT = """
import resource, sys, json
import torch
from robustrain.config import from_dict
from robustrain.train import RunConfig, train
from robustrain.train.load import load_run
from robustrain.evaluate import accuracy
torch.set_num_threads(1)
root, out, stream = sys.argv[1], sys.argv[2], sys.argv[3] == "stream"
config = from_dict(RunConfig, {
    "data": {"name": "imagefolder", "root": root, "stream": stream, "augment": "crop_flip", "crop_padding": 2},
    "model": {"name": "small_cnn", "width": 4}, "method": {"name": "standard"},
    "eval": {"pgd_steps": 1, "pgd_limit": 16, "batch_size": 16},
    "epochs": 1, "batch_size": 16, "device": "cpu", "out": out})
import robustrain.train.trainer  # every import done before the baseline
from robustrain.models import create_model
# the allocator's working set for training at this shape, reached before the baseline
warm = create_model("small_cnn", 2, width=4)
optimizer = torch.optim.SGD(warm.parameters(), lr=0.01, momentum=0.9)
for _ in range(20):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(warm(torch.rand(16, 3, 120, 160)), torch.zeros(16, dtype=torch.long)).backward()
    optimizer.step()
with torch.no_grad():
    warm.eval()(torch.rand(16, 3, 120, 160))
del warm, optimizer


def peak_kb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) through fork and exec
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


base = peak_kb()
train(config, progress=False)
run = load_run(out)
accuracy(run.model, run.test_set, batch_size=16)
peak = peak_kb()
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"growth_mb": (peak - base) / 1024, "workers_mb": children / 1024, "base_mb": base / 1024}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak resident size from Linux's /proc")
def test_a_folder_larger_than_the_memory_budget_trains_and_evaluates_in_bounded_memory(tmp_path):
    # 2,000 training images of 160x120 RGB: 115 MB decoded (126 MB with the test split); JPEGs of
    # flat colour fields keep the files small. Budget: the streamed run (training, its end-of-run
    # evaluation, then loading it and measuring clean accuracy) may grow by half of that; it grows
    # by about 30-50 MB whatever the set's size (batches in flight, the statistics sample).
    rng = np.random.default_rng(0)
    for split, count in (("train", 1000), ("test", 100)):
        for c in range(2):
            folder = tmp_path / "data" / split / f"c{c}"
            folder.mkdir(parents=True)
            for k in range(count):
                base = rng.integers(0, 256, 3)
                pixels = np.broadcast_to(base, (120, 160, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.jpg", quality=75)
    decoded_mb = 2200 * 3 * 120 * 160 / 2**20
    measured = {}
    for mode in ("stream", "memory"):
        done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "data"), str(tmp_path / mode), mode],
                              capture_output=True, text=True, timeout=600,
                              env={"ROBUSTRAIN_CACHE": str(tmp_path / "cache"), "ROBUSTRAIN_DECODE_WORKERS": "2",
                                   "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr[-2000:]
        measured[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["stream"]["growth_mb"] < 0.5 * decoded_mb, measured
    assert measured["stream"]["workers_mb"] < measured["stream"]["base_mb"] + 0.5 * decoded_mb, measured
    # the measurement can fail: the same run with the splits in memory grows by more than their decoded size
    assert measured["memory"]["growth_mb"] > decoded_mb, measured


# The Tiny-ImageNet-style path, as a user runs it.

def test_a_tiny_imagenet_style_folder_runs_through_train_eval_and_report(tmp_path, capsys):
    make_folder(tmp_path / "tiny", 200, 1, 64, test_per_class=1, suffix=".JPEG")
    run = tmp_path / "run"
    assert main(["train", "--data", "imagefolder", "--data-root", str(tmp_path / "tiny"), "--model", "small_cnn",
                 "--epochs", "1", "--batch-size", "50", "--device", "cpu", "--out", str(run),
                 "--set", "model.width=8", "--set", "data.stream=true", "--set", "data.image_size=56",
                 "--set", "data.augment=random_resized_crop", "--set", "data.resize=64", "--set", "eval.pgd_limit=20",
                 "--set", "eval.pgd_steps=1", "--no-progress"]) == 0
    assert main(["eval", str(run), "--suite", "quick", "--device", "cpu", "--no-progress"]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## ImageNet-C" in report and "| run | severity table | mCE |" in report
    # the quick suite's five corruptions at one severity: errors, no CE (Tiny-ImageNet has no normaliser)
    assert re.search(r"\| run \| tinyimagenet \| – \|( [\d.]+ \|){5}\n", report)
    evaluation = json.loads((run / "eval" / "quick.json").read_text())
    assert evaluation["header"]["dataset"]["images"] == 200
    assert math.isfinite(evaluation["summary"]["model"]["clean_accuracy"])


def test_the_imagenet_c_table_normalises_by_alexnet():
    from robustrain.corruptions import BENCHMARK
    from robustrain.evaluate.metrics import ALEXNET_ERRORS, mce
    from robustrain.report import _imagenet_c_section, _Row

    # every corruption at AlexNet's own error (all five severities): each CE is 100, and so is mCE
    errors = {n: [ALEXNET_ERRORS[n]] * 5 for n in BENCHMARK}
    summary = {"corruption_accuracy": {n: [1 - e for e in v] for n, v in errors.items()}, "mce": mce(errors)}
    protocol = {"kind": "corruption", "generated": {"table": "imagenet"}}
    evaluation = {"entries": {"corruption/fog/1": {"protocol": protocol}}}
    lines = _imagenet_c_section([_Row("resnet50", "resnet50", "resnet50", summary)], {"resnet50": evaluation})
    row = next(line for line in lines if line.startswith("| resnet50 |"))
    assert row.startswith("| resnet50 | imagenet | 100.00 | 88.6 (100.0) | 89.4 (100.0) |")
    assert row.count("(100.0)") == 15


def test_tiny_imagenet_is_read_as_released(tmp_path):
    # the released layout: train/<wnid>/images/, val/images/ with val_annotations.txt; one grey JPEG
    rng = np.random.default_rng(0)
    wnids = ["n02", "n01"]
    pixels = {}
    for wnid in wnids:
        (tmp_path / "train" / wnid / "images").mkdir(parents=True)
        for k in range(2):
            pixels[wnid, k] = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels[wnid, k]).save(tmp_path / "train" / wnid / "images" / f"{wnid}_{k}.png")
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(tmp_path / "train" / "n01" / "images" / "n01_9.png")
    (tmp_path / "val" / "images").mkdir(parents=True)
    for k, wnid in enumerate(["n02", "n01", "n02"]):
        Image.fromarray(pixels[wnid, 0]).save(tmp_path / "val" / "images" / f"val_{k}.png")
    (tmp_path / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{k}.png\t{wnid}\t0\t0\t8\t8\n" for k, wnid in enumerate(["n02", "n01", "n02"])))
    train_set = load_dataset("tinyimagenet", tmp_path, "train")
    assert train_set.classes == ("n01", "n02") and train_set.labels.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(train_set.images[0], torch.from_numpy(pixels["n01", 0]).permute(2, 0, 1))
    assert train_set.images[2].unique().tolist() == [90] and train_set.images.shape == (5, 3, 8, 8)  # grey as RGB
    test_set = load_dataset("tinyimagenet", tmp_path, "test", stream=True)
    assert test_set.labels.tolist() == [1, 0, 1] and test_set.info.name == "tinyimagenet"
    assert torch.equal(test_set.images.to("cpu")[1], torch.from_numpy(pixels["n01", 0]).permute(2, 0, 1))
    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.png\tn09\n")
    with pytest.raises(DataError, match="line 1 .* does not name an image and one of the 2 training classes"):
        load_dataset("tinyimagenet", tmp_path, "test")


def test_a_cifar_image_folder_export_streams_with_the_release_statistics(tmp_path):
    make_folder(tmp_path / "export", 2, 3, 32)
    streamed = load_dataset("cifar10", tmp_path / "export", "train", stream=True)
    in_memory = load_dataset("cifar10", tmp_path / "export", "train")
    assert isinstance(streamed.images, FileImages) and torch.equal(streamed.images.to("cpu"), in_memory.images)
    assert streamed.info == in_memory.info and streamed.info.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    with pytest.raises(DataError, match="cifar10 streams .* only as an image-folder export"):
        load_dataset("cifar10", tmp_path / "absent", "train", stream=True)
