import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

from robustrain.attacks import APGD, APGDT, FAB, FGSM, PGD, AutoAttack, Square
from robustrain.attacks.checks import (accuracy_not_falling_with_eps, black_box_beats_white_box, randomized_outputs,
                                      softmax_outputs, zero_gradients)
from robustrain.attacks.fab import project_l2, project_linf
from robustrain.attacks.square import fraction_schedule
from robustrain.attacks.apgd import checkpoints
from robustrain.attacks.losses import dlr, targeted_dlr
from robustrain.evaluate import accuracy
from robustrain.data import load_dataset
from robustrain.errors import ConfigError

from .conftest import train_digits_model


@pytest.fixture(scope="module")
def digits_model():
    return train_digits_model(), load_dataset("digits", split="test")


def test_pgd_linf_equals_torchattacks_per_image(digits_model):
    model, test = digits_model
    x, y = test.images.float() / 255, test.labels
    ours = PGD(0.1, 0.02, 10, random_start="none")(model, x, y)
    reference = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_pgd_l2_equals_torchattacks(digits_model):
    model, test = digits_model
    x, y = test.images[:100].float() / 255, test.labels[:100]
    ours = PGD(0.5, 0.1, 10, norm="l2", random_start="none")(model, x, y)
    reference = torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=10, random_start=False)(x, y)
    assert (ours - reference).abs().max() < 1e-4
    assert (ours - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5


def test_fgsm_equals_torchattacks(digits_model):
    model, test = digits_model
    x, y = test.images.float() / 255, test.labels
    assert torch.equal(FGSM(0.1)(model, x, y), torchattacks.FGSM(model, eps=0.1)(x, y))


def test_random_start_pgd_agrees_with_torchattacks_on_robust_accuracy(digits_model):
    model, test = digits_model
    x, y = test.images.float() / 255, test.labels
    torch.manual_seed(1)
    reference = torchattacks.PGD(model, eps=0.1, alpha=0.025, steps=20, random_start=True)(x, y)
    with torch.no_grad():
        reference_acc = (model(reference).argmax(1) == y).float().mean().item()
    ours = accuracy(model, test, attack=PGD(0.1, 0.025, 20), seed=1)
    clean = accuracy(model, test)
    assert clean > 0.9 and ours < clean - 0.2
    # Different random starts only: within 1.5 points on 364 images (5 images).
    assert abs(ours - reference_acc) <= 0.015


def test_zero_eps_gives_clean_accuracy_and_huge_eps_gives_none(digits_model):
    model, test = digits_model
    clean = accuracy(model, test)
    assert accuracy(model, test, attack=PGD(0.0, 0.01, 5)) == clean
    assert accuracy(model, test, attack=PGD(1.0, 0.25, 10)) <= 0.02


def test_linear_model_is_broken_exactly_beyond_its_closed_form_margin():
    # Two-class linear model; logit gap g(x) = (w1 - w0).x + (b1 - b0). The smallest L-inf
    # perturbation that flips class 1 to 0 has size g(x) / ||w1 - w0||_1.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    x = torch.full((1, 3, 2, 2), 0.5)
    w = model[1].weight.detach()
    b = model[1].bias.detach()
    with torch.no_grad():
        model[1].bias += torch.tensor([0.0, 0.3 - ((w[1] - w[0]) @ x.flatten() + b[1] - b[0]).item()])
    gap = ((w[1] - w[0]) @ x.flatten() + model[1].bias[1] - model[1].bias[0]).item()
    minimal = gap / (w[1] - w[0]).abs().sum().item()
    y = torch.tensor([1])
    assert minimal < 0.5
    below = PGD(0.99 * minimal, 0.99 * minimal / 4, 10, random_start="none")(model, x, y)
    above = PGD(1.01 * minimal, 1.01 * minimal / 4, 10, random_start="none")(model, x, y)
    assert model(below).argmax(1).item() == 1
    assert model(above).argmax(1).item() == 0
    attack = PGD(1.01 * minimal, 1.01 * minimal / 4, 10, random_start="none", targeted=True)
    targeted = attack(model, x, torch.tensor([0]))
    assert model(targeted).argmax(1).item() == 0


def test_attack_restores_every_submodule_mode_and_leaves_no_parameter_gradients(digits_model):
    model, test = digits_model
    model.zero_grad(set_to_none=True)
    model.train()
    model.layers[0].eval()
    PGD(0.1, 0.02, 3)(model, test.images[:8].float() / 255, test.labels[:8])
    assert model.training and not model.layers[0].training and model.layers[1].training
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_restarts_keep_the_worst_case_per_image(digits_model):
    model, test = digits_model
    x, y = test.images.float() / 255, test.labels
    single = [PGD(0.06, 0.02, 5, restarts=1)(model, x, y, torch.Generator().manual_seed(s)) for s in range(3)]
    with torch.no_grad():
        fooled_any = torch.stack([model(a).argmax(1) != y for a in single]).any(0)
        combined = PGD(0.06, 0.02, 5, restarts=3)(model, x, y, torch.Generator().manual_seed(0))
        fooled_combined = model(combined).argmax(1) != y
    # The first restart of the combined run replays seed 0's draw, so it fools at least those.
    assert (fooled_combined >= (model(single[0]).argmax(1) != y)).all()
    assert fooled_combined.sum() >= (model(single[0]).argmax(1) != y).sum()
    assert fooled_any.sum() >= fooled_combined.sum() - 5


def test_apgd_checkpoints_follow_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), times N = 100.
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_dlr_losses_match_hand_computation_and_are_scale_invariant():
    logits, y = torch.tensor([[3.0, 1.0, 2.0, 0.0]]), torch.tensor([0])
    assert dlr(logits, y).item() == pytest.approx(-(3 - 2) / (3 - 1))
    assert targeted_dlr(logits, y, torch.tensor([3])).item() == pytest.approx(-(3 - 0) / (3 - 0.5 * (1 + 0)))
    assert dlr(5 * logits + 7, y).item() == pytest.approx(dlr(logits, y).item())


