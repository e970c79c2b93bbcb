"""Corruptions against the libraries the reference generator calls (scipy, scikit-image, OpenCV,
Pillow) and against the statistics their parameters imply."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustrain.corruptions import (BENCHMARK, CHUNK, CORRUPTIONS, EXTRA, TABLES, corrupt, corrupt_uint8,
                                    load_corrupted, table_for, write_corrupted)
from robustrain.corruptions import ops
from robustrain.corruptions.blur import disk_kernel, glass_blur, glass_walk, zoom_blur
from robustrain.corruptions.digital import affine_from_points
from robustrain.corruptions.spatter import canny, chamfer_distance, equalize_hist
from robustrain.corruptions.textures import frost_textures
from robustrain.errors import ConfigError, DataError

cv2 = pytest.importorskip("cv2")
skimage_filters = pytest.importorskip("skimage.filters")
skimage_color = pytest.importorskip("skimage.color")
scipy_ndimage = pytest.importorskip("scipy.ndimage")


def images(n=4, size=32, seed=0):
    """Smooth random images with texture: noise blurred a little, in [0, 1], float64 for tight comparisons."""
    rng = np.random.default_rng(seed)
    x = scipy_ndimage.gaussian_filter(rng.random((n, 3, size, size)), sigma=(0, 0, 1, 1))
    x = (x - x.min()) / (x.max() - x.min())
    return torch.from_numpy(np.round(x * 255) / 255)


def hwc(x: torch.Tensor, i: int = 0) -> np.ndarray:
    return x[i].permute(1, 2, 0).numpy()


def test_the_registry_holds_the_15_benchmark_and_4_extra_corruptions_of_cifar10c():
    assert len(BENCHMARK) == 15 and len(EXTRA) == 4
    assert set(EXTRA) == {"speckle_noise", "gaussian_blur", "spatter", "saturate"}
    for table in TABLES.values():
        assert set(table) == set(CORRUPTIONS) and all(len(v) == 5 for v in table.values())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_is_seeded_keeps_shape_and_range_and_changes_the_image(name):
    x = images(3).float()
    a = corrupt(x, name, 5, generator=torch.Generator().manual_seed(1))
    b = corrupt(x, name, 5, generator=torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    assert (a - x).abs().mean() > 1e-3


def test_severity_table_follows_the_dataset_then_the_image_size_and_can_be_overridden():
    assert table_for(32, 32) == "cifar" and table_for(64, 64) == "tinyimagenet" and table_for(224, 224) == "imagenet"
    assert table_for(40, 40) == "tinyimagenet" and table_for(65, 65) == "imagenet"
    assert table_for(64, 64, "cifar10") == "cifar" and table_for(32, 32, "imagefolder") == "cifar"
    assert table_for(64, 64, "tinyimagenet") == "tinyimagenet" and table_for(256, 256, "imagenet") == "imagenet"
    x = images(2).float()
    cifar = corrupt(x, "gaussian_noise", 5)
    imagenet = corrupt(x, "gaussian_noise", 5, table="imagenet")
    assert (imagenet - x).std() > 2 * (cifar - x).std()  # sigma 0.38 against 0.10


@pytest.mark.parametrize("call, message", [
    (lambda x: corrupt(x, "rain", 1), "unknown corruption 'rain'"),
    (lambda x: corrupt(x, "fog", 6), "severity 6"),
    (lambda x: corrupt(x[:, :2], "fog", 1), "RGB or grey batches"),
    (lambda x: corrupt(x, "fog", 1, table="tiny"), "unknown severity table 'tiny'"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ConfigError, match=message):
        call(images(1).float())


def test_grey_images_are_corrupted_as_equal_rgb_channels_and_returned_grey():
    grey = images(2)[:, :1].float()
    y = corrupt(grey, "contrast", 3)
    assert y.shape == grey.shape
    rgb = corrupt(grey.expand(-1, 3, -1, -1), "contrast", 3)
    assert torch.allclose(y, rgb[:, :1], atol=1e-6)  # equal channels stay equal, so grey = any channel


# --- noise: the statistics the parameters define -------------------------------------------------

def flat(level=0.5, size=32):
    """Sixteen constant CIFAR-sized images (the CIFAR table applies)."""
    return torch.full((16, 3, size, size), level)


def test_gaussian_and_speckle_noise_have_the_table_standard_deviation():
    sigma = TABLES["cifar"]["gaussian_noise"][2]
    delta = corrupt(flat(), "gaussian_noise", 3) - 0.5
    assert abs(delta.std().item() - sigma) < 0.02 * sigma and abs(delta.mean().item()) < 1e-3
    sigma = TABLES["cifar"]["speckle_noise"][4]
    delta = corrupt(flat(), "speckle_noise", 5) - 0.5
    assert abs(delta.std().item() - 0.5 * sigma) < 0.02 * 0.5 * sigma


def test_shot_noise_is_poisson_with_variance_x_over_rate():
    rate = TABLES["cifar"]["shot_noise"][0]
    y = corrupt(flat(0.3), "shot_noise", 1)
    assert abs(y.mean().item() - 0.3) < 2e-3
    assert abs(y.var().item() - 0.3 / rate) < 0.03 * 0.3 / rate
    assert torch.allclose(y * rate, torch.round(y * rate), atol=1e-4)  # counts / rate


def test_impulse_noise_flips_the_table_fraction_half_to_black_half_to_white():
    amount = TABLES["cifar"]["impulse_noise"][4]
    y = corrupt(flat(), "impulse_noise", 5)
    white, black = (y == 1).float().mean().item(), (y == 0).float().mean().item()
    assert abs(white - amount / 2) < 0.1 * amount / 2 and abs(black - amount / 2) < 0.1 * amount / 2


# --- blurs against scipy / scikit-image / OpenCV --------------------------------------------------

@pytest.mark.parametrize("sigma", [0.4, 1.0, 2.5])
def test_gaussian_blur_equals_skimage(sigma):
    x = images(1)
    ours = ops.gaussian_blur(x, sigma)
    reference = skimage_filters.gaussian(hwc(x), sigma=sigma, channel_axis=-1)
    np.testing.assert_allclose(hwc(ours), reference, atol=1e-10)
    ours = ops.gaussian_blur(x, sigma, border="reflect", truncate=3.0)
    reference = scipy_ndimage.gaussian_filter(x[0].numpy(), sigma=(0, sigma, sigma), mode="reflect", truncate=3.0)
    np.testing.assert_allclose(ours[0].numpy(), reference, atol=1e-10)


def reference_disk(radius, alias_blur):
    coords = np.arange(-8, 8 + 1) if radius <= 8 else np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(coords, coords)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= disk.sum()
    size = (3, 3) if radius <= 8 else (5, 5)
    return cv2.GaussianBlur(disk, ksize=size, sigmaX=alias_blur)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_defocus_blur_equals_the_opencv_disk_filter(severity):
    radius, alias = TABLES["cifar"]["defocus_blur"][severity - 1]
    kernel = reference_disk(radius, alias)
    np.testing.assert_allclose(disk_kernel(radius, alias).numpy(), kernel, atol=1e-6)
    x = images(1)
    reference = np.stack([cv2.filter2D(np.ascontiguousarray(hwc(x)[:, :, c]), -1, kernel.astype(np.float64))
                          for c in range(3)], -1)
    ours = corrupt(x, "defocus_blur", severity)
    np.testing.assert_allclose(hwc(ours), np.clip(reference, 0, 1), atol=1e-5)


def reference_clipped_zoom(img, factor):
    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    img = scipy_ndimage.zoom(img[top:top + ch, top:top + ch], (factor, factor, 1), order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim:trim + h, trim:trim + h]


@pytest.mark.parametrize("severity", [1, 5])
def test_zoom_blur_equals_scipy_zoom_averaging(severity):
    factors = TABLES["cifar"]["zoom_blur"][severity - 1]
    # np.arange(1, 1.06, 0.01) ends at 1.06 (floating point), so severity 1 averages 7 zooms, not 6
    assert len(factors) == {1: 7, 5: 26}[severity] and factors[0] == 1.0
    x = images(1)
    img = hwc(x)
    reference = (img + sum(reference_clipped_zoom(img, z) for z in factors)) / (len(factors) + 1)
    ours = zoom_blur(x, factors, torch.Generator())
    np.testing.assert_allclose(hwc(ours), np.clip(reference, 0, 1), atol=1e-6)


def test_motion_blur_is_a_one_sided_gaussian_along_the_angle():
    x = images(1)
    radius, sigma = 3, 1.5
    taps = np.exp(-np.arange(7) ** 2 / (2 * sigma**2))
    taps /= taps.sum()
    img = x[0].numpy()
    cols = np.minimum(np.arange(32)[:, None] + np.arange(7)[None], 31)  # angle 0: to the right, edge repeated
    expected = np.einsum("chwk,k->chw", img[:, :, cols], taps)
    ours = ops.motion_blur(x, radius, sigma, torch.tensor([0.0]))
    np.testing.assert_allclose(ours[0].numpy(), expected, atol=1e-10)
    rows = np.minimum(np.arange(32)[:, None] + np.arange(7)[None], 31)  # angle 90: downwards
    expected = np.einsum("chkw,k->chw", img[:, rows, :].transpose(0, 1, 2, 3).reshape(3, 32, 7, 32), taps)
    ours = ops.motion_blur(x, radius, sigma, torch.tensor([90.0]))
    np.testing.assert_allclose(ours[0].numpy(), expected, atol=1e-10)


def numpy_statement_walk(offsets: np.ndarray, height: int, width: int, delta: int, image: int) -> np.ndarray:
    """The reference's loop, statement for statement, on an (H, W, 3) array of pixel numbers."""
    x = np.repeat(np.arange(height * width).reshape(height, width, 1), 3, axis=2)
    for step in range(offsets.shape[0]):
        k = 0
        for h in range(height - delta, delta, -1):
            for w in range(width - delta, delta, -1):
                dx, dy = offsets[step, k, :, image]
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
                k += 1
    return x[..., 0].reshape(-1)


