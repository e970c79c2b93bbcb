from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip with a clear reason where it is absent (a user's machine)."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present (the shared real-data folder is only on project machines)")
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session decodes image folders into its own cache, never the user's."""
    monkeypatch.setenv("ROBUSTRAIN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def train_digits_model():
    """A small CNN trained for a few seconds on the real digits data (clean accuracy ~95%), trained
    on one thread so that one torch build gives the same weights on any machine: the attack tests'
    model, and the one the reference AutoAttack numbers in tests/data/autoattack_reference.json
    were computed on."""
    import torch
    from torch import nn

    from robustrain.data import load_dataset
    from robustrain.models import create_model

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


def load_bench_script(name: str):
    """A script of bench/ as a module (bench/ is not a package)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