@pytest.fixture(scope="module")
def digits_all(digits_model):
    model, _ = digits_model
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    return model, torch.cat([train.images, test.images]).float() / 255, torch.cat([train.labels, test.labels])


def robust(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) == y


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_agrees_with_torchattacks(digits_all, loss):
    model, x, y = digits_all
    ours = robust(model, APGD(0.08, 10, loss=loss)(model, x, y, torch.Generator().manual_seed(0)), y)
    reference = robust(model, torchattacks.APGD(model, eps=0.08, steps=10, loss=loss, seed=0)(x, y), y)
    clean = robust(model, x, y).float().mean()
    assert ours.float().mean() < clean - 0.2
    assert abs(ours.float().mean() - reference.float().mean()) <= 0.005
    assert (ours == reference).float().mean() >= 0.98


def test_apgd_t_agrees_with_torchattacks(digits_all):
    model, x, y = digits_all
    x, y = x[:600], y[:600]
    ours = robust(model, APGDT(0.08, 10, targets=9)(model, x, y, torch.Generator().manual_seed(0)), y)
    reference = robust(model, torchattacks.APGDT(model, eps=0.08, steps=10, n_classes=10, seed=0)(x, y), y)
    assert abs(ours.float().mean() - reference.float().mean()) <= 0.005
    assert (ours == reference).float().mean() >= 0.98


def test_apgd_is_at_least_as_strong_as_pgd_and_respects_the_ball(digits_all):
    model, x, y = digits_all
    x, y = x[:400], y[:400]
    for norm, eps in (("linf", 0.08), ("l2", 1.0)):
        adversarial = APGD(eps, 20, norm=norm)(model, x, y, torch.Generator().manual_seed(0))
        delta = (adversarial - x).flatten(1)
        size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
        assert size.max() <= eps + 1e-5 and adversarial.min() >= 0 and adversarial.max() <= 1
        pgd = PGD(eps, eps / 4, 20, norm=norm)(model, x, y, torch.Generator().manual_seed(0))
        assert robust(model, adversarial, y).sum() <= robust(model, pgd, y).sum() + 2


def test_pgd_with_dlr_loss_attacks(digits_model):
    model, test = digits_model
    assert accuracy(model, test, attack=PGD(0.1, 0.025, 20, loss="dlr")) < accuracy(model, test) - 0.2


