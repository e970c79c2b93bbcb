"""A training step, and an attack inside it, must not wait for the device: every `.item()`,
`.tolist()`, `nonzero()` or truth test of a tensor makes the host wait for a GPU to finish the work
queued so far, which empties the pipeline that keeps a GPU busy. On a CPU the Python calls that
would do so are counted; with CUDA present, its sync debug mode raises on any synchronisation."""

import pytest
import torch

from robustrain.data.augment import crop_flip
from robustrain.methods import StepContext, Threat, create_method
from robustrain.models import create_model

SYNCING = ("item", "tolist", "nonzero", "__bool__", "__int__", "__float__", "numpy", "cpu")


@pytest.fixture
def host_waits(monkeypatch):
    """Names of the Tensor methods that would synchronise with a GPU, as they get called."""
    calls = []
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def training_step(method_name: str, options: dict, device: torch.device):
    torch.manual_seed(0)
    # OAT's model: dual BN routed per sample, FiLM from the λ code
    conditioning = {"lambdas": [0, 0.1, 0.2, 0.3, 0.4, 1]} if method_name == "oat" else {}
    model = create_model("resnet20", 10, **conditioning).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    method = create_method(method_name, options, Threat(eps=8 / 255))
    ctx = StepContext(torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (8,), device=device)

    def step():
        x = crop_flip(images, generator).float() / 255
        out = method.step(model, x, y, ctx)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    return step


STEPS = [("standard", {}), ("pgd_at", {"steps": 2}), ("fast_at", {}), ("fast_at", {"bn_mode": "train"}),
         ("trades", {"steps": 2}), ("oat", {"steps": 2})]


@pytest.mark.parametrize("method_name, options", STEPS)
def test_a_training_step_never_asks_the_device_for_a_value(method_name, options, host_waits):
    step = training_step(method_name, options, torch.device("cpu"))
    step()
    assert host_waits == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: its sync debug mode sees every synchronisation")
@pytest.mark.parametrize("method_name, options", STEPS)
def test_a_training_step_never_synchronises_with_a_gpu(method_name, options):
    step = training_step(method_name, options, torch.device("cuda"))
    step()  # the first step may set things up (cuDNN plans, the pinned-memory pool)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_counter_sees_a_synchronising_call(host_waits):
    # A check that cannot fail is no check: the counter must see what it is there to see.
    torch.ones(2).sum().item()
    assert host_waits == ["item"]