@pytest.mark.parametrize("size, delta, iterations", [(32, 1, 2), (12, 2, 2)])
def test_glass_walk_does_what_numpys_swap_statement_does(size, delta, iterations):
    # NumPy's right-hand side holds views, so the "swap" copies one pixel onto the other
    rng = np.random.default_rng(0)
    positions = (size - 2 * delta) ** 2
    offsets = rng.integers(-delta, delta, size=(iterations, positions, 2, 3))
    walked = glass_walk(offsets, size, size, delta)
    for image in range(3):
        np.testing.assert_array_equal(walked[image], numpy_statement_walk(offsets, size, size, delta, image))
    assert len(np.unique(walked[0])) < size * size  # pixels were copied, so some are gone


def test_glass_blur_between_its_blurs_only_copies_pixels_of_the_8bit_image():
    x = images(2)
    # sigma 0.05 gives a one-tap Gaussian, so the output is the 8-bit input with pixels moved
    y = glass_blur(x, (0.05, 1, 2), torch.Generator().manual_seed(0))
    before = ops.truncate_to_uint8(x).reshape(2, 3, -1)
    after = ops.truncate_to_uint8(y + 1e-9).reshape(2, 3, -1)
    assert not torch.equal(before, after)
    for i in range(2):  # every output pixel (an RGB triple) is one of the input's
        assert set(map(tuple, after[i].T.tolist())) <= set(map(tuple, before[i].T.tolist()))