def test_square_schedule_follows_the_paper():
    assert [fraction_schedule(0.8, q, 10000) for q in (0, 10, 11, 50, 51, 8000, 8001)] == pytest.approx(
        [0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 256, 0.8 / 512])
    assert fraction_schedule(0.8, 2500, 5000) == pytest.approx(0.8 / 128)
    assert fraction_schedule(0.8, 2500, 5000, rescale=False) == pytest.approx(0.8 / 64)
    assert fraction_schedule(0.8, 4999, 5000, rescale=False) == pytest.approx(0.8 / 128)


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps, reference_norm", [("linf", 0.1, "Linf"), ("l2", 1.0, "L2")])
def test_square_agrees_with_torchattacks_and_stays_in_the_ball(digits_all, norm, eps, reference_norm):
    model, x, y = digits_all
    x, y = x[:600], y[:600]
    ours, reference = [], []
    for seed in range(3):
        adversarial = Square(eps, 300, norm=norm)(model, x, y, torch.Generator().manual_seed(seed))
        delta = (adversarial - x).flatten(1)
        size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
        assert size.max() <= eps + 1e-5 and adversarial.min() >= 0 and adversarial.max() <= 1
        ours.append(robust(model, adversarial, y).float().mean())
        reference_attack = torchattacks.Square(model, norm=reference_norm, eps=eps, n_queries=300, seed=seed)
        reference.append(robust(model, reference_attack(x, y), y).float().mean())
    assert max(ours) < robust(model, x, y).float().mean() - 0.1
    # One window per query is shared by the whole batch, so a seed moves every image at once:
    # over seeds 0-4, L-inf robust accuracy spans 4.8 points (ours) and 3.2 (torchattacks) at 300
    # queries, with means 0.4 points apart. The means over three seeds must agree within 2.5 points.
    assert abs(sum(ours) / 3 - sum(reference) / 3) <= 0.025


def test_square_breaks_a_model_whose_gradients_are_masked(digits_all):
    model, x, y = digits_all
    x, y = x[:300], y[:300]

    class Quantized(nn.Module):
        """Rounds its input to 8 levels: zero gradient almost everywhere, same predictions."""

        def forward(self, images):
            return model((images * 7).round() / 7)

    masked = Quantized()
    clean = robust(masked, x, y).float().mean()
    assert robust(masked, PGD(0.1, 0.025, 20)(masked, x, y), y).float().mean() > clean - 0.05
    attacked = Square(0.1, 200)(masked, x, y, torch.Generator().manual_seed(0))
    assert robust(masked, attacked, y).float().mean() < clean - 0.2


def test_fab_projections_equal_scipy_lp_and_qp_solutions():
    from scipy.optimize import linprog, minimize

    rng = np.random.default_rng(0)
    for trial in range(40):
        n = 6
        t, w = rng.uniform(0, 1, n), rng.normal(size=n)
        if trial % 5 == 0:
            w[rng.integers(n)] = 0
        target = w @ t + rng.normal() * 0.5
        lp = linprog(np.r_[np.zeros(n), 1],
                     A_ub=np.vstack([np.c_[np.eye(n), -np.ones(n)], np.c_[-np.eye(n), -np.ones(n)]]),
                     b_ub=np.zeros(2 * n),
                     A_eq=np.r_[w, 0][None], b_eq=[target - w @ t], bounds=[(-v, 1 - v) for v in t] + [(0, None)])
        args = [torch.tensor(a, dtype=torch.float64)[None] for a in (t, w)]
        args.append(torch.tensor([target], dtype=torch.float64))
        d_inf, d_2 = project_linf(*args)[0].numpy(), project_l2(*args)[0].numpy()
        if not lp.success:
            corner = np.where(w * np.sign(target - w @ t) > 0, 1.0, np.where(w * np.sign(target - w @ t) < 0, 0.0, t))
            assert np.allclose(t + d_inf, corner)
            continue
        assert np.abs(d_inf).max() == pytest.approx(lp.x[-1], abs=1e-9) and w @ (t + d_inf) == pytest.approx(target)
        qp = minimize(lambda d: d @ d, np.zeros(n), jac=lambda d: 2 * d, method="SLSQP",
                      bounds=[(-v, 1 - v) for v in t],
                      constraints=[{"type": "eq", "fun": lambda d: w @ (t + d) - target}], options={"ftol": 1e-14})
        assert np.allclose(d_2, qp.x, atol=1e-6)


@pytest.mark.parametrize("norm, eps, reference_norm", [("linf", 0.08, "Linf"), ("l2", 0.8, "L2")])
def test_fab_t_agrees_with_torchattacks(digits_all, norm, eps, reference_norm):
    model, x, y = digits_all
    x, y = x[:300], y[:300]
    ours = robust(model, FAB(eps, 10, norm=norm)(model, x, y, torch.Generator().manual_seed(0)), y)
    reference = robust(model, torchattacks.FAB(model, norm=reference_norm, eps=eps, steps=10, multi_targeted=True,
                                               n_classes=10, seed=0)(x, y), y)
    assert ours.float().mean() < robust(model, x, y).float().mean() - 0.1
    assert abs(ours.float().mean() - reference.float().mean()) <= 0.005
    assert (ours == reference).float().mean() >= 0.98


