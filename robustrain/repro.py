"""Reproductions: each experiment against its published number, one command, results that accumulate.

    robustrain repro --list                                   # experiments, targets, expected cost
    robustrain repro fast_at_cifar10 --device cuda --data-root DIR --budget 600
    robustrain repro --tiny --data-root DIR                   # every experiment end to end, a few hundred images
    robustrain repro --render                                 # only the page, from reproductions.json

An experiment is a training config with its overrides, the literature targets it is judged against
(value, source, what the source measured) and its expected cost on an H100 and on a 2-core CPU. A
call trains what is missing (resuming a stopped run, reusing a finished one), measures, and
rewrites the experiment's entry in RESULTS/reproductions.json (other entries stay, with their own
device and commit) and the page RESULTS/reproductions.md made from it.

Verdicts: `met` when the measured accuracy reaches the target, `missed` when it does not; the page
gives the 95% band of the measurement from the test images alone (binomial), one seed. Runs whose
settings are not the source's (a CPU-sized analogue, the tiny mode) are `not comparable`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from .errors import ConfigError
from .io import atomic_write_text
from .registry import Registry
from .runs import RunFolder
from .provenance import PROJECT, commit, device_name
from .study import PROTOCOLS, Arm, PairedDifference, Study, arm_of, comparison_key
from .train.run_config import read_run_config

Metric = Literal["clean_acc", "pgd", "autoattack"]
# Tiny mode: every experiment on a few hundred images, in seconds on a CPU (the tests run it).
TINY = ("epochs=1", "batch_size=32", "data.train_limit=256", "eval.pgd_limit=32", "eval.pgd_steps=2",
        "model={name: small_cnn, width: 8}", "precision=fp32", "channels_last=false")


@dataclass(frozen=True)
class Target:
    """A published number: the measured `metric` should reach `at_least` (a fraction)."""

    metric: Metric
    at_least: float
    source: str
    protocol: str  # what the source measured, e.g. "PGD-50, 10 restarts, CIFAR-10 test set"


class Priced:
    """An experiment's expected wall-clock seconds on an H100 (`gpu_s`) and on a 2-core CPU (`cpu_s`)."""

    gpu_s: float
    cpu_s: float

    def expected_s(self, device: str, tiny: bool) -> float:
        if tiny:
            return 60.0
        return self.gpu_s if device.startswith("cuda") else self.cpu_s


@dataclass(frozen=True)
class Experiment(Priced):
    """One reproduction: a config (relative to the project) and its `--set` overrides, the targets,
    AutoAttack (standard) on `autoattack_images` test images when positive."""

    name: str
    summary: str
    config: str
    overrides: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()
    autoattack_images: int = 0
    gpu_s: float = math.inf
    cpu_s: float = math.inf
    comparable: bool = True  # False: the settings are not the source's (a CPU-sized analogue)
    checked: str = ""  # where a missed target stands: what was checked, what was not (Markdown, on the page)


Expectation = Literal["above", "below", "not above", "not below"]


@dataclass(frozen=True)
class Claim:
    """What a paper says of a method against its baseline, as one comparison of a study: `comparison`
    (an (arm, baseline) pair of the study's), the study metric differenced (clean_acc, pgd_acc,
    corruption_error), and the verdict expected of their paired difference: "above" / "below" (its 95%
    interval excludes 0 on that side) or "not below" / "not above" (it does not exclude 0 on the other
    side)."""

    comparison: tuple[str, str]
    metric: str
    expected: Expectation
    source: str

    @property
    def key(self) -> str:
        """The comparison's name in the study's results and in reproductions.json ("arm - baseline")."""
        return comparison_key(*self.comparison)

    def met(self, verdict: str) -> bool:
        if self.expected.startswith("not "):
            return verdict != self.expected.removeprefix("not ")
        return verdict == self.expected


@dataclass(frozen=True)
class Mechanism:
    """What must act for a study to test its method at all, measured in each run of `arm`:
    measure(run folder) -> (the method's value, a reference value), e.g. the accuracy of the subnets
    EWS's controller finds and of random ones; their per-seed differences are expected `expected`
    ("above" / "below": the 95% interval excludes 0 on that side)."""

    arm: str
    what: str
    measure: Callable[[Path], tuple[float, float]]
    expected: Literal["above", "below"]
    source: str

    def judge(self, runs: list[str]) -> dict:
        """The target row of the arm's `runs` (one per seed, in seed order)."""
        difference = PairedDifference(tuple(a - b for a, b in (self.measure(PROJECT / run) for run in runs)))
        return {"mechanism": f"{self.arm}: {self.what}", "seeds": len(runs), "expected": self.expected,
                "source": self.source, "measured": difference.mean, "band_95": difference.half_width,
                "verdict": difference.verdict, "met": difference.verdict == self.expected}


