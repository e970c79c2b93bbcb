"""A training step, and an attack inside it, must not wait for the device: every `.item()`,
`.tolist()`, `nonzero()` or truth test of a tensor makes the host wait for a GPU to finish the work
queued so far, which empties the pipeline that keeps a GPU busy, and so does a copy of host memory
to the device that is not queued (`non_blocking`, from pinned memory: `robustrain.host.to_device`).
On a CPU the Python calls that would do so are counted, and the step runs on the meta device to see
its copies from the host; with CUDA present, its sync debug mode raises on any synchronisation."""

import traceback

import pytest
import torch

from robustrain.data import DatasetInfo, ImageDataset
from robustrain.data.augment import crop_flip
from robustrain.host import to_device
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
    method = create_method(method_name, options, Threat(eps=8 / 255)).to(device)
    method.attach(model)  # as the trainer does: auxiliary heads, EWS's controller
    ctx = StepContext.seeded(0, device)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (8,), device=device)
    if method_name == "adcorda":  # what its prepare() leaves: the target domain on the device
        info = DatasetInfo("target", 10, 3, (32, 32), (0.5,) * 3, (0.25,) * 3)
        method.target = ImageDataset(images.clone(), y.clone(), tuple(map(str, range(10))), info, "train")

    def step():
        x = crop_flip(images, generator).float() / 255
        out = method.step(model, x, y, ctx)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        ctx.step += 1
    return step


STEPS = [("standard", {}), ("pgd_at", {"steps": 2}), ("fast_at", {}), ("fast_at", {"bn_mode": "train"}),
         ("trades", {"steps": 2}), ("oat", {"steps": 2}), ("ews", {"subnets": "random"}),
         ("adcorda", {"coral_balance": True})]
# AugMix and Auxiliary Training's views decide on the host which images take which op and which
# kernel taps to sum (nonzero, tolist, int of CPU values), and EWS's controller steps Adam, which
# reads its step count from a CPU tensor: the Python-call counter cannot tell those from a device
# value, so these join the copy and CUDA checks only.
DEVICE_STEPS = [*STEPS, ("augmix", {}), ("auxiliary", {}), ("ews", {"controller_interval": 1})]


@pytest.mark.parametrize("method_name, options", STEPS)
def test_a_training_step_never_asks_the_device_for_a_value(method_name, options, host_waits):
    step = training_step(method_name, options, torch.device("cpu"))
    step()
    assert host_waits == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: its sync debug mode sees every synchronisation")
@pytest.mark.parametrize("method_name, options", DEVICE_STEPS)
def test_a_training_step_never_synchronises_with_a_gpu(method_name, options):
    step = training_step(method_name, options, torch.device("cuda"))
    step()  # the first step may set things up (cuDNN plans, the pinned-memory pool)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def blocking_copies(step, monkeypatch) -> list[str]:
    """Run `step`, recording where it copied a host tensor to the meta device without non_blocking
    (the copy that, to a GPU, waits for everything queued there), or built a tensor there from host
    values (`torch.tensor(data, device=...)`, the same copy; the H100 found one in a colour view)."""
    copies, original_to, original_tensor = [], torch.Tensor.to, torch.tensor

    def watched_to(self, *args, **kwargs):
        moved = original_to(self, *args, **kwargs)
        if self.device.type == "cpu" and moved.device.type == "meta" and not kwargs.get("non_blocking"):
            copies.append(traceback.format_stack(limit=2)[0].strip())
        return moved

    def watched_tensor(data, *args, **kwargs):
        built = original_tensor(data, *args, **kwargs)
        if built.device.type == "meta":
            copies.append(traceback.format_stack(limit=2)[0].strip())
        return built
    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "to", watched_to)
        patch.setattr(torch, "tensor", watched_tensor)
        step()
    return copies


@pytest.mark.parametrize("method_name, options", DEVICE_STEPS)
def test_a_training_step_queues_its_host_draws_instead_of_waiting(method_name, options, monkeypatch):
    # OAT's λ indices once went to the GPU by a plain .to(device) (the H100's sync debug mode found
    # it), and AugMix's op rows, parameters and mixing weights
    step = training_step(method_name, options, torch.device("meta"))
    assert blocking_copies(step, monkeypatch) == []


def test_the_copy_watcher_sees_a_blocking_copy_and_not_a_queued_one(monkeypatch):
    draws = torch.rand(4)
    assert len(blocking_copies(lambda: draws.to("meta"), monkeypatch)) == 1
    assert blocking_copies(lambda: to_device(draws, torch.device("meta")), monkeypatch) == []
    assert len(blocking_copies(lambda: torch.tensor([1.0, 2.0], device="meta"), monkeypatch)) == 1


def test_the_counter_sees_a_synchronising_call(host_waits):
    # A check that cannot fail is no check: the counter must see what it is there to see.
    torch.ones(2).sum().item()
    assert host_waits == ["item"]