WAND_MOTION_BLUR = Path(__file__).parent / "data" / "motion_blur_reference.npz"


def test_motion_blur_and_its_8bit_output_equal_imagemagick_through_wand():
    # Made once with the reference's MotionImage (Wand 0.7.2, ImageMagick 6.9.11-60 Q16) on six
    # textured RGB images and six thresholded snow layers: PNG in, motion_blur(radius, sigma, angle),
    # PNG out, decoded by cv2.
    reference = np.load(WAND_MOTION_BLUR)
    x = torch.from_numpy(reference["images"]).permute(0, 3, 1, 2).double() / 255
    angles = torch.from_numpy(reference["angles"])
    for (radius, sigma), wand in zip(reference["radius_sigma"], reference["blurred"]):
        blurred = ops.motion_blur(x, float(radius), float(sigma), angles)
        ours = torch.round(ops.imagemagick_8bit(blurred) * 255).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(ours, wand)
        rounded = torch.round(blurred * 255).permute(0, 2, 3, 1).numpy()
        assert (rounded != wand).mean() > 0.3  # rounding instead of ImageMagick's truncation: half the values
    layer = torch.from_numpy(reference["snow_layer"]).double()[:, None] / 255
    snow = ops.imagemagick_8bit(ops.motion_blur(layer, 14, 12, torch.from_numpy(reference["snow_angles"])))
    np.testing.assert_array_equal(torch.round(snow[:, 0] * 255).numpy(), reference["snow_blurred"])