@dataclass(frozen=True)
class StudyExperiment(Priced):
    """A method against its own baseline at the same budget rather than against a published number: a
    `study` (arms, `--init` chains, seeds, comparisons; its runs are `robustrain train` processes) and
    the paper's `claims` about its comparisons, and the `mechanisms` that must act for the study to
    test the method. Met when every claim's verdict is what the paper expects and every mechanism
    acts; the band is the seeds' (paired differences, 95% t interval)."""

    summary: str
    study: Study
    claims: tuple[Claim, ...]
    mechanisms: tuple[Mechanism, ...] = ()
    gpu_s: float = math.inf
    cpu_s: float = math.inf
    comparable: bool = True
    checked: str = ""

    def __post_init__(self):
        # a claim on a comparison the study does not make would never be judged: the entry would read
        # "missed" for ever, with nothing to say why
        for claim in self.claims:
            if claim.comparison not in self.study.comparisons or claim.metric not in self.study.metrics:
                raise ValueError(f"study {self.study.name}: the claim on {claim.key} ({claim.metric}) is not one of "
                                 f"its comparisons {list(self.study.comparisons)} and metrics "
                                 f"{list(self.study.metrics)}.")
        for mechanism in self.mechanisms:
            if mechanism.arm not in self.study.arms:
                raise ValueError(f"study {self.study.name}: the mechanism of arm {mechanism.arm!r} is not measured in "
                                 f"one of its arms {list(self.study.arms)}.")

    @property
    def name(self) -> str:
        """The study's name: its runs' folder and its entry's."""
        return self.study.name


@dataclass
class Entry:
    """One experiment's result as reproductions.json keeps it."""

    name: str
    device: str
    torch: str
    commit: str
    settings: dict
    metrics: dict
    target: list[dict]
    verdict: str
    wall_s: float


REPRODUCTIONS: Registry[Experiment | StudyExperiment] = Registry("reproduction")

WONG_2020 = "Wong, Rice & Kolter 2020 (ICLR), FGSM-RS alpha 10/255, 15 epochs: 83.81% clean, 46.06% PGD"
FAST_AT_TARGETS = (Target("clean_acc", 0.83, WONG_2020, "clean accuracy, CIFAR-10 test set"),
                   Target("pgd", 0.45, WONG_2020, "PGD-50 with 10 restarts (ours: PGD-20, one restart, all 10,000 "
                                                  "test images)"))
FASTAT_BENCHMARK = ("Pan & Yao 2026, FastAT Benchmark (arXiv 2604.22853), PGD-AT of ResNet-18, 3 seeds: "
                    "85.35 ± 0.14% clean, 46.74 ± 0.15% PGD-20, 44.33 ± 0.08% AutoAttack")
PGD_AT_TARGETS = (Target("clean_acc", 0.85, FASTAT_BENCHMARK, "clean accuracy, CIFAR-10 test set, last epoch"),
                  Target("pgd", 0.46, FASTAT_BENCHMARK, "PGD-20, step 2/255, one random start (torchattacks), "
                                                         "CIFAR-10 test set (ours: all 10,000 images)"))
for _experiment in (
    Experiment(name="fast_at_cifar10",
               summary="fast AT (FGSM-RS), PreAct-ResNet-18, CIFAR-10, 15 epochs, bf16, channels_last",
               config="configs/paper/fast_at_cifar10_preact_resnet18.yaml",
               overrides=("precision=bf16", "channels_last=true"), targets=FAST_AT_TARGETS,
               autoattack_images=1000, gpu_s=330, cpu_s=12 * 3600,
               checked="the departures from the official `CIFAR10/train_fgsm.py` (FGSM pass in train mode, the "
                       "learning-rate peak at 2/5, fp16, cyclic momentum) each move clean accuracy by under half a "
                       "point, about a seed's spread, and the DAWNBench version `CIFAR10/train_cifar.py`'s gradient "
                       "norm clipped at 0.5 with its learning rate (0.21, peaking at 2/5) ends at 76.6% (single "
                       "seeds, [fast-at-departures.md](fast-at-departures.md)); the JPEG export costs 2.3 ± 4.0 "
                       "points at 5,438 images ([jpeg-cost.md](jpeg-cost.md)). Not run yet: train_cifar.py's "
                       "He-normal (fan-out) initialisation and reflection padding (the departures study's "
                       "dawnbench-full arm); apex O2 without fp32 master weights is not emulated; the original "
                       "CIFAR-10 files are not on these machines."),
    Experiment(name="pgd_at_cifar10_fastat_benchmark",
               summary="PGD-AT (PGD-10), CIFAR ResNet-18, CIFAR-10, 100 epochs of the FastAT benchmark's recipe, "
                       "channels_last",
               config="configs/paper/pgd_at_cifar10_resnet18_fastat_benchmark.yaml",
               overrides=("channels_last=true",), targets=PGD_AT_TARGETS, autoattack_images=1000,
               # an estimate from the H200's PGD-10 step at batch 128 in fp32 (2,325 images/s): about
               # 21 s per epoch, with evaluation; the benchmark's own runs took 6,950 s of training
               gpu_s=2400, cpu_s=450 * 3600),
    Experiment(name="fast_at_cifar10_cpu",
               summary="the CPU-sized analogue: fast AT of the small CNN (width 16), CIFAR-10, 5 epochs",
               config="configs/cpu/fast_at_cifar10.yaml", targets=FAST_AT_TARGETS,
               autoattack_images=200, gpu_s=60, cpu_s=900, comparable=False),
):
    REPRODUCTIONS.add(_experiment.name, _experiment)

