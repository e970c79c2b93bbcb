"""robustrain's AutoAttack on the two gradient-masked settings of tests/data/autoattack_reference.json,
beside the numbers computed once from the reference implementation (fra31/auto-attack, run locally).

    python bench/autoattack_reference.py            # 10 seeds on digits, 3 on CIFAR: about 12 min here

digits_masked: AutoAttack standard (eps 0.1) on a small CNN trained on digits whose input is rounded
to 8 grey levels, on 300 images. cifar_masked_square: AutoAttack's Square alone (5,000 queries, eps
2/255) on bench/fidelity's small CNN with its input rounded to 65 levels, on 100 exact test images.
tests/test_autoattack_reference.py runs two seeds of the first and one of the second.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import fidelity  # noqa: E402
from robustrain.attacks import AutoAttack  # noqa: E402
from robustrain.data import load_dataset  # noqa: E402
from robustrain.models import create_model  # noqa: E402

REFERENCE = ROOT / "tests" / "data" / "autoattack_reference.json"


class RoundedInput(nn.Module):
    """Rounds its input to `levels` + 1 grey levels: zero input gradient almost everywhere."""

    def __init__(self, model: nn.Module, levels: int):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, images):
        return self.model((images * self.levels).round() / self.levels)


def train_digits_model() -> nn.Module:
    """A small CNN trained for a few seconds on the real digits data (clean accuracy ~95%), trained
    on one thread so that one torch build gives the same weights on any machine: the attack tests'
    model, and the one the reference numbers were computed on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the weights depend on how sums are split between threads
    torch.manual_seed(0)
    train = load_dataset("digits", split="train")
    model = create_model("small_cnn", 10, in_channels=1, width=8, mean=train.info.mean, std=train.info.std)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = train.images.float() / 255, train.labels
    for _ in range(8):
        for i in range(0, len(y), 64):
            loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    torch.set_num_threads(threads)
    return model.eval()


def digits_setting(setting: dict) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The masked digits model and its images: the first of digits' train split followed by its test split."""
    model = RoundedInput(train_digits_model(), setting["levels"]).eval()
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    x = torch.cat([train.images, test.images])[:setting["images"]].float() / 255
    return model, x, torch.cat([train.labels, test.labels])[:setting["images"]]


def cifar_setting(setting: dict, exact: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The masked fixed CIFAR model of bench/fidelity and the first exact test images."""
    clean, labels = fidelity.exact_test_images(exact)
    model = RoundedInput(fidelity.fixed_model(), setting["levels"]).eval()
    x = torch.from_numpy(clean[:setting["images"]]).permute(0, 3, 1, 2).float() / 255
    return model, x, torch.from_numpy(labels[:setting["images"]])


def robust_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def autoattack_square(eps: float):
    return dict(AutoAttack(eps).attacks)["square"]


def main() -> None:
    reference = json.loads(REFERENCE.read_text())
    digits = reference["digits_masked"]
    model, x, y = digits_setting(digits)
    ours = [AutoAttack(digits["eps"]).run(model, x, y, torch.Generator().manual_seed(seed)).robust_accuracy
            for seed in digits["seeds"]]
    for name, values in (("robustrain", ours), ("reference", digits["reference_robust_accuracy"])):
        print(f"digits, AutoAttack standard, {name}: {', '.join(f'{100 * v:.2f}' for v in values)} -> "
              f"{100 * statistics.mean(values):.1f}% ± {100 * statistics.stdev(values):.1f}")
    cifar = reference["cifar_masked_square"]
    model, x, y = cifar_setting(cifar, ROOT.parent / "shared" / "data" / "cifar10-exact" / "cifar10_exact_subset.npz")
    square = autoattack_square(cifar["eps"])
    ours = [robust_share(model, square(model, x, y, torch.Generator().manual_seed(seed)), y) for seed in cifar["seeds"]]
    print(f"CIFAR, AutoAttack's Square, robustrain: {', '.join(f'{100 * v:.0f}' for v in ours)}%; reference "
          f"{', '.join(f'{100 * v:.0f}' for v in cifar['reference_not_rescaled'])}%, reference rescaled "
          f"{', '.join(f'{100 * v:.0f}' for v in cifar['reference_rescaled'])}%")


if __name__ == "__main__":
    main()