def test_untargeted_fab_finds_a_linear_models_minimal_perturbation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    x = torch.full((1, 3, 2, 2), 0.5)
    w = (model[1].weight[1] - model[1].weight[0]).detach()
    gap = (model(x)[0, 1] - model(x)[0, 0]).item()
    y = torch.tensor([int(gap > 0)])
    minimal = abs(gap) / w.abs().sum().item()
    assert minimal < 0.5
    found = FAB(1.0, 20, targeted=False)(model, x, y)
    assert model(found).argmax(1).item() != y.item()
    assert (found - x).abs().max().item() == pytest.approx(minimal, rel=0.06)


def test_autoattack_standard_uses_the_reference_settings():
    attacks = dict(AutoAttack(8 / 255).attacks)
    assert list(attacks) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert (attacks["apgd-ce"].steps, attacks["apgd-ce"].restarts, attacks["apgd-ce"].loss) == (100, 1, "ce")
    assert (attacks["apgd-t"].steps, attacks["apgd-t"].targets) == (100, 9)
    assert (attacks["fab-t"].steps, attacks["fab-t"].targets, attacks["fab-t"].targeted) == (100, 9, True)
    assert attacks["square"].queries == 5000 and all(a.eps == 8 / 255 for a in attacks.values())
    plus = dict(AutoAttack(8 / 255, version="plus").attacks)
    assert list(plus) == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert plus["apgd-ce"].restarts == plus["apgd-dlr"].restarts == plus["fab"].restarts == 5
    # the reference builds Square with resc_schedule=False in every version; standalone Square rescales
    custom = dict(AutoAttack(8 / 255, version="custom", attacks=["square"]).attacks)
    assert not attacks["square"].rescale_schedule and not plus["square"].rescale_schedule
    assert not custom["square"].rescale_schedule and Square(8 / 255).rescale_schedule


def test_autoattack_runs_every_component_in_its_model_mode():
    torch.manual_seed(0)
    seen = []

    class RecordsMode(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(12, 3)

        def forward(self, x):
            seen.append(self.training)
            return self.linear(x.flatten(1))

    model = RecordsMode().eval()
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    for mode in ("train", "eval"):
        seen.clear()
        attack = AutoAttack(0.1, version="custom", attacks=["apgd-ce", "fab-t", "square"], model_mode=mode)
        assert all(a.model_mode == mode for _, a in attack.attacks)
        for _, component in attack.attacks:  # few steps: the mode is what is checked
            component.steps = component.queries = 2
        attack.run(model, x, y, torch.Generator().manual_seed(0))
        assert seen and all(training == (mode == "train") for training in seen)
    assert not model.training


def test_autoattack_refuses_a_version_together_with_a_list_of_attacks():
    with pytest.raises(ConfigError, match="version='custom'"):
        AutoAttack(8 / 255, attacks=["apgd-ce"])
    with pytest.raises(ConfigError, match="version='custom'"):
        AutoAttack(8 / 255, version="plus", attacks=["apgd-ce"])


def test_autoattack_keeps_the_worst_case_per_image(digits_all):
    model, x, y = digits_all
    x, y = x[:300], y[:300]
    # Deterministic components, so each image's outcome does not depend on which others share its batch.
    components = [("fgsm", FGSM(0.06)), ("pgd", PGD(0.06, 0.015, 10, random_start="none")),
                  ("fab-t", FAB(0.06, 10, targets=3))]
    result = AutoAttack(0.06, version="custom", attacks=components, batch_size=128).run(model, x, y)
    alone = [robust(model, attack(model, x, y), y) for _, attack in components]
    assert torch.equal(result.robust, alone[0] & alone[1] & alone[2])
    assert torch.equal(robust(model, result.adversarial, y), result.robust)
    accuracies = [result.clean_accuracy, *result.robust_accuracy_after.values()]
    assert accuracies == sorted(accuracies, reverse=True) and result.robust_accuracy == accuracies[-1]


def test_targeted_attacks_use_fewer_targets_for_fewer_classes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).eval()
    x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 5, (8,))
    calls = []
    fab = FAB(0.3, 3, targets=9)
    original = fab._run
    fab._run = lambda *args: calls.append(1) or original(*args)
    fab(model, x, y)
    assert 1 <= len(calls) <= 4
    assert APGDT(0.3, 3)(model, x, y).shape == x.shape