# The seed methods' shortest fair tests at GPU size: each CPU study's arms (configs/cpu/, the designs of
# docs/results/<study>.md) on PreAct-ResNet-18 and all 50,000 training images, 3 seeds, bf16. The tiny
# mode trains each arm's runs as ResNet-20s on a few images.
AT_SCALE = ("precision=bf16", "channels_last=true", "data.train_limit=null")
PREACT = "model={name: preact_resnet18}"
STUDY_TINY = ("model.name=resnet20", "epochs=1", "batch_size=16", "data.train_limit=64", "eval.pgd_limit=8",
              "eval.pgd_steps=2", "eval.epoch_pgd_limit=null", "precision=fp32", "channels_last=false")
JEDDI_2020 = ("Jeddi, Shafiee & Wong 2020 (arXiv 2012.13628) abstract: adversarial fine-tuning of a standard model "
              "outperforms PGD-AT from scratch in accuracy and robustness at 8-10x less compute")
WANG_2020_TRADE = "Wang et al. 2020 (NeurIPS): the test-time λ moves one model along the accuracy-robustness trade-off"
WANG_2020 = ("Wang et al. 2020 (NeurIPS) abstract: OAT, without re-training, achieves similar or even superior "
             "performance compared to dedicatedly trained models")
ZHANG_2020 = ("Zhang et al. 2020 (CVPR) abstract: auxiliary training improves accuracy by 2.21% and corruption error "
              "by 21.64% over traditional training (CIFAR-100)")
def fine_tuned_pgd(run: Path) -> tuple[float, float]:
    """The PGD-20 accuracy of a fine-tuned run and of the run it started from (its `init.path`)."""
    start = read_run_config(RunFolder(run)).init.path
    return RunFolder(run).results().model.pgd.acc, RunFolder(PROJECT / start).results().model.pgd.acc


def oat_clean_trade(run: Path) -> tuple[float, float]:
    """An OAT run's clean accuracy at λ = 0 and at λ = 1."""
    measured = RunFolder(run).results().measurements
    return measured["lambda=0"].clean_acc, measured["lambda=1"].clean_acc


def oat_robust_trade(run: Path) -> tuple[float, float]:
    """An OAT run's PGD-20 accuracy at λ = 1 and at λ = 0."""
    measured = RunFolder(run).results().measurements
    return measured["lambda=1"].pgd.acc, measured["lambda=0"].pgd.acc


def merged_heads(run: Path) -> tuple[float, float]:
    """An Auxiliary Training run's heads' mean distance to the primary classifier after its merging
    epoch and before it (robustrain.methods.auxiliary.check_merging)."""
    from .methods.auxiliary import check_merging

    check = check_merging(run)
    return check.head_distance_after, check.head_distance_before


def ews_subnets(run: Path) -> tuple[float, float]:
    """EWS's mechanism in a finished run: the mean accuracy of its controller's subnets and of random
    subnets of the same widths (robustrain.methods.ews.check_run)."""
    from .methods.ews import check_run

    check = check_run(run)
    return statistics.fmean(check.controller_subnet_acc), statistics.fmean(check.random_subnet_acc)


GUO_2022 = ("Guo, Stutz & Schiele 2022 (ECCV) abstract: EWS greatly improves both robustness against corrupted "
            "images and accuracy on clean data")
