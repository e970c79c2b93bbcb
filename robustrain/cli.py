"""Command line: argument parsing only; every command is a thin call into the library."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .config import from_dict, load_yaml, set_dotted
from .corruptions.tables import TABLES
from .data import DATASETS
from .errors import ConfigError, RobustrainError
from .results import RunResults
from .evaluate import SUITES
from .runs import RunFolder
from .train.schedules import SCHEDULES

if TYPE_CHECKING:
    from .train import RunConfig

SEVERITY_TABLES = tuple(TABLES)

EXAMPLES = """examples:
  robustrain demo
  robustrain train --config configs/cpu/pgd_at_cifar10.yaml --out runs/pgd_at
  robustrain train --method pgd_at --model resnet18 --data cifar10 --data-root ~/data --eps 8/255 --out runs/at
  robustrain train --config configs/cpu/standard_cifar10.yaml --set optim.lr=0.05 --set method.steps=7 --out runs/x
  robustrain train --resume runs/at          # continue a stopped or killed run
  robustrain list                            # models, methods, datasets
  robustrain eval runs/at --suite quick      # clean, corruptions, PGD-20 in about a minute
  robustrain eval runs/at --suite standard   # 15 corruptions x 5 severities, PGD-20, AutoAttack
  robustrain report runs/standard runs/at --out docs/results/report
  robustrain corrupt --data cifar10 --data-root ~/data --out ~/data/CIFAR-10-C
  robustrain train --config configs/cpu/oat_cifar10.yaml --out runs/oat   # one model, λ chosen at test time
  robustrain quantize runs/at --bits 4       # post-training 4-bit weights, as a new run
