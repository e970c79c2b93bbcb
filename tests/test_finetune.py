import json

import pytest
import torch
from safetensors.torch import save_file

from robustrain.config import from_dict
from robustrain.errors import ConfigError, RobustrainError
from robustrain.models import create_model
from robustrain.runs import RunFolder
from robustrain.train import RunConfig, ScheduleConfig, lr_factor, train
from robustrain.train.init import InitConfig, load_initial_weights

from .test_train import final_tensors, tiny_config


@pytest.mark.parametrize("rise, decay, start, final, peak", [
    ("linear", "linear", 0.0, 0.0, 0.7),
    ("cosine", "cosine", 0.1, 0.0, 0.6),
    ("linear", "exponential", 0.0, 0.01, 0.8),
])
def test_slow_start_fast_decay_shape(rise, decay, start, final, peak):
    config = ScheduleConfig(name="slow_start_fast_decay", rise_shape=rise, decay_shape=decay, start_factor=start,
                            final_factor=final, peak_fraction=peak)
    total = 10
    ts = [total * i / 1000 for i in range(1001)]
    f = [lr_factor(config, total, t) for t in ts]
    top = round(peak * 1000)
    assert f[0] == pytest.approx(start, abs=1e-12) and f[top] == pytest.approx(1.0) and f[-1] == pytest.approx(final)
    assert all(b > a for a, b in zip(f[:top], f[1:top + 1])), "the rise must be strictly increasing"
    assert all(b < a for a, b in zip(f[top:], f[top + 1:])), "the decay must be strictly decreasing"
    assert (1 - final) / (1 - peak) > (1 - start) / peak, "on average the fall is faster than the rise"
    steepest_rise = max(b - a for a, b in zip(f[:top], f[1:top + 1]))
    steepest_fall = max(a - b for a, b in zip(f[top:], f[top + 1:]))
    assert steepest_fall > steepest_rise


def test_a_slow_decay_is_refused():
    with pytest.raises(ConfigError, match="no faster than the rise"):
        ScheduleConfig(name="slow_start_fast_decay", peak_fraction=0.5)
    with pytest.raises(ConfigError, match="exponential needs a positive final_factor"):
        ScheduleConfig(name="slow_start_fast_decay", decay_shape="exponential")


def foreign_state_dict(model) -> dict[str, torch.Tensor]:
    """The small CNN's weights as another codebase would name them: DDP's `module.`
    prefix, `features.<i>.0/1` for conv/BN (plain BatchNorm keys) and `classifier`."""
    renamed = {}
    for key, value in model.state_dict().items():
        if key.startswith("normalize."):
            continue
        key = key.replace(".branches.0.", ".")
        for i in range(6):
            key = key.replace(f"layers.{i}.conv.", f"features.{i}.0.").replace(f"layers.{i}.bn.", f"features.{i}.1.")
        renamed["module." + key.replace("fc.", "classifier.")] = value.clone()
    return renamed


KEY_MAP = (("^module\\.", ""), ("^features\\.(\\d)\\.0\\.", "layers.\\1.conv."),
           ("^features\\.(\\d)\\.1\\.", "layers.\\1.bn."), ("^classifier\\.", "fc."))


@pytest.mark.parametrize("form", ["pt_nested", "safetensors"])
def test_foreign_state_dict_with_renamed_keys_loads_exactly(tmp_path, form):
    torch.manual_seed(0)
    source = create_model("small_cnn", 10, width=4).eval()
    with torch.no_grad():
        for bn in (m for m in source.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1)
    weights = foreign_state_dict(source)
    if form == "safetensors":
        path = tmp_path / "foreign.safetensors"
        save_file(weights, path)
    else:
        path = tmp_path / "foreign.pt"
        torch.save({"epoch": 3, "state_dict": weights}, path)
    target = create_model("small_cnn", 10, width=4).eval()
    assert load_initial_weights(target, InitConfig(path=str(path), key_map=KEY_MAP)) is None
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(target(x), source(x))


def test_foreign_weights_that_do_not_fit_are_explained(tmp_path):
    source = create_model("small_cnn", 10, width=4)
    path = tmp_path / "foreign.safetensors"
    save_file(foreign_state_dict(source), path)
    with pytest.raises(RobustrainError, match="tensors are missing .* unexpected .*init.key_map"):
        load_initial_weights(create_model("small_cnn", 10, width=4), InitConfig(path=str(path)))
    with pytest.raises(RobustrainError, match="size mismatch"):
        load_initial_weights(create_model("small_cnn", 10, width=8), InitConfig(path=str(path), key_map=KEY_MAP))


def test_pickled_objects_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(RobustrainError, match="evil.pt holds Python objects besides tensors"):
        load_initial_weights(create_model("small_cnn", 10, width=4), InitConfig(path=str(path)))


def test_cost_adds_up_across_initialisation_chains(tmp_path):
    def run(name, method, init=None):
        extra = {"init": {"path": str(tmp_path / init)}} if init else {}
        config = tiny_config(tmp_path / name, method, epochs=1, data={"train_limit": 128}, **extra)
        return train(from_dict(RunConfig, config), progress=False)

    pretrain = run("pretrain", {"name": "standard"})
    finetune = run("finetune", {"name": "pgd_at", "steps": 3}, init="pretrain")
    again = run("again", {"name": "pgd_at", "steps": 1}, init="finetune")
    assert pretrain.init_cost.forward_backward == 0
    assert pretrain.total_cost.forward_backward == pretrain.cost.forward_backward == 128
    assert finetune.init_cost.forward_backward == 128
    assert finetune.total_cost.forward_backward == 128 + 4 * 128
    assert again.total_cost.forward_backward == 128 + 4 * 128 + 2 * 128
    for key in ("forward_only", "images"):
        assert getattr(again.total_cost, key) == sum(getattr(r.cost, key) for r in (pretrain, finetune, again))
    # what the results files hold (the shape every earlier results file has) reads back the same
    on_disk = json.loads((tmp_path / "again" / "results.json").read_text())
    assert on_disk["total_cost"]["forward_backward"] == 128 + 4 * 128 + 2 * 128
    assert RunFolder(tmp_path / "again").results() == again


def test_fine_tuning_starts_from_the_initial_weights(tmp_path):
    train(from_dict(RunConfig, tiny_config(tmp_path / "pre", {"name": "standard"}, epochs=2)), progress=False)
    tuned = tiny_config(tmp_path / "tuned", {"name": "standard"}, epochs=1, init={"path": str(tmp_path / "pre")},
                        optim={"lr": 1e-9, "weight_decay": 0.0}, schedule={"name": "constant"}, seed=5)
    train(from_dict(RunConfig, tuned), progress=False)
    before, after = final_tensors(tmp_path / "pre"), final_tensors(tmp_path / "tuned")
    weights = [k for k in before if k.startswith("model/") and k.endswith("weight")]
    assert weights and all(torch.allclose(before[k], after[k], atol=1e-6) for k in weights)


def test_bad_init_path_writes_no_run_folder(tmp_path):
    config = tiny_config(tmp_path / "run", {"name": "standard"}, init={"path": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match="init path .*absent does not exist"):
        train(from_dict(RunConfig, config), progress=False)
    assert not (tmp_path / "run").exists()