for _experiment in (
    StudyExperiment(
        summary="adversarial fine-tuning (11 standard epochs, then 1 epoch of PGD-10 AT, slow start fast decay) "
                "against PGD-AT from scratch at the same 22 passes per image (2 epochs), PreAct-ResNet-18, 3 seeds",
        study=Study(
            name="aft_vs_pgd_at",
            arms={"pretrain": Arm("standard training, 11 epochs", "configs/cpu/standard_cifar10.yaml",
                                  (PREACT, *AT_SCALE, "epochs=11")),
                  "aft": Arm("AFT, slow start fast decay, 1 epoch", "configs/cpu/aft_ssfd_cifar10.yaml",
                             (PREACT, *AT_SCALE), starts_from="pretrain"),
                  "pgd-at": Arm("PGD-AT from scratch, 2 epochs", "configs/cpu/pgd_at_cifar10.yaml",
                                (PREACT, *AT_SCALE, "epochs=2"))},
            comparisons=(("aft", "pgd-at"),), tiny=STUDY_TINY, suite=None, metrics=("clean_acc", "pgd_acc")),
        claims=(Claim(("aft", "pgd-at"), "pgd_acc", "not below", JEDDI_2020),
                Claim(("aft", "pgd-at"), "clean_acc", "not below", JEDDI_2020)),
        mechanisms=(Mechanism("aft", "PGD-20 accuracy after the fine-tuning − before it (the standard model it "
                              "starts from)", fine_tuned_pgd, "above",
                              "Jeddi, Shafiee & Wong 2020: adversarial fine-tuning makes a standard model robust"),),
        # estimates from the H200's rates at batch 128 (about 5 s per standard epoch, 25 s per PGD-10
        # epoch, 15 s to start a run): 3 runs at a time
        gpu_s=400, cpu_s=60 * 3600),
    StudyExperiment(
        summary="OAT at Λ = {0, 1} (12 epochs: each λ gets its dedicated model's data) against standard training "
                "and PGD-AT (6 epochs each), PreAct-ResNet-18, 3 seeds",
        study=Study(
            name="oat_vs_dedicated",
            arms={"standard": Arm("dedicated λ = 0 (standard training), 6 epochs",
                                  "configs/cpu/pgd_at_lambda_resnet20.yaml",
                                  (PREACT, *AT_SCALE, "method.adv_weight=0")),
                  "pgd-at": Arm("dedicated λ = 1 (PGD-AT), 6 epochs", "configs/cpu/pgd_at_lambda_resnet20.yaml",
                                (PREACT, *AT_SCALE)),
                  "oat": Arm("OAT, 12 epochs", "configs/cpu/oat_resnet20.yaml",
                             ("model={name: preact_resnet18, lambdas: [0, 1], encoding: rand, encoding_dim: 128}",
                              *AT_SCALE))},
            comparisons=(("oat@lambda=0", "standard"), ("oat@lambda=1", "pgd-at")), tiny=STUDY_TINY, suite=None,
            metrics=("clean_acc", "pgd_acc")),
        claims=(Claim(("oat@lambda=0", "standard"), "clean_acc", "not below", WANG_2020),
                Claim(("oat@lambda=1", "pgd-at"), "pgd_acc", "not below", WANG_2020),
                Claim(("oat@lambda=1", "pgd-at"), "clean_acc", "not below", WANG_2020)),
        mechanisms=(Mechanism("oat", "clean accuracy at λ = 0 − at λ = 1", oat_clean_trade, "above", WANG_2020_TRADE),
                    Mechanism("oat", "PGD-20 accuracy at λ = 1 − at λ = 0", oat_robust_trade, "above",
                              WANG_2020_TRADE)),
        # estimates as above, PGD-7 at about 18 s per epoch: OAT's 12 epochs cost about 7 of PGD-AT's
        gpu_s=500, cpu_s=60 * 3600),
    StudyExperiment(
        summary="Auxiliary Training (the official schedule's shape: merging after the last lr drop, 7 epochs) "
                "against standard training for the same epochs and its 4 views as plain augmentation for the same "
                "passes (35 epochs), PreAct-ResNet-18, 3 seeds, corruption error on the corruptions suite",
        study=Study(
            name="auxiliary_vs_standard",
            arms={"standard": Arm("standard training, 7 epochs", "configs/cpu/standard_views_step_cifar10.yaml",
                                  (PREACT, *AT_SCALE, "method.views=[]")),
                  "views-equal-cost": Arm("the 4 views as plain augmentation, 35 epochs",
                                          "configs/cpu/standard_views_step_cifar10.yaml",
                                          (PREACT, *AT_SCALE, "epochs=35",
                                           "schedule.milestones=[10.0,23.333333,30.0]")),
                  "auxiliary": Arm("Auxiliary Training, 7 epochs", "configs/cpu/auxiliary_step_cifar10.yaml",
                                   (PREACT, *AT_SCALE))},
            comparisons=(("auxiliary", "standard"), ("auxiliary", "views-equal-cost")),
            # two epochs, so that the merging check has the checkpoint before the merging epoch
            tiny=(*STUDY_TINY, "epochs=2", "schedule.milestones=[1.0]")),
        claims=(Claim(("auxiliary", "standard"), "clean_acc", "above", ZHANG_2020),
                Claim(("auxiliary", "standard"), "corruption_error", "below", ZHANG_2020),
                Claim(("auxiliary", "views-equal-cost"), "clean_acc", "not below", f"{ZHANG_2020}; at equal passes"),
                Claim(("auxiliary", "views-equal-cost"), "corruption_error", "not above",
                      f"{ZHANG_2020}; at equal passes")),
        mechanisms=(Mechanism("auxiliary", "the heads' mean distance ‖W_j − W_0‖ to the primary classifier after the "
                              "merging epoch − before it", merged_heads, "below",
                              "Zhang et al. 2020 (CVPR): weight merging pulls the heads' classifiers to the primary "
                              "one"),),
        # estimates as above: Auxiliary Training's 5 passes per image make its 7 epochs about 35 standard ones
        gpu_s=500, cpu_s=60 * 3600),
    StudyExperiment(
        summary="EWS on AugMix (one controller update per step at lr 3e-3: 1,560 in 4 epochs, the setting "
                "docs/results/ews-controller.md finds acting) against AugMix for the same passes (8 epochs) and "
                "the same distillation into random subnets, PreAct-ResNet-18, 3 seeds, corruption error on the "
                "corruptions suite",
        study=Study(
            name="ews_vs_augmix",
            arms={"augmix-equal-cost": Arm("AugMix, 8 epochs (EWS + AugMix's passes)",
                                           "configs/cpu/ews_augmix_resnet20.yaml", (PREACT, *AT_SCALE, "epochs=8")),
                  "ews": Arm("EWS + AugMix, 4 epochs", "configs/cpu/ews_augmix_ews_resnet20.yaml",
                             (PREACT, *AT_SCALE, "epochs=4", "method.controller_interval=1",
                              "method.controller_lr=0.003")),
                  "random-subnets": Arm("random-subnet control (AugMix, distilled into random subnets), 4 epochs",
                                        "configs/cpu/ews_augmix_ews_resnet20.yaml",
                                        (PREACT, *AT_SCALE, "epochs=4", "method.subnets=random"))},
            comparisons=(("ews", "augmix-equal-cost"), ("ews", "random-subnets")), tiny=STUDY_TINY),
        claims=(Claim(("ews", "augmix-equal-cost"), "corruption_error", "below", GUO_2022),
                Claim(("ews", "augmix-equal-cost"), "clean_acc", "not below", GUO_2022),
                Claim(("ews", "random-subnets"), "corruption_error", "below", f"{GUO_2022}; the search, not the "
                      "distillation alone")),
        mechanisms=(Mechanism("ews", "accuracy of 16 subnets its controller samples − 16 uniformly random subnets "
                              "of the same widths (512 test images, batch statistics)", ews_subnets, "below",
                              "Guo, Stutz & Schiele 2022 (ECCV): the controller finds the weak subnets EWS "
                              "strengthens"),),
        # estimates as above: AugMix's 3 passes and EWS's 6 per image, 24 standard epochs per arm
        gpu_s=600, cpu_s=60 * 3600),
):
    REPRODUCTIONS.add(_experiment.name, _experiment)