"""

# Command-line flags and the configuration key each one sets.
FLAG_KEYS = {
    "method": "method.name", "model": "model.name", "data": "data.name", "data_root": "data.root",
    "epochs": "epochs", "batch_size": "batch_size", "lr": "optim.lr", "schedule": "schedule.name",
    "eps": "threat.eps", "seed": "seed", "device": "device", "precision": "precision", "out": "out",
    "init": "init.path", "compile": "compile", "channels_last": "channels_last",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustrain", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Train image classifiers that are accurate and robust at once, and measure both.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a model with a method (see `robustrain list`)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Train one run. Settings come from --config (YAML), then the flags below, then --set; "
                    "the resolved configuration is saved as RUN/config.yaml.")
    train.add_argument("--config", metavar="FILE", help="YAML file with the run's settings (see configs/)")
    train.add_argument("--method",
                       help="training method, e.g. standard, pgd_at, trades, oat, ews (see `robustrain list`)")
    train.add_argument("--model", help="model name, e.g. small_cnn, resnet18, wrn34_10 (see `robustrain list`)")
    train.add_argument("--data", help=f"dataset: {', '.join(DATASETS)}")
    train.add_argument("--data-root", metavar="DIR", help="folder holding the dataset's files")
    train.add_argument("--download", action="store_true", help="download CIFAR archives that are missing")
    train.add_argument("--epochs", type=int, help="number of epochs")
    train.add_argument("--batch-size", type=int, help="training batch size")
    train.add_argument("--lr", help="base learning rate")
    train.add_argument("--schedule", help=f"learning-rate schedule: {', '.join(SCHEDULES)} (see `robustrain schedule`)")
    train.add_argument("--eps", help="perturbation radius on [0, 1] pixels, e.g. 8/255")
    train.add_argument("--seed", type=int, help="random seed (same seed, same CPU: bitwise same run)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--precision", help="fp32, bf16 (autocast) or fp16 (CUDA, with loss scaling)")
    train.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile every model path methods call (forward, penultimate, last_feature_map); "
                            "costs a minute or two per process, pays off on long runs")
    train.add_argument("--channels-last", action="store_true", default=None,
                       help="channels-last memory layout for model and batches (faster on most CPUs and GPUs)")
    train.add_argument("--out", metavar="RUN", help="run folder to create")
    train.add_argument("--init", metavar="RUN_OR_FILE",
                       help="start from trained weights: a run folder or a state dict (.safetensors, .pt); "
                            "rename foreign keys with --set \"init.key_map=[['^module\\.', '']]\"")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any setting by its dotted key, e.g. method.steps=7 or optim.nesterov=true")
    train.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN with its saved settings")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines only)")
    train.add_argument("--print-config", action="store_true",
                       help="resolve and check every setting, print the configuration as YAML and stop "
                            "(no data is read)")

    demo = commands.add_parser("demo", help="train standard and PGD-AT models on the embedded digits data",
                               description="Train a standard and a PGD-AT small CNN on scikit-learn's digits "
                                           "(real, embedded data) and print their clean and PGD accuracy.")
    demo.add_argument("--out", metavar="DIR", help="where to keep the two runs (default: a temporary folder)")
    demo.add_argument("--epochs", type=int, default=15, help="epochs per run (default 15)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")

    schedule = commands.add_parser(
        "schedule", help="print (and plot) the learning rate a configuration gives",
        description="Show the learning-rate curve of a configuration before training with it.",
        epilog="example: robustrain schedule --config configs/cpu/aft_ssfd_cifar10.yaml --plot lr.png")
    schedule.add_argument("--config", metavar="FILE", help="YAML file with the run's settings")
    schedule.add_argument("--schedule", help=", ".join(SCHEDULES))
    schedule.add_argument("--epochs", type=int, help="number of epochs")
    schedule.add_argument("--lr", help="base (peak) learning rate")
    schedule.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="any setting, e.g. schedule.peak_fraction=0.8 or schedule.decay_shape=exponential")
    schedule.add_argument("--plot", metavar="PNG", help="also draw the curve into this PNG file")

    evaluate = commands.add_parser(
        "eval", help="measure a trained run: clean, corruptions, attacks (a suite)",
        description="Evaluate a run folder (or one of its checkpoints/*.safetensors) with a suite. Results go to "
                    "RUN/eval/SUITE.json after every measurement; running the command again resumes.")
    evaluate.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                          help="run folder, one of its checkpoint files, or a state dict (.safetensors, .pt) of a "
                               "model trained elsewhere (then give --model and --data)")
    evaluate.add_argument("--model", help="for a state dict: the registered model it belongs to, e.g. resnet18")
    evaluate.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                          help="for a state dict: a model option, e.g. width=16")
    evaluate.add_argument("--data", help="for a state dict: the dataset whose test split to use, e.g. cifar10")
    evaluate.add_argument("--data-root", metavar="DIR", help="for a state dict: folder holding the dataset")
    evaluate.add_argument("--rename", action="append", default=[], metavar="PATTERN=REPLACEMENT",
                          help="for a state dict: rename keys by regular expression, e.g. '^module\\.='")
    evaluate.add_argument("--suite", default="quick", help=f"{', '.join(SUITES)} (default quick)")
    evaluate.add_argument("--eps", help="attack radius (default: the run's threat.eps), e.g. 8/255")
    evaluate.add_argument("--norm", help="linf or l2 (default: the run's threat.norm)")
    evaluate.add_argument("--out", metavar="FILE", help="results file (default RUN/eval/SUITE.json for the run's own "
                                                        "threat model, RUN/eval/SUITE-NORM-epsE.json for another)")
    evaluate.add_argument("--corruptions-dir", metavar="DIR",
                          help="released CIFAR-10-C style files (<corruption>.npy, labels.npy) to use instead of "
                               "generating the corruptions")
    evaluate.add_argument("--table", choices=SEVERITY_TABLES,
                          help="severity table of generated corruptions (default: the dataset's benchmark, "
                               "else by image size: cifar up to 32x32, tinyimagenet up to 64x64, imagenet)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    evaluate.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default 500)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the image subsets, corruptions and attacks")
    evaluate.add_argument("--no-progress", action="store_true", help="no line per measurement")

    report = commands.add_parser(
        "report", help="runs side by side: Markdown, JSON and plots from their evaluations",
        description="Write report.md, report.json and PNG plots for evaluated runs (see `robustrain eval`).")
    report.add_argument("runs", nargs="+", metavar="RUN", help="run folders evaluated with --suite SUITE")
    report.add_argument("--suite", help="which evaluation of each run (default: the one evaluation all the runs have, "
                                        "e.g. quick after `robustrain eval RUN`)")
    report.add_argument("--names", help="comma-separated labels for the runs (default: folder names)")
    report.add_argument("--out", metavar="DIR", required=True, help="folder for report.md, report.json, *.png")

    quantize = commands.add_parser(
        "quantize", help="post-training k-bit weight quantization of a run, as a new run",
        description="Quantize the newest weights of a run to K bits (symmetric, per output channel, every "
                    "convolution and linear layer) and write them as a new run folder, evaluated like any run; "
                    "train from it with --init (e.g. AdCorDA).")
    quantize.add_argument("run", metavar="RUN", help="the full-precision run folder")
    quantize.add_argument("--bits", type=int, required=True, help="weight bit-width, 2 to 8")
    quantize.add_argument("--out", metavar="RUN", help="new run folder (default RUN-wKbit)")
    quantize.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    corrupt = commands.add_parser(
        "corrupt", help="write CIFAR-10-C style corruption files for a test set",
        description="Corrupt a dataset's test split in the released CIFAR-10-C layout: <corruption>.npy "
                    "(uint8, 5N x H x W x 3, severity-major) and labels.npy. Existing files are kept (resumable).")
    corrupt.add_argument("--data", required=True, help="dataset name, e.g. cifar10")
    corrupt.add_argument("--data-root", metavar="DIR", help="folder holding the dataset's files")
    corrupt.add_argument("--out", metavar="DIR", required=True, help="folder to write the .npy files into")
    corrupt.add_argument("--corruptions", default="all",
                         help="all, benchmark (the 15), extra (the 4) or comma-separated names (default all)")
    corrupt.add_argument("--table", choices=SEVERITY_TABLES,
                         help="severity table (default: the dataset's benchmark, else by image size)")
    corrupt.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    corrupt.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    pack = commands.add_parser(
        "pack", help="pack an image folder into tar shards (WebDataset layout) for streaming",
        description="Write SOURCE/<split>/<class>/<image> as OUT/<split>-000000.tar, ... (each sample <key>.<ext> "
                    "and <key>.cls) and OUT/classes.txt; train or evaluate on them with --data shards --data-root OUT.")
    pack.add_argument("source", metavar="SOURCE", help="image folder with <split>/<class>/<image>")
    pack.add_argument("out", metavar="OUT", help="folder to write the shards into")
    pack.add_argument("--splits", default="train,test", help="comma-separated splits to pack (default train,test)")
    pack.add_argument("--shard-mb", type=float, default=1024, help="largest shard in MB (default 1024)")

    repro = commands.add_parser(
        "repro", help="reproduce published results: train, measure, judge against the paper's number",
        description="Run reproduction experiments (see --list): train what is missing (a stopped run resumes, a "
                    "finished one is reused), measure, and rewrite their entries in RESULTS/reproductions.json and "
                    "the page RESULTS/reproductions.md; other entries stay.")
    repro.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (default: all that fit the budget)")
    repro.add_argument("--list", action="store_true", help="list the experiments, their targets and expected cost")
    repro.add_argument("--render", action="store_true",
                       help="only rewrite RESULTS/reproductions.md from RESULTS/reproductions.json and the registry "
                            "(after an experiment's texts changed); nothing runs")
    repro.add_argument("--budget", type=float, metavar="SECONDS",
                       help="skip experiments whose expected time on this device no longer fits")
    repro.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    repro.add_argument("--data-root", metavar="DIR", help="the dataset folder (default: each config's)")
    repro.add_argument("--runs-dir", default="runs/repro", metavar="DIR", help="where the runs go (default runs/repro)")
    repro.add_argument("--results", default="docs/results", metavar="DIR",
                       help="where reproductions.json and .md go (default docs/results)")
    repro.add_argument("--tiny", action="store_true",
                       help="every experiment on a few hundred images in seconds (verdict: not comparable)")
    repro.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="a method-against-baseline experiment's runs at a time, each its own process (default 1; "
                            "a GPU runs several small ones side by side)")
    repro.add_argument("--no-progress", action="store_true", help="no progress bar")

    commands.add_parser("list", help="list models, methods and datasets")
    return parser


def _settings(args: argparse.Namespace) -> dict:
    """--config, then the named flags, then --set, as one nested mapping."""
    data = load_yaml(args.config) if args.config else {}
    for name, key in FLAG_KEYS.items():
        value = getattr(args, name, None)
        if value is not None:
            set_dotted(data, f"{key}={value}")
    if getattr(args, "download", False):
        set_dotted(data, "data.download=true")
    for assignment in args.set:
        set_dotted(data, assignment)
    return data


def train_config(argv: list[str]) -> RunConfig:
    """The configuration `robustrain train ARGV` would train (ARGV without --resume), typed and checked
    as the command checks it, without training."""
    from .train import RunConfig

    return from_dict(RunConfig, _settings(build_parser().parse_args(["train", *argv])))


def _train(args: argparse.Namespace) -> None:
    import yaml

    from .config import to_dict
    from .train import RunConfig, read_run_config, train
    from .train.trainer import validate

    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name in (*FLAG_KEYS, "config")
                 if getattr(args, name) is not None] + (["--set"] if args.set else [])
        if given:
            raise RobustrainError(f"--resume continues a run with its saved settings; drop {', '.join(given)}.")
        config = read_run_config(RunFolder(args.resume))
        if Path(config.out) != Path(args.resume):
            config = dataclasses.replace(config, out=args.resume)
        results = train(config, resume=True, progress=not args.no_progress)
        if results:  # not a torchrun process other than the first
            _print_results(results, Path(args.resume))
        return
    config = from_dict(RunConfig, _settings(args))
    if args.print_config:
        validate(config)
        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return
    results = train(config, progress=not args.no_progress)
    if results is None:  # a torchrun process other than the first: process 0 reports
        return
    _print_results(results, Path(config.out))


def _print_results(results: RunResults, run: Path, prefix: str = "") -> None:
    """The final accuracies of a run's results, one line per test-time setting (OAT's λ)."""
    for setting, measured in results.measurements.items():
        print(f"{prefix}{setting + ': ' if setting else ''}clean accuracy {100 * measured.clean_acc:.2f}%, "
              f"PGD-{measured.pgd.steps} accuracy {100 * measured.pgd.acc:.2f}%")
    print(f"results in {RunFolder(run).results_file}")


def _schedule(args: argparse.Namespace) -> None:
    from .train import RunConfig, learning_rate_curve

    config = from_dict(RunConfig, _settings(args))
    samples = 400
    epochs, lrs = learning_rate_curve(config, samples)
    print(f"schedule {config.schedule.name}, base lr {config.optim.lr:g}, {config.epochs} epochs")
    print("progress   epoch      lr")
    for i in range(0, samples + 1, samples // 10):
        print(f"{100 * i // samples:>7}%  {epochs[i]:>6.2f}  {lrs[i]:.5g}")
    if args.plot:
        from .plots import plot_learning_rates

        plot_learning_rates({config.schedule.name: (epochs, lrs)}, f"{config.schedule.name} (peak lr {max(lrs):.3g})",
                            Path(args.plot))
        print(f"plot written to {args.plot}")


def _eval(args: argparse.Namespace) -> None:
    from .config import parse_float
    from .evaluate import evaluate
    from .report import summary_lines
    from .train import resolve_device
    from .train.load import load_run, load_weights

    path = Path(args.run)
    if args.batch_size < 1:
        raise RobustrainError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not path.exists():
        raise RobustrainError(f"{args.run} does not exist; expected a run folder, a checkpoint or a state-dict file")
    state_dict_flags = {"--model": args.model, "--data": args.data, "--data-root": args.data_root,
                        "--model-option": args.model_option, "--rename": args.rename}
    foreign = [flag for flag, value in state_dict_flags.items() if value]
    is_run = _is_run_path(path)
    if is_run:
        if foreign:
            raise RobustrainError(f"{args.run} is a run; it names its model and data itself, drop {', '.join(foreign)}")
        run = load_run(args.run)
    else:
        if not (args.model and args.data):
            raise RobustrainError(f"{args.run} is not a run folder or one of its checkpoints; to evaluate a state "
                                  "dict, give --model and --data")
        model = {"name": args.model}
        for assignment in args.model_option:
            set_dotted(model, assignment)
        renames = tuple(tuple(r.split("=", 1)) if "=" in r else (r, "") for r in args.rename)
        run = load_weights(args.run, model, {"name": args.data, "root": args.data_root}, renames)
    eps = parse_float(args.eps, "--eps") if args.eps is not None else run.config.threat.eps
    norm = args.norm or run.config.threat.norm
    own_threat = eps == run.config.threat.eps and norm == run.config.threat.norm
    default_name = args.suite if own_threat else f"{args.suite}-{norm}-eps{eps * 255:.4g}"
    if not is_run:
        default_name = f"{path.stem}-{default_name}"
    out = Path(args.out) if args.out else RunFolder(run.folder).evaluation_file(default_name)
    results = evaluate(run.model, run.test_set, args.suite, eps=eps, norm=norm, out=out,
                       device=resolve_device(args.device), batch_size=args.batch_size, seed=args.seed,
                       corruptions_dir=args.corruptions_dir, table=args.table, progress=not args.no_progress)
    print("\n".join(summary_lines(results["summary"], name=path.name)))
    print(f"results in {out}")


def _is_run_path(path: Path) -> bool:
    owner = RunFolder.of_checkpoint(path)
    return path.is_dir() or (owner is not None and owner.holds_run())


def _corrupt(args: argparse.Namespace) -> None:
    from .corruptions import BENCHMARK, CORRUPTIONS, EXTRA, table_for, write_corrupted
    from .data import load_dataset
    from .train import resolve_device

    groups = {"all": tuple(CORRUPTIONS), "benchmark": BENCHMARK, "extra": EXTRA}
    names = groups.get(args.corruptions) or tuple(n.strip() for n in args.corruptions.split(",") if n.strip())
    test_set = load_dataset(args.data, args.data_root, "test")
    table = args.table or table_for(*test_set.info.image_size, test_set.info.name)
    written = write_corrupted(args.out, test_set.images, test_set.labels, names, seed=args.seed, table=table,
                              device=resolve_device(args.device),
                              on_done=lambda name, severity: print(f"{name} severity {severity} done", flush=True))
    print(f"wrote {len(written)} files to {args.out} ({len(names) - len(written)} were there already)")


def _pack(args: argparse.Namespace) -> None:
    from .data import write_shards

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits:
        raise ConfigError(f"--splits must name at least one split, got {args.splits!r}.")
    for split in splits:
        written = write_shards(Path(args.source), split, Path(args.out), int(args.shard_mb * 2**20))
        print(f"{split}: {len(written)} shards in {args.out}", flush=True)


def _quantize(args: argparse.Namespace) -> None:
    from .train.quantize import quantize_run

    out = args.out or f"{args.run.rstrip('/')}-w{args.bits}bit"
    results = quantize_run(args.run, args.bits, out, args.device)
    _print_results(results, Path(out), prefix=f"{args.bits}-bit weights: ")


def _report(args: argparse.Namespace) -> None:
    from .report import write_report

    names = [n.strip() for n in args.names.split(",")] if args.names else None
    paths = write_report([Path(r) for r in args.runs], Path(args.out), suite=args.suite, names=names)
    print("wrote " + ", ".join(str(p) for p in paths))


def _repro(args: argparse.Namespace) -> None:
    from .repro import listing, record, reproduce
    from .train.distributed import resolve_device

    if args.list:
        print(listing())
        return
    if args.render:
        record([], Path(args.results))
        print(f"wrote {Path(args.results) / 'reproductions.md'}")
        return
    device = str(resolve_device(args.device))
    runs_dir = Path(args.runs_dir) / ("tiny" if args.tiny else "")
    reproduce(args.names, budget_s=args.budget, device=device, data_root=args.data_root, runs_dir=runs_dir,
              results_dir=Path(args.results), tiny=args.tiny, progress=not args.no_progress, jobs=args.jobs)


def _list(args: argparse.Namespace) -> None:
    from .attacks.registry import ATTACKS
    from .corruptions import CORRUPTIONS
    from .methods import METHODS
    from .models import list_models, model_options

    print("models:")
    for name in list_models():
        print(f"  {name:<16} options: {', '.join(model_options(name))}")
    for kind, registry in (("methods", METHODS), ("datasets", DATASETS), ("schedules", SCHEDULES),
                           ("suites", SUITES), ("suite attacks", ATTACKS), ("corruptions", CORRUPTIONS)):
        print(f"{kind}:", ", ".join(registry))


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, args.epochs, args.device, progress=not args.no_progress)


COMMANDS = {"train": _train, "schedule": _schedule, "eval": _eval, "report": _report, "corrupt": _corrupt,
            "quantize": _quantize, "repro": _repro, "pack": _pack, "demo": _demo, "list": _list}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
        code = 0
    except RobustrainError as error:
        print(f"robustrain: error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("robustrain: interrupted; a training run continues with `robustrain train --resume RUN`.",
              file=sys.stderr)
        code = 130
    from .train.distributed import in_torchrun_job

    if in_torchrun_job():
        # A process of a torchrun job ends here, its files written and closed and its process group
        # destroyed, without the interpreter's teardown: with Gloo that teardown can abort the process
        # ("terminate called without an active exception", pytorch/pytorch#190489) after the run is
        # complete, and the launcher then fails the job (seen in CI even with the group destroyed).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