# --- colour and digital ----------------------------------------------------------------------------

def test_hsv_round_trip_equals_skimage():
    x = images(2)
    x[0, :, :4, :4] = 0.5  # grey pixels: zero saturation and hue
    hsv = ops.rgb_to_hsv(x)
    np.testing.assert_allclose(hwc(hsv), skimage_color.rgb2hsv(hwc(x)), atol=1e-12)
    np.testing.assert_allclose(hwc(ops.hsv_to_rgb(hsv)), skimage_color.hsv2rgb(hwc(hsv)), atol=1e-12)


@pytest.mark.parametrize("name", ["brightness", "saturate"])
def test_brightness_and_saturate_equal_the_skimage_hsv_edit(name):
    x = images(1)
    hsv = skimage_color.rgb2hsv(hwc(x))
    c = TABLES["cifar"][name][3]
    if name == "brightness":
        hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    else:
        hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    reference = np.clip(skimage_color.hsv2rgb(hsv), 0, 1)
    np.testing.assert_allclose(hwc(corrupt(x, name, 4)), reference, atol=1e-6)


def test_contrast_scales_the_distance_to_the_channel_mean():
    x = images(1).float()
    factor = TABLES["cifar"]["contrast"][4]
    y = corrupt(x, "contrast", 5)
    mean = x.mean((2, 3), keepdim=True)
    assert torch.allclose(y - mean, (x - mean) * factor, atol=1e-6)


def pil_image(x):
    return Image.fromarray(np.round(hwc(x) * 255).astype(np.uint8))


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_pixelate_equals_pillow_box_resizing(severity):
    x = images(1)
    factor = TABLES["cifar"]["pixelate"][severity - 1]
    small = pil_image(x).resize((int(32 * factor), int(32 * factor)), Image.BOX)
    reference = np.asarray(small.resize((32, 32), Image.BOX)) / 255
    ours = hwc(corrupt(x, "pixelate", severity).double())
    np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_jpeg_compression_at_the_table_quality_equals_pillow():
    x = images(1)
    quality = TABLES["cifar"]["jpeg_compression"][4]
    buffer = io.BytesIO()
    pil_image(x).save(buffer, "JPEG", quality=quality)
    reference = np.asarray(Image.open(buffer)) / 255
    np.testing.assert_allclose(hwc(corrupt(x, "jpeg_compression", 5).double()), reference, atol=1e-6)