def find(names: list[str]) -> list[Experiment | StudyExperiment]:
    """The named experiments (all when none is named); an unknown name is one sentence."""
    return [REPRODUCTIONS.get(name) for name in names] if names else list(REPRODUCTIONS.values())


def binomial_band(accuracy: float, images: int) -> float:
    """Half-width of the 95% interval of an accuracy measured on `images` images (normal approximation)."""
    return 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(images, 1))


def verdict(experiment: Experiment, metrics: dict, tiny: bool) -> tuple[str, list[dict]]:
    """The experiment's verdict and, per target, the measured value, its band and whether it is met."""
    judged = []
    for target in experiment.targets:
        value = metrics.get(target.metric)
        if value is None:
            continue
        judged.append({"metric": target.metric, "at_least": target.at_least, "source": target.source,
                       "protocol": target.protocol, "measured": value["acc"],
                       "band_95": binomial_band(value["acc"], value["images"]),
                       "met": value["acc"] >= target.at_least})
    if tiny or not experiment.comparable:
        return "not comparable", judged
    return ("met" if all(t["met"] for t in judged) else "missed"), judged


def _run_config(experiment: Experiment, run: Path, device: str, data_root: str | None, tiny: bool):
    from .config import from_dict, load_yaml, set_dotted
    from .train import RunConfig

    settings = load_yaml(PROJECT / experiment.config)
    for assignment in (*experiment.overrides, *(TINY if tiny else ()), f"device={device}", f"out={run}"):
        set_dotted(settings, assignment)
    if data_root is not None:
        set_dotted(settings, f"data.root={data_root}")
    return from_dict(RunConfig, settings)


