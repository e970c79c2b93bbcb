"""OAT / OATS: FiLM, dual BN routed per sample, λ encodings and sampling, slimmable widths, the loss."""

import json
import math

import numpy as np
import pytest
import scipy.fftpack
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.errors import ConfigError
from robustrain.evaluate import evaluate
from robustrain.evaluate.suites import Suite
from robustrain.methods import StepContext, Threat, create_method
from robustrain.methods.oat import sample_lambda_indices
from robustrain.models import create_model
from robustrain.nn import Condition, FiLM, LambdaCodes, RoutedBatchNorm2d, encoding_matrix
from robustrain.train import RunConfig, train
from robustrain.train.load import load_run
from robustrain.config import from_dict

GRID = [0, 0.1, 0.2, 0.3, 0.4, 1]


def oat_model(**options):
    torch.manual_seed(0)
    return create_model("small_cnn", 10, width=8, lambdas=GRID, **options)


def randomize_running_stats(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)


def per_sample(codes: LambdaCodes, indices: torch.Tensor, width: float = 1.0) -> Condition:
    return Condition(route=codes.route(indices), code=codes.encode(indices), width=width)


# FiLM

def official_film(film: FiLM, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """The official FiLM_Layer's computation, written out: MLP, split, leaky_relu on both halves."""
    mlp = nn.Sequential(film.hidden, nn.LeakyReLU(), film.out)
    mu, sigma = mlp(code).split(film.channels, dim=-1)
    return x * F.leaky_relu(mu)[:, :, None, None] + F.leaky_relu(sigma)[:, :, None, None]


def test_film_matches_the_official_layer_and_starts_with_a_scale_near_zero():
    torch.manual_seed(0)
    film = FiLM(16, 128)
    x, code = torch.randn(4, 16, 5, 5), torch.linalg.qr(torch.randn(128, 128))[0][:4]
    assert torch.allclose(film(x, code), official_film(film, x, code), atol=1e-6)
    # At initialisation the scale is leaky_relu(b2 + small): within [-0.01, 1/sqrt(2C) + a bit], far from 1.
    mu = (film(torch.ones(4, 16, 1, 1), code) - film(torch.zeros(4, 16, 1, 1), code)).flatten()
    assert mu.abs().max() < 0.35 and mu.min() > -0.01
    assert not torch.allclose(film(x, code), x, atol=0.5)


def test_residual_film_is_the_identity_when_its_output_layer_is_zero():
    film = FiLM(6, 3, residual=True)
    nn.init.zeros_(film.out.weight)
    nn.init.zeros_(film.out.bias)
    x = torch.randn(2, 6, 3, 3)
    assert torch.equal(film(x, torch.randn(2, 3)), x)


def test_slimmed_film_keeps_each_channels_rows():
    torch.manual_seed(1)
    film = FiLM(8, 5)
    x, code = torch.randn(3, 4, 2, 2), torch.randn(3, 5)
    hidden = F.leaky_relu(code @ film.hidden.weight[:8].T + film.hidden.bias[:8])
    mu = hidden @ film.out.weight[:4, :8].T + film.out.bias[:4]
    sigma = hidden @ film.out.weight[8:12, :8].T + film.out.bias[8:12]
    expected = x * F.leaky_relu(mu)[:, :, None, None] + F.leaky_relu(sigma)[:, :, None, None]
    assert torch.allclose(film(x, code), expected, atol=1e-6)


def test_conditioned_model_without_a_code_says_how_to_bind_it():
    with pytest.raises(ValueError, match="bind the model"):
        oat_model()(torch.rand(2, 3, 8, 8))


# Dual BN routed per sample

def test_mixed_lambda_batch_gives_each_sample_what_it_gives_alone_in_eval_mode():
    model = oat_model(widths=[0.5, 1.0]).eval()
    randomize_running_stats(model)
    x, indices = torch.rand(6, 3, 16, 16), torch.tensor([0, 5, 2, 0, 1, 3])
    for width in (0.5, 1.0):
        with torch.no_grad():
            mixed = model(x, per_sample(model.lambda_codes, indices, width))
            alone = torch.cat([model.bind(lam=GRID[i], width=width)(x[j:j + 1]) for j, i in enumerate(indices)])
        assert torch.allclose(mixed, alone, atol=1e-5)


def test_train_mode_statistics_come_from_each_route_alone_whatever_the_order():
    model = oat_model().train()
    x, indices = torch.rand(8, 3, 16, 16), torch.tensor([3, 0, 5, 0, 1, 0, 2, 4])
    codes = model.lambda_codes
    with torch.no_grad():
        mixed = model(x, per_sample(codes, indices))
        clean, adversarial = indices == 0, indices != 0
        alone_clean = model(x[clean], per_sample(codes, indices[clean]))
        alone_adv = model(x[adversarial], per_sample(codes, indices[adversarial]))
    assert torch.allclose(mixed[clean], alone_clean, atol=1e-5)
    assert torch.allclose(mixed[adversarial], alone_adv, atol=1e-5)


def test_lambda_zero_uses_the_clean_bn_and_every_other_lambda_the_adversarial_one():
    model = oat_model()
    assert [model.condition(lam).route for lam in GRID] == [0, 1, 1, 1, 1, 1]
    assert [model_no_dual.condition(lam).route for lam in GRID
            for model_no_dual in [oat_model(dual_bn=False)]] == [0] * 6
    bn = model.layers[0].bn
    assert isinstance(bn, RoutedBatchNorm2d) and bn.num_routes == 2 and bn.film is not None


# Encodings

def test_encodings_against_their_definitions():
    torch.manual_seed(3)
    rand = encoding_matrix("rand", GRID, 128)
    assert rand.shape == (6, 128)
    assert torch.allclose(rand @ rand.T, torch.eye(6), atol=1e-5)  # orthonormal rows of Q
    assert torch.equal(encoding_matrix("onehot", GRID, 16), torch.eye(16)[:6])
    reference = scipy.fftpack.dct(np.eye(32), axis=0)[:6]
    assert np.allclose(encoding_matrix("dct", GRID, 32).numpy(), reference, atol=1e-5)
    assert torch.equal(encoding_matrix("scalar", GRID, 128), torch.tensor(GRID, dtype=torch.float32)[:, None])
    with pytest.raises(ValueError, match="smaller than the 6"):
        encoding_matrix("onehot", GRID, 4)


def test_scalar_encoding_feeds_lambda_itself():
    model = oat_model(encoding="scalar")
    assert model.layers[0].bn.film.code_dim == 1
    assert model.condition(0.3).code.item() == pytest.approx(0.3)


def tiny_oat_run(tmp_path, widths=None, epochs=1) -> dict:
    model = {"name": "small_cnn", "width": 8, "lambdas": GRID}
    if widths:
        model["widths"] = widths
    return {"data": {"name": "digits", "augment": "crop", "crop_padding": 1, "train_limit": 256},
            "model": model, "method": {"name": "oat", "steps": 2}, "threat": {"eps": 0.1}, "optim": {"lr": 0.05},
            "eval": {"pgd_steps": 2, "pgd_limit": 50}, "epochs": epochs, "batch_size": 64, "device": "cpu",
            "out": str(tmp_path / "oat")}


def test_encoding_is_saved_with_the_run_and_reloading_reproduces_outputs(tmp_path):
    results = train(from_dict(RunConfig, tiny_oat_run(tmp_path)), progress=False)
    assert set(results.measurements) == {f"lambda={lam:g}" for lam in GRID}
    torch.manual_seed(12345)  # another global state: a newly drawn matrix would differ
    run = load_run(tmp_path / "oat")
    fresh = create_model("small_cnn", 10, in_channels=1, width=8, lambdas=GRID, mean=(0.5,), std=(0.5,))
    assert not torch.equal(fresh.lambda_codes.matrix, run.model.lambda_codes.matrix)
    x = run.test_set.images[:50].float() / 255
    model = run.model.eval()
    with torch.no_grad():
        correct = {lam: (model.bind(lam=lam)(x).argmax(1) == run.test_set.labels[:50]).float().mean().item()
                   for lam in GRID}
    reloaded = load_run(tmp_path / "oat").model.eval()
    with torch.no_grad():
        for lam in GRID:
            assert torch.equal(reloaded.bind(lam=lam)(x), model.bind(lam=lam)(x))
    assert all(0 <= c <= 1 for c in correct.values())


# λ sampling

def test_lambda_zero_share_is_fixed_and_the_rest_uniform_over_nonzero_values():
    values = torch.tensor(GRID)
    generator = torch.Generator().manual_seed(0)
    indices = sample_lambda_indices(values, 128, None, generator)
    assert (values[indices] == 0).sum() == math.ceil(128 / 6) == 22
    assert (values[indices[22:]] > 0).all()
    assert (values[sample_lambda_indices(values, 128, 0.5, generator)] == 0).sum() == 64
    draws = sample_lambda_indices(values, 60_000, None, generator)[10_000:]
    counts = torch.bincount(draws, minlength=6)[1:].float()
    expected = len(draws) / 5
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 18.47  # 99.9% quantile of chi-square with 4 degrees of freedom
    no_zero = torch.tensor([0.5, 1.0])
    assert (sample_lambda_indices(no_zero, 10, None, generator) >= 0).all()


# Slimmable sub-networks

def test_sub_network_has_the_sliced_channels_and_computes_a_narrow_model_with_the_sliced_weights():
    torch.manual_seed(0)
    slim = create_model("small_cnn", 10, width=8, widths=[0.5, 1.0]).eval()
    narrow = create_model("small_cnn", 10, width=4).eval()
    randomize_running_stats(slim)
    # Same names: width 0.5 is the first width, so each BN site's branch 0 holds its statistics.
    state = {name: source[tuple(slice(0, s) for s in narrow.state_dict()[name].shape)]
             for name, source in slim.state_dict().items() if name in narrow.state_dict()}
    narrow.load_state_dict(state)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert slim.layers[0].conv(x, Condition(width=0.5)).shape[1] == 4
        assert slim.layers[5].conv(torch.rand(1, 16, 4, 4), Condition(width=0.5)).shape[1] == 16
        assert torch.allclose(slim(x, Condition(width=0.5)), narrow(x), atol=1e-5)


def test_widths_share_parameters_and_a_sub_network_touches_only_its_slice():
    model = create_model("small_cnn", 10, width=8, widths=[0.5, 1.0])
    weights = model.layers[2].conv.weight
    model(torch.rand(2, 3, 16, 16), Condition(width=0.5)).sum().backward()
    assert weights.grad[:8, :4].abs().sum() > 0
    assert weights.grad[8:].abs().sum() == 0 and weights.grad[:, 4:].abs().sum() == 0
    bn = model.layers[2].bn
    assert [b.num_features for b in bn.branches] == [8, 16]
    assert bn.branches[1].weight.grad is None


# The loss

def test_oat_loss_is_the_lambda_weighted_clean_and_adversarial_cross_entropy():
    torch.manual_seed(0)
    model = oat_model().train()
    method = create_method("oat", {"steps": 2}, Threat(eps=0.05))
    x, y = torch.rand(12, 3, 16, 16), torch.randint(0, 10, (12,))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    out = method.step(model, x, y, StepContext(torch.Generator().manual_seed(7)))

    model.load_state_dict(start)  # the step updated the running statistics the attack uses
    generator = torch.Generator().manual_seed(7)
    codes = model.lambda_codes
    indices = sample_lambda_indices(codes.values, 12, None, generator)
    lam = codes.values[indices]
    clean = F.cross_entropy(model(x, per_sample(codes, indices)), y, reduction="none")
    rows = lam > 0
    sub = per_sample(codes, indices[rows])
    x_adv = method.attack(model.bind(sub), x[rows], y[rows], generator)
    assert (x_adv - x[rows]).abs().max() <= 0.05 + 1e-6
    adversarial = torch.zeros(12)
    adversarial[rows] = F.cross_entropy(model(x_adv, sub), y[rows], reduction="none")
    expected = ((1 - lam) * clean + lam * adversarial).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert (lam == 0).sum() == 2  # ⌈12 / 6⌉


def test_oats_step_equals_the_sum_of_the_per_width_losses_gradients():
    torch.manual_seed(0)
    model = oat_model(widths=[0.5, 0.75, 1.0]).train()
    method = create_method("oat", {"steps": 2}, Threat(eps=0.05))
    x, y = torch.rand(12, 3, 16, 16), torch.randint(0, 10, (12,))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    method.step(model, x, y, StepContext(torch.Generator().manual_seed(3))).loss.backward()
    combined = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.load_state_dict(start)
    model.zero_grad()
    generator = torch.Generator().manual_seed(3)
    codes = model.lambda_codes
    indices = sample_lambda_indices(codes.values, 12, None, generator)
    lam = codes.values[indices]
    rows = (lam > 0).nonzero().flatten()  # the step knows them without asking: λ > 0 samples come last
    for width in (1.0, 0.75, 0.5):
        loss, _, _ = method.width_loss(model, x, y, lam, rows, per_sample(codes, indices, width),
                                       StepContext(generator))
        loss.backward()
    separate = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(combined) == set(separate)
    for name in combined:
        assert torch.allclose(combined[name], separate[name], atol=1e-5), name


def test_oat_needs_a_lambda_conditioned_model_and_says_which_option(tmp_path):
    config = tiny_oat_run(tmp_path)
    config["model"] = {"name": "small_cnn", "width": 8}
    with pytest.raises(ConfigError, match="lambdas"):
        train(from_dict(RunConfig, config), progress=False)
    assert not (tmp_path / "oat").exists()


def test_bad_settings_are_named():
    model = oat_model(widths=[0.5, 1.0])
    with pytest.raises(ValueError, match="0.25 is not one of"):
        model.bind(lam=0, width=0.25)
    with pytest.raises(ValueError, match="0.7 is not one of"):
        model.bind(lam=0.7)
    with pytest.raises(ValueError, match="must include 1.0"):
        create_model("small_cnn", 10, widths=[0.5])
    with pytest.raises(ValueError, match="give `lambdas`"):
        create_model("small_cnn", 10, encoding="dct")
    with pytest.raises(ValueError, match="contradicts"):
        create_model("small_cnn", 10, lambdas=GRID, num_routes=3)


def test_suite_and_trainer_evaluate_every_width_and_lambda(tmp_path):
    results = train(from_dict(RunConfig, tiny_oat_run(tmp_path, widths=[0.5, 1.0])), progress=False)
    expected = {f"width={w:g},lambda={lam:g}" for w in (0.5, 1.0) for lam in GRID}
    assert set(results.measurements) == expected
    run = load_run(tmp_path / "oat")
    tiny = Suite("tiny", (), (), None, ("pgd20",), 20, ())
    evaluation = evaluate(run.model, run.test_set, tiny, eps=0.1, progress=False)
    assert set(evaluation["summary"]) == expected
    metrics = json.loads((tmp_path / "oat" / "metrics.jsonl").read_text().splitlines()[0])
    assert set(metrics["test_acc"]) == expected


# FiLM after the stem BN (where there is one) and both BNs of every block; none on shortcut BNs
# or the final BN of pre-activation nets: ResNet-18 1 + 2 x 8, ResNet-34 1 + 2 x 16,
# WRN-16-8 2 x 6, WRN-40-2 2 x 18.
@pytest.mark.parametrize("name, films", [("resnet18", 17), ("resnet34", 33), ("wrn16_8", 12), ("wrn40_2", 36)])
def test_oat_variants_of_the_paper_backbones_come_from_registry_options(name, films):
    model = create_model(name, 10, lambdas=GRID, widths=[0.5, 1.0]).eval()
    sites = [m for m in model.modules() if isinstance(m, RoutedBatchNorm2d)]
    assert sum(m.film is not None for m in sites) == films
    assert all(m.num_routes == 2 and len(m.branches) == 4 for m in sites)
    with torch.no_grad():
        assert model.bind(lam=0.2, width=0.5)(torch.rand(2, 3, 32, 32)).shape == (2, 10)