def test_gradient_masking_checks_fire_on_masked_models_only(digits_all):
    model, x, y = digits_all
    x, y = x[:64], y[:64]

    class Noisy(nn.Module):
        def forward(self, images):
            return model(images + 0.01 * torch.randn_like(images))

    class Probabilities(nn.Module):
        def forward(self, images):
            return model(images).softmax(1)

    class Quantized(nn.Module):
        def forward(self, images):
            return model((images * 7).round() / 7)

    assert randomized_outputs(Noisy(), x).fired and not randomized_outputs(model, x).fired
    assert softmax_outputs(Probabilities(), x).fired and not softmax_outputs(model, x).fired
    assert zero_gradients(Quantized(), x, y).fired and not zero_gradients(model, x, y).fired


def test_attack_result_checks_follow_their_definitions():
    assert black_box_beats_white_box({"apgd-ce": 0.5, "apgd-t": 0.45, "square": 0.40}).fired
    assert not black_box_beats_white_box({"apgd-ce": 0.5, "apgd-t": 0.45, "square": 0.45}).fired
    assert not black_box_beats_white_box({"apgd-ce": 0.5}).fired
    assert not accuracy_not_falling_with_eps([0, 2 / 255, 8 / 255, 1.0], [0.9, 0.7, 0.4, 0.0]).fired
    assert accuracy_not_falling_with_eps([0, 2 / 255, 8 / 255], [0.9, 0.6, 0.7]).fired
    assert accuracy_not_falling_with_eps([0, 8 / 255, 1.0], [0.9, 0.4, 0.3]).fired


def test_worst_case_attacks_only_the_images_still_robust_and_keeps_the_first_example_found():
    from robustrain.attacks.base import WorstCase, check_norm

    x = torch.zeros(4, 1, 1, 1)
    record = WorstCase(x, torch.tensor([True, True, False, True]))
    index = record.remaining()
    assert index.tolist() == [0, 1, 3]
    record.update(index, torch.full((3, 1, 1, 1), 1.0), torch.tensor([True, False, False]))
    index = record.remaining()
    assert index.tolist() == [1, 3]
    record.update(index, torch.full((2, 1, 1, 1), 2.0), torch.tensor([False, True]))
    assert record.adversarial.flatten().tolist() == [1.0, 0.0, 0.0, 2.0]
    assert record.robust.tolist() == [False, True, False, False]
    assert x.abs().sum() == 0  # the clean batch is left alone
    with pytest.raises(Exception, match="norm must be 'linf' or 'l2', got 'l1'"):
        check_norm("l1")


def test_every_attack_runs_to_one_result_whose_fooled_flags_are_the_models_mistakes(digits_model):
    from robustrain.attacks import AttackResult, Correct
    from robustrain.train.cost import PassCounter

    model, test = digits_model
    x, y = test.images[:40].float() / 255, test.labels[:40]
    attacks = [PGD(0.1, 0.02, 5), FGSM(0.1), APGD(0.1, 5), APGDT(0.1, 5, targets=2), FAB(0.1, 5), Square(0.1, 30),
               AutoAttack(0.1, version="custom", attacks=["apgd-ce", "square"]), Correct(0.1, 0.02, 5)]
    for attack in attacks:
        result = attack.run(model, x, y, torch.Generator().manual_seed(0))
        assert isinstance(result, AttackResult), attack
        with torch.no_grad():
            mistakes = model.eval()(result.adversarial).argmax(1) != y
        assert torch.equal(result.fooled, mistakes) and torch.equal(result.robust, ~mistakes), attack
        assert result.robust_accuracy == pytest.approx((~mistakes).float().mean().item())
    # Calling an attack returns the images without the extra pass (one forward per image) that `run`
    # spends on the flags; the pass counter counts images.
    counter = PassCounter()
    handle = counter.attach(model)
    PGD(0.1, 0.02, 5)(model, x, y)
    called = counter.forward_backward + counter.forward_only
    PGD(0.1, 0.02, 5).run(model, x, y)
    handle.remove()
    assert counter.forward_backward + counter.forward_only == 2 * called + len(y)