def _measure(experiment: Experiment, run: Path, config, tiny: bool) -> dict:
    """clean_acc and pgd from the run's results; AutoAttack (standard) on a fixed subset, once."""
    from .attacks import AutoAttack
    from .evaluate import accuracy
    from .train.distributed import resolve_device
    from .train.load import load_run

    results = RunFolder(run).results()
    pgd = results.model.pgd
    metrics = {"clean_acc": {"acc": results.model.clean_acc, "images": results.test_images,
                             "protocol": "all test images"},
               "pgd": {**dataclasses.asdict(pgd),
                       "protocol": f"PGD-{pgd.steps}, {pgd.restarts} restart(s), step {pgd.step_size:.5f}"}}
    images = 8 if tiny else experiment.autoattack_images
    # The tiny mode runs AutoAttack's first attack only: the standard set makes about 7,000 passes
    # for each image that survives, minutes even for a tiny model on a CPU.
    version, attacks = ("custom", ["apgd-ce"]) if tiny else ("standard", None)
    if images:
        saved = run / "eval" / f"repro-autoattack-{images}.json"
        if not saved.is_file():
            trained = load_run(run)
            device = resolve_device(config.device)
            started = time.perf_counter()
            attack = AutoAttack(config.threat.eps, norm=config.threat.norm, version=version, attacks=attacks)
            robust = accuracy(trained.model.to(device), trained.test_set, device=device, limit=images, seed=0,
                              attack=attack)
            atomic_write_text(saved, json.dumps({"acc": robust, "images": min(images, len(trained.test_set)),
                                                 "seconds": time.perf_counter() - started}))
        measured = json.loads(saved.read_text())
        metrics["autoattack"] = {"acc": measured["acc"], "images": measured["images"], "seconds": measured["seconds"],
                                 "protocol": f"AutoAttack {'APGD-CE only' if tiny else 'standard'}, eps "
                                             f"{config.threat.eps:.5f}, a fixed random {measured['images']} test "
                                             "images (seed 0)"}
    return metrics


def run_experiment(experiment: Experiment, runs_dir: Path, device: str, data_root: str | None, tiny: bool,
                   progress: bool) -> Entry:
    """Train what is missing, measure, judge: the experiment's entry."""
    from .train import train
    from .train.distributed import resolve_device

    run = runs_dir / experiment.name
    config = _run_config(experiment, run, device, data_root, tiny)
    started = time.perf_counter()
    folder = RunFolder(run)
    # Beside the run (its folder must start empty): the code that trained it and how long the call
    # that finished the training took, so that a later call, which only measures, reports them.
    made = runs_dir / f"{experiment.name}.made.json"
    if folder.results() is None:
        if not folder.holds_run():
            atomic_write_text(made, json.dumps({"commit": commit()}))
        train(config, resume=folder.holds_run(), progress=progress)
        if made.is_file():
            atomic_write_text(made, json.dumps({**json.loads(made.read_text()),
                                                "train_s": time.perf_counter() - started}))
    metrics = _measure(experiment, run, config, tiny)
    judged_verdict, judged = verdict(experiment, metrics, tiny)
    provenance = json.loads(made.read_text()) if made.is_file() else {"commit": "unknown (trained elsewhere)"}
    # training (with its clean and PGD evaluation) plus AutoAttack, whichever calls they ran in
    wall_s = (provenance["train_s"] + metrics.get("autoattack", {}).get("seconds", 0.0) if "train_s" in provenance
              else time.perf_counter() - started)
    return Entry(
        name=experiment.name, device=device_name(resolve_device(device)),
        torch=torch.__version__, commit=provenance["commit"],
        settings={"config": experiment.config, "overrides": [*experiment.overrides, *(TINY if tiny else ())],
                  "data_root": config.data.root, "run": str(run)},
        metrics=metrics, target=judged, verdict=judged_verdict,
        wall_s=wall_s)