def test_affine_warp_equals_opencv():
    x = images(1)
    source = np.float32([[26, 26], [26, 6], [6, 6]])
    target = source + np.float32([[1.5, -2.0], [0.3, 1.1], [-1.7, 0.4]])
    ours = affine_from_points(torch.from_numpy(source[None]).double(), torch.from_numpy(target[None]).double())
    reference = cv2.getAffineTransform(source, target)
    np.testing.assert_allclose(ours[0].numpy(), reference, atol=1e-5)
    warped = cv2.warpAffine(hwc(x).astype(np.float32), reference, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
    inverse = np.linalg.inv(np.vstack([reference, [0, 0, 1]]))[:2]
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    src_cols = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
    src_rows = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
    ours = ops.sample_bilinear(x.float(), src_rows[None].float(), src_cols[None].float(), "mirror")
    # OpenCV quantizes sample positions to 1/32 pixel
    assert np.abs(hwc(ours) - warped).max() < 0.03


def test_bilinear_sampling_with_reflection_equals_scipy_map_coordinates():
    x = images(1)
    rng = np.random.default_rng(0)
    rows = torch.from_numpy(rng.uniform(-3, 35, (1, 32, 32)))
    cols = torch.from_numpy(rng.uniform(-3, 35, (1, 32, 32)))
    ours = ops.sample_bilinear(x, rows, cols, "reflect")
    for c in range(3):
        reference = scipy_ndimage.map_coordinates(x[0, c].numpy(), [rows[0].numpy(), cols[0].numpy()],
                                                  order=1, mode="reflect")
        np.testing.assert_allclose(ours[0, c].numpy(), reference, atol=1e-10)


# --- weather ---------------------------------------------------------------------------------------

def test_fog_keeps_a_flat_image_between_the_closed_form_bounds():
    level = 0.6
    strength = TABLES["cifar"]["fog"][4][0]
    y = corrupt(flat(level, 32), "fog", 5)
    # (x + s cloud) x_max / (x_max + s) with the cloud spanning [0, 1] in every image
    assert torch.allclose(y.amin((1, 2, 3)), torch.tensor(level * level / (level + strength)), atol=1e-5)
    assert torch.allclose(y.amax((1, 2, 3)), torch.tensor(level), atol=1e-5)


def test_snow_whitens_a_black_image_by_the_table_weight():
    weight = TABLES["cifar"]["snow"][0][6]
    y = corrupt(torch.zeros(4, 3, 32, 32), "snow", 1)
    assert torch.allclose(y.amin((1, 2, 3)), torch.tensor((1 - weight) * 0.5), atol=1e-6)
    assert (y > (1 - weight) * 0.5 + 0.05).float().mean() > 0.01  # and flakes fall


def test_frost_on_black_is_a_crop_of_a_cv2_resized_reference_texture():
    pytest.importorskip("importlib.metadata")
    try:
        textures = frost_textures()
    except DataError as error:
        pytest.skip(str(error))
    _, frost_weight, scale = TABLES["cifar"]["frost"][0]
    resized = [cv2.resize(np.ascontiguousarray(t.permute(1, 2, 0).numpy()), (0, 0), fx=scale, fy=scale)
               for t in textures]
    y = corrupt(torch.zeros(2, 3, 32, 32), "frost", 1)
    for image in y:
        best = 1.0
        for texture in resized:
            windows = torch.from_numpy(texture).permute(2, 0, 1).double().unsqueeze(0) / 255
            patches = torch.nn.functional.unfold(windows, 32)  # (1, 3*32*32, positions)
            target = (image.double() / frost_weight).reshape(-1, 1)
            best = min(best, (patches[0] - target).abs().amax(0).min().item())
        assert best < 2.5 / 255


# --- spatter's OpenCV chain ---------------------------------------------------------------------------

def liquid_layer(seed=0):
    rng = np.random.default_rng(seed)
    layer = skimage_filters.gaussian(rng.normal(0.65, 0.3, (2, 32, 32)), sigma=(0, 1, 1))
    layer[layer < 0.69] = 0
    return (np.clip(layer, 0, 1) * 255).astype(np.uint8)


def test_canny_matches_opencv():
    layers = liquid_layer()
    ours = canny(torch.from_numpy(layers[:, None]).double() / 255, 50, 150)[:, 0].numpy()
    reference = np.stack([cv2.Canny(layer, 50, 150) > 0 for layer in layers])
    assert reference.sum() > 50
    assert (ours == reference).mean() > 0.995


def test_chamfer_distance_matches_opencv_distance_transform():
    layers = liquid_layer(1)
    edges = np.stack([cv2.Canny(layer, 50, 150) for layer in layers])
    reference = np.stack([np.minimum(cv2.distanceTransform(255 - e, cv2.DIST_L2, 5), 20) for e in edges])
    ours = chamfer_distance(torch.from_numpy(edges[:, None] > 0), 20.0)[:, 0].numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-2)


def test_equalize_hist_equals_opencv():
    rng = np.random.default_rng(0)
    values = (rng.beta(2, 5, (3, 32, 32)) * 80).astype(np.uint8)
    ours = equalize_hist(torch.from_numpy(values[:, None]).double())[:, 0].numpy()
    reference = np.stack([cv2.equalizeHist(v) for v in values])
    np.testing.assert_array_equal(ours, reference)


