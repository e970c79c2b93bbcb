"""AugMix: each op against Pillow on the same images and parameters, the mixture, the JSD loss."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from robustrain.methods import StepContext, Threat, create_method
from robustrain.methods.augmix import jensen_shannon
from robustrain.methods.augmix_ops import OPS, apply_op, augment_and_mix, magnitudes


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    # Natural-looking dynamic ranges: smooth gradients plus noise, some with narrow ranges.
    base = rng.integers(0, 256, (12, 32, 32, 3)).astype(np.float64)
    base[:4] = base[:4] * 0.3 + 60
    base[4:8] = np.linspace(0, 255, 32)[None, :, None, None].repeat(4, 0).repeat(3, 3) * 0.5 + base[4:8] * 0.5
    return base.round().clip(0, 255).astype(np.uint8)


def ours(name, array, magnitude):
    v = torch.from_numpy(array).permute(0, 3, 1, 2).double()
    return apply_op(name, v, torch.tensor(magnitude, dtype=torch.float64)).permute(0, 2, 3, 1).numpy()


def pillow(name, image, magnitude):
    if name == "autocontrast":
        return ImageOps.autocontrast(image)
    if name == "equalize":
        return ImageOps.equalize(image)
    if name == "posterize":
        return ImageOps.posterize(image, int(magnitude))
    if name == "solarize":
        return ImageOps.solarize(image, int(magnitude))
    if name == "rotate":
        return image.rotate(magnitude, resample=Image.BILINEAR)
    matrix = {"shear_x": (1, magnitude, 0, 0, 1, 0), "shear_y": (1, 0, 0, magnitude, 1, 0),
              "translate_x": (1, 0, magnitude, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, magnitude)}[name]
    return image.transform(image.size, Image.AFFINE, matrix, resample=Image.BILINEAR)


@pytest.mark.parametrize("name", ["autocontrast", "equalize", "posterize", "solarize"])
def test_tone_ops_equal_pillow_exactly(images, name):
    params = magnitudes(name, len(images), 10, 32, torch.Generator().manual_seed(1)).tolist()
    expected = np.stack([np.asarray(pillow(name, Image.fromarray(a), m)) for a, m in zip(images, params)])
    assert np.array_equal(ours(name, images, params), expected)


@pytest.mark.parametrize("name", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"])
def test_geometric_ops_equal_pillow_but_for_rare_float_ties(images, name):
    params = magnitudes(name, len(images), 10, 32, torch.Generator().manual_seed(2)).tolist()
    expected = np.stack([np.asarray(pillow(name, Image.fromarray(a), m)) for a, m in zip(images, params)])
    difference = np.abs(ours(name, images, params) - expected.astype(np.float64))
    assert difference.max() <= 1 and np.mean(difference == 0) > 0.998


def test_augmix_views_stay_in_range_and_mix_with_the_original():
    x = torch.randint(0, 256, (16, 3, 32, 32)).float() / 255
    mixed = augment_and_mix(x, torch.Generator().manual_seed(0))
    assert mixed.min() >= 0 and mixed.max() <= 1 and mixed.shape == x.shape
    assert not torch.allclose(mixed, x)
    for name in OPS:
        out = apply_op(name, x * 255, magnitudes(name, 16, 3, 32, torch.Generator().manual_seed(3)))
        assert out.min() >= 0 and out.max() <= 255, name


def test_jsd_matches_hand_computation():
    logits = [torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]), torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]]),
              torch.tensor([[1.0, 1.0, 1.0], [-2.0, 0.0, 3.0]])]
    p = [np.exp(z.numpy()) / np.exp(z.numpy()).sum(1, keepdims=True) for z in logits]
    m = (p[0] + p[1] + p[2]) / 3
    expected = np.mean([(q * np.log(q / m)).sum(1).mean() for q in p])
    assert jensen_shannon(*logits).item() == pytest.approx(expected, rel=1e-5)
    assert jensen_shannon(logits[0], logits[0], logits[0]).item() == pytest.approx(0, abs=1e-6)


def test_augmix_step_is_ce_plus_twelve_jsd_on_one_concatenated_batch():
    from robustrain.models import create_model

    torch.manual_seed(0)
    model = create_model("small_cnn", 10, width=4).train()
    method = create_method("augmix", {}, Threat())
    x, y = torch.randint(0, 256, (8, 3, 16, 16)).float() / 255, torch.randint(0, 10, (8,))
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    out = method.step(model, x, y, StepContext(torch.Generator().manual_seed(0)))
    assert calls == [24]
    assert out.loss.item() == pytest.approx((out.logs["clean_loss"] + 12 * out.logs["jsd"]).item(), rel=1e-6)