def run_study_experiment(experiment: StudyExperiment, runs_dir: Path, device: str, data_root: str | None,
                         tiny: bool, jobs: int) -> Entry:
    """Train what is missing of the study's runs (`jobs` processes at a time), compare, judge each claim."""
    from .train.distributed import resolve_device

    started = time.perf_counter()
    extra = (f"device={device}", *((f"data.root={data_root}",) if data_root is not None else ()))
    runs = str(runs_dir.resolve())
    measured = experiment.study.run(True, tiny, lambda *_: {}, runs=runs, extra=extra, jobs=jobs)
    metrics = {arm: {metric: {"mean": statistics.fmean(r[metric] for r in seeds.values()),
                              "per_seed": {str(seed): r[metric] for seed, r in seeds.items()}}
                     for metric in (*experiment.study.metrics, "budget_passes")}
               for arm, seeds in measured["arms"].items()}
    judged = []
    for claim in experiment.claims:
        comparison = measured["comparisons"].get(claim.key)
        if comparison is None:
            continue
        difference = comparison[claim.metric]
        # what each side cost, so that the page shows whether the comparison is at the same budget
        budgets = [metrics[arm]["budget_passes"]["mean"] for arm in claim.comparison]
        judged.append({"comparison": claim.key, "metric": claim.metric, "expected": claim.expected,
                       "source": claim.source, "seeds": comparison["seeds"], "budget_passes": budgets,
                       "measured": difference["mean"], "band_95": difference["ci95_half_width"],
                       "verdict": difference["verdict"], "met": claim.met(difference["verdict"])})
    for mechanism in experiment.mechanisms:
        # the arm's runs, one per seed (a conditioned arm has a record per test-time setting: oat@lambda=0, ...)
        runs = {seed: record["run"] for key, seeds in measured["arms"].items() if arm_of(key) == mechanism.arm
                for seed, record in seeds.items()}
        if runs:
            judged.append(mechanism.judge([runs[seed] for seed in sorted(runs)]))
    if tiny or not experiment.comparable:
        judged_verdict = "not comparable"
    else:
        expected = len(experiment.claims) + len(experiment.mechanisms)
        judged_verdict = "met" if len(judged) == expected and all(t["met"] for t in judged) else "missed"
    # the code that trained the runs (a run finished by an earlier call keeps that call's commit)
    trained = {c for seeds in measured["arms"].values() for r in seeds.values() for c in r["trained_at"]}
    return Entry(
        name=experiment.name, device=device_name(resolve_device(device)),
        torch=torch.__version__, commit=", ".join(sorted(trained)) or commit(),
        settings={"study": measured["settings"], "extra_overrides": list(extra), "runs": runs,
                  "protocols": {m: PROTOCOLS[m] for m in (*experiment.study.metrics, "budget_passes", "verdict")}},
        metrics=metrics, target=judged, verdict=judged_verdict, wall_s=time.perf_counter() - started)


def record(entries: list[Entry], results_dir: Path) -> None:
    """Replace these experiments' entries in reproductions.json (keep the others) and rewrite the page."""
    source = results_dir / "reproductions.json"
    kept = [e for e in (json.loads(source.read_text()) if source.is_file() else [])
            if e["name"] not in {entry.name for entry in entries}]
    merged = kept + [vars(entry) for entry in entries]
    order = list(REPRODUCTIONS)
    merged.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else len(order))
    atomic_write_text(source, json.dumps(merged, indent=1) + "\n")
    atomic_write_text(results_dir / "reproductions.md", render(merged))


def render(entries: list[dict]) -> str:
    lines = ["# Reproductions", "",
             "Made by `robustrain repro` (robustrain/repro.py lists the experiments); every entry with its own device "
             "and commit, in `reproductions.json` beside this page. Accuracies in %. Against a published number, the "
             "band is the 95% interval from the test images alone (one seed: seed-to-seed spread is not in it); a "
             "method against its baseline (a Δ row) is the mean per-seed paired difference in points with the 95% t "
             "interval over its seeds, and the target is the verdict the paper's claim expects of it. A mechanism row "
             "is what must act for such a study to test the method at all (e.g. EWS's controller finding subnets "
             "weaker than random ones), measured in each run of the method as the same paired difference.", "",
             "| experiment | device | commit | metric | measured | target | source | verdict |",
             "|---|---|---|---|---:|---:|---|---|"]
    for entry in entries:
        for target in entry["target"]:
            lines.append(f"| {entry['name']} | {entry['device']} | {entry['commit']} | {_target_cells(target)} | "
                         f"{target['source']} | {_target_verdict(entry, target)} |")
        lines.append(f"| {entry['name']} | | | measured | {'; '.join(_reported(entry))} | | | "
                     f"wall {entry['wall_s']:.0f} s |")
    missed = [(entry["name"], REPRODUCTIONS.get(entry["name"]).checked) for entry in entries
              if entry["verdict"] == "missed" and entry["name"] in REPRODUCTIONS]
    if any(checked for _, checked in missed):
        lines += ["", "Missed targets, and what was checked:", ""]
        lines += [f"- {name}: {checked}" for name, checked in missed if checked]
    recorded = {entry["name"] for entry in entries}
    not_run = [e for e in REPRODUCTIONS.values() if e.name not in recorded]
    if not_run:
        lines += ["", "Registered, not run yet (`robustrain repro --list`):", ""]
        lines += [f"- {e.name}: {e.summary}; expected {_duration(e.gpu_s)} on an H100" for e in not_run]
    return "\n".join(lines) + "\n"