def test_mud_spatter_paints_mud_brown_with_a_mask_of_at_least_0_8():
    y = corrupt(torch.zeros(8, 3, 32, 32), "spatter", 5)
    brown = torch.tensor([63, 42, 20]) / 255
    mask = y / brown[None, :, None, None]  # on black, y = brown * mask
    painted = mask[:, 0] > 0
    assert painted.float().mean() > 0.01
    assert torch.allclose(mask[:, 1][painted], mask[:, 0][painted], atol=1e-5)
    assert mask[:, 0][painted].min() >= 0.8 - 1e-6 and mask.max() <= 1 + 1e-6


# --- the released layout ------------------------------------------------------------------------------

def test_a_corruptions_seeds_do_not_depend_on_the_other_corruptions(monkeypatch):
    from robustrain.corruptions import registry

    before = {name: registry.chunk_seed(0, name, 3, 1) for name in CORRUPTIONS}
    assert len(set(before.values())) == len(before)
    reordered = {"rain": None, **dict(reversed(list(CORRUPTIONS.items())))}
    monkeypatch.setattr(registry, "CORRUPTIONS", reordered)
    assert {name: registry.chunk_seed(0, name, 3, 1) for name in before} == before


def test_tiny_imagenet_and_imagenet_sets_are_stored_as_the_released_jpegs():
    x = (images(3, size=64) * 255).round().to(torch.uint8)
    stored = corrupt_uint8(x, "contrast", 2, table="tinyimagenet")
    truncated = ops.truncate_to_uint8(corrupt(x.float() / 255, "contrast", 2, table="tinyimagenet"))
    for image, array in zip(stored, truncated):
        buffer = io.BytesIO()
        Image.fromarray(array.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=85, optimize=True)
        buffer.seek(0)
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), np.asarray(Image.open(buffer).convert("RGB")))
    assert torch.equal(corrupt_uint8(x[:, :, :32, :32], "contrast", 2, table="cifar"),
                       ops.truncate_to_uint8(corrupt(x[:, :, :32, :32].float() / 255, "contrast", 2, table="cifar")))


def test_uint8_corruption_does_not_depend_on_how_the_data_is_split():
    x = (images(2 * CHUNK, size=8) * 255).round().to(torch.uint8)
    whole = corrupt_uint8(x, "gaussian_noise", 3, seed=5)
    second = corrupt_uint8(x[CHUNK:], "gaussian_noise", 3, seed=5, start=CHUNK)
    assert torch.equal(whole[CHUNK:], second)
    assert not torch.equal(whole[:CHUNK], corrupt_uint8(x[:CHUNK], "gaussian_noise", 3, seed=6))


def test_written_files_have_the_released_layout_and_load_back(tmp_path):
    x = (images(6) * 255).round().to(torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5, 9])
    write_corrupted(tmp_path, x, labels, ["contrast", "gaussian_noise"], seed=0)
    array = np.load(tmp_path / "contrast.npy")
    assert array.dtype == np.uint8 and array.shape == (30, 32, 32, 3)
    assert np.load(tmp_path / "labels.npy").tolist() == labels.tolist() * 5
    for severity in (1, 5):
        loaded, loaded_labels = load_corrupted(tmp_path, "contrast", severity)
        expected = corrupt_uint8(x, "contrast", severity)
        assert torch.equal(loaded, expected) and torch.equal(loaded_labels, labels)
        assert np.array_equal(array[(severity - 1) * 6:severity * 6], expected.permute(0, 2, 3, 1).numpy())
    # truncation to 8 bits, as np.uint8(...) in the reference
    assert torch.equal(corrupt_uint8(x, "contrast", 2),
                       (corrupt(x.float() / 255, "contrast", 2, generator=torch.Generator().manual_seed(0)) * 255)
                       .to(torch.uint8))


def test_loading_rejects_files_that_are_not_the_released_layout(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_corrupted(tmp_path, "fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((10, 32, 32, 3), dtype=np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(10, dtype=np.uint8))
    with pytest.raises(DataError, match="expected uint8"):
        load_corrupted(tmp_path, "fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((12, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="expected 5 N images"):
        load_corrupted(tmp_path, "fog", 1)