def listing() -> str:
    rows = []
    for experiment in REPRODUCTIONS.values():
        if isinstance(experiment, StudyExperiment):
            study = experiment.study
            what = "".join(f"\n  arm {arm}: {a.label}: {a.config} {' '.join('--set ' + o for o in a.overrides)}"
                           + (f" (starts from {a.starts_from})" if a.starts_from else "")
                           for arm, a in study.arms.items())
            what += f"\n  seeds {', '.join(map(str, study.seeds))}; claims: " + "; ".join(
                f"{c.key}: {c.metric} {c.expected} ({c.source})" for c in experiment.claims)
            what += "".join(f"\n  mechanism: {m.arm}: {m.what} {m.expected} ({m.source})"
                            for m in experiment.mechanisms)
        else:
            targets = "; ".join(f"{t.metric} >= {100 * t.at_least:.0f}% ({t.protocol}; {t.source})"
                                for t in experiment.targets)
            what = (f"\n  config {experiment.config} {' '.join('--set ' + o for o in experiment.overrides)}"
                    f"\n  targets: {targets or 'none'}"
                    f"{'' if experiment.comparable else ' (not comparable: reported only)'}\n"
                    f"  AutoAttack standard on {experiment.autoattack_images} images")
        rows.append(f"{experiment.name}: {experiment.summary}{what}\n"
                    f"  expected: {_duration(experiment.gpu_s)} on an H100, {_duration(experiment.cpu_s)} on a "
                    "2-core CPU")
    return "\n".join(rows)


def _target_cells(target: dict) -> str:
    """The metric, measured and target cells of one target: a published number, a claim about a method
    against its baseline, or a mechanism that must act."""
    if "mechanism" in target:
        return (f"mechanism: {target['mechanism']} ({target['seeds']} seeds) | {100 * target['measured']:+.2f} ± "
                f"{100 * target['band_95']:.2f} ({target['verdict']}) | {target['expected']}")
    if "comparison" in target:
        method, baseline = target["budget_passes"]
        return (f"Δ {target['metric']}: {target['comparison']} ({len(target['seeds'])} seeds; {method:.1f} against "
                f"{baseline:.1f} passes per image) | "
                f"{100 * target['measured']:+.2f} ± {100 * target['band_95']:.2f} ({target['verdict']}) | "
                f"{target['expected']}")
    return (f"{target['metric']} ({target['protocol']}) | {100 * target['measured']:.2f} ± "
            f"{100 * target['band_95']:.2f} | at least {100 * target['at_least']:.1f}")


def _reported(entry: dict) -> list[str]:
    """What an entry measured: each metric with its protocol, or each arm's means over seeds."""
    if "study" in entry["settings"]:
        return [f"{arm}: " + ", ".join(f"{metric} {100 * m['mean']:.2f}%" if metric != "budget_passes"
                                        else f"{m['mean']:.1f} passes per image" for metric, m in metrics.items())
                for arm, metrics in entry["metrics"].items()]
    return [f"{name} {100 * m['acc']:.2f}% ({m['protocol']})" for name, m in entry["metrics"].items()]


def _target_verdict(entry: dict, target: dict) -> str:
    """One target's cell: met or missed, unless the whole entry is not comparable."""
    if entry["verdict"] == "not comparable":
        return entry["verdict"]
    return "met" if target["met"] else "missed"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.0f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def reproduce(names: list[str], *, budget_s: float | None, device: str, data_root: str | None, runs_dir: Path,
              results_dir: Path, tiny: bool, progress: bool, jobs: int = 1) -> list[Entry]:
    """Run the named experiments that fit the budget (by their expected cost), recording each entry
    as soon as it is measured; returns the entries made. jobs: a study experiment's runs at a time."""
    if budget_s is not None and budget_s <= 0:
        raise ConfigError(f"--budget must be a positive number of seconds, got {budget_s}.")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    experiments = find(names)
    made, spent = [], 0.0
    for experiment in experiments:
        expected = experiment.expected_s(device, tiny)
        if budget_s is not None and spent + expected > budget_s:
            print(f"skipped {experiment.name}: expected {_duration(expected)} on this device, "
                  f"{_duration(max(budget_s - spent, 0))} of the budget left")
            continue
        if isinstance(experiment, StudyExperiment):
            entry = run_study_experiment(experiment, runs_dir, device, data_root, tiny, jobs)
        else:
            entry = run_experiment(experiment, runs_dir, device, data_root, tiny, progress)
        spent += entry.wall_s
        record([entry], results_dir)
        print(f"{experiment.name}: {entry.verdict} ({entry.wall_s:.0f} s)")
        made.append(entry)
    return made
