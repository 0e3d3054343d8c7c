import math

import pytest
import torch
from torch.nn import functional

from ldm_pyro.data import NoiseAugmentation, ViewAugmentation, make_views
from ldm_pyro.data.views import affine_theta


def warp(x, angle=0.0, scale=1.0, shift=(0.0, 0.0)):
    num, _, height, width = x.shape
    theta = affine_theta(
        torch.full((num,), angle),
        torch.full((num,), scale),
        torch.tensor([shift] * num),
        height,
        width,
    )
    grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
    return functional.grid_sample(x, grid, align_corners=False)


def still(**overrides):
    settings = dict(
        rotation=0.0, translate=0.0, scale=(1.0, 1.0), noise_std=0.0, cutout=0
    )
    settings.update(overrides)
    return ViewAugmentation(**settings)


def test_affine_identity():
    x = torch.rand(3, 2, 5, 7)
    torch.testing.assert_close(warp(x), x)


@pytest.mark.parametrize("angle, turns", [(90.0, 1), (-90.0, -1), (180.0, 2)])
def test_affine_rotation_matches_rot90(angle, turns):
    # Reference: torch.rot90 turns counter-clockwise as displayed for k > 0.
    x = torch.rand(2, 3, 6, 6)
    expected = torch.rot90(x, turns, dims=(-2, -1))
    torch.testing.assert_close(warp(x, angle=angle), expected)


def test_affine_rotation_non_square():
    # Hand-built reference: a 4 x 2 bar in a 4 x 8 image, centred, becomes a
    # 2 x 4 bar after a quarter turn, so the rotation keeps pixel lengths.
    x = torch.zeros(1, 1, 4, 8)
    x[..., 1:3, 2:6] = 1.0
    expected = torch.zeros(1, 1, 4, 8)
    expected[..., 0:4, 3:5] = 1.0
    torch.testing.assert_close(warp(x, angle=90.0), expected)


def test_affine_shift_one_pixel():
    # Reference: shifting by whole pixels moves values, with zeros moving in.
    x = torch.rand(2, 1, 5, 6)
    right = torch.zeros_like(x)
    right[..., :, 1:] = x[..., :, :-1]
    down = torch.zeros_like(x)
    down[..., 2:, :] = x[..., :-2, :]
    torch.testing.assert_close(warp(x, shift=(1.0, 0.0)), right)
    torch.testing.assert_close(warp(x, shift=(0.0, 2.0)), down)


def test_affine_zoom_linear_ramp():
    # Hand computation: bilinear sampling reproduces a linear ramp exactly, and a
    # zoom by s about the centre maps the ramp value u (pixel-centred column
    # coordinate) to u / s away from the border.
    width = 8
    u = torch.arange(width) + 0.5 - width / 2
    x = u.expand(1, 1, width, width).clone()
    out = warp(x, scale=2.0)
    torch.testing.assert_close(out[..., 2:6, 2:6], (u / 2.0)[2:6].expand(1, 1, 4, 4))


def test_augmentation_noop_returns_input():
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(still()(x), x, rtol=0, atol=0)


def test_augmentation_seeded_reproducible():
    augment = ViewAugmentation()
    x = torch.rand(16, 1, 8, 8)
    first = augment(x, generator=torch.Generator().manual_seed(7))
    again = augment(x, generator=torch.Generator().manual_seed(7))
    other = augment(x, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)
    assert first.shape == x.shape


def test_augmentation_keeps_float32():
    x = torch.rand(4, 1, 8, 8, dtype=torch.float32)
    out = ViewAugmentation()(x, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32


def test_augmentation_noise_std():
    # Reference: the sample standard deviation of N(0, sigma^2) noise has
    # standard error sigma / sqrt(2 n); the bound is 5 standard errors.
    sigma = 0.3
    x = torch.zeros(500, 1, 8, 8)
    out = still(noise_std=sigma)(x, generator=torch.Generator().manual_seed(0))
    count = out.numel()
    assert abs(out.std().item() - sigma) < 5 * sigma / math.sqrt(2 * count)
    assert abs(out.mean().item()) < 5 * sigma / math.sqrt(count)


def test_cutout_erases_clipped_square():
    x = torch.ones(400, 2, 8, 8)
    out = still(cutout=3, cutout_p=1.0)(x, generator=torch.Generator().manual_seed(1))
    erased = out == 0
    # The same square in every channel.
    assert torch.equal(erased[:, 0], erased[:, 1])
    rows = erased[:, 0].any(dim=2).sum(dim=1)
    cols = erased[:, 0].any(dim=1).sum(dim=1)
    # Hand count: the erased pixels form a rows x cols box. A 3-pixel square
    # centred on row r covers rows r-1..r+1, so a side shrinks to 2 when the
    # centre lies on the first or last row or column.
    assert torch.equal(erased[:, 0].sum(dim=(1, 2)), rows * cols)
    assert set(rows.tolist()) == {2, 3}
    assert set(cols.tolist()) == {2, 3}


def test_cutout_probability():
    # Reference: the number of erased images is Binomial(n, p); 5 standard errors.
    num, p = 2000, 0.3
    x = torch.ones(num, 1, 8, 8)
    out = still(cutout=2, cutout_p=p)(x, generator=torch.Generator().manual_seed(2))
    fraction = (out == 0).flatten(1).any(dim=1).double().mean().item()
    assert abs(fraction - p) < 5 * math.sqrt(p * (1 - p) / num)


def test_cutout_disabled_when_p_zero():
    x = torch.ones(50, 1, 8, 8)
    out = still(cutout=2, cutout_p=0.0)(x)
    assert torch.equal(out, x)


def test_border_padding_keeps_constant_image():
    x = torch.full((20, 1, 8, 8), 0.5)
    augment = ViewAugmentation(noise_std=0.0, cutout=0, padding_mode="border")
    out = augment(x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, x)


def test_zeros_padding_moves_in_zeros():
    # A shift of up to 2 pixels moves zeros into a constant image, and the warp
    # never creates values outside the input range.
    x = torch.ones(50, 1, 8, 8)
    augment = still(translate=2.0)
    out = augment(x, generator=torch.Generator().manual_seed(4))
    assert out.min() >= 0
    assert out.max() <= 1 + 1e-12
    assert (out < 1).flatten(1).any(dim=1).all()


def test_make_views_independent_and_reproducible():
    x = torch.rand(8, 1, 8, 8)
    augment = ViewAugmentation()
    view, view_prime = make_views(x, augment, torch.Generator().manual_seed(5))
    again, again_prime = make_views(x, augment, torch.Generator().manual_seed(5))
    assert not torch.allclose(view, view_prime)
    torch.testing.assert_close(view, again, rtol=0, atol=0)
    torch.testing.assert_close(view_prime, again_prime, rtol=0, atol=0)


def test_noise_augmentation_statistics():
    # Reference: masked fraction ~ Binomial(n, p) and noise std as above;
    # bounds of 5 standard errors.
    p, sigma = 0.2, 0.1
    x = torch.ones(1000, 50)
    out = NoiseAugmentation(noise_std=sigma, dropout_p=p)(
        x, generator=torch.Generator().manual_seed(6)
    )
    masked = out == 0
    count = x.numel()
    assert abs(masked.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / count)
    noise = out[~masked] - 1.0
    assert abs(noise.std().item() - sigma) < 5 * sigma / math.sqrt(2 * noise.numel())


def test_noise_augmentation_views_differ():
    x = torch.rand(10, 4)
    view, view_prime = make_views(x, NoiseAugmentation(), torch.Generator())
    assert view.shape == x.shape
    assert not torch.allclose(view, view_prime)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rotation=-1.0), "rotation must be a finite number >= 0"),
        (dict(translate=float("inf")), "translate must be a finite number >= 0"),
        (dict(noise_std=float("nan")), "noise_std must be a finite number >= 0"),
        (dict(scale=(1.2, 1.0)), r"0 < min <= max"),
        (dict(scale=(0.0, 1.0)), r"0 < min <= max"),
        (dict(scale=1.0), "pair"),
        (dict(cutout=-1), "cutout must be an integer"),
        (dict(cutout=1.5), "cutout must be an integer"),
        (dict(cutout_p=1.5), r"probability in \[0, 1\]"),
        (dict(padding_mode="wrap"), "padding_mode must be one of"),
    ],
)
def test_augmentation_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViewAugmentation(**kwargs)


def test_augmentation_rejects_bad_input():
    augment = ViewAugmentation()
    with pytest.raises(ValueError, match="4 dimensions"):
        augment(torch.rand(8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        augment(torch.ones(2, 1, 8, 8, dtype=torch.int64))


def test_noise_augmentation_rejects_bad_settings():
    with pytest.raises(ValueError, match="dropout_p must be < 1"):
        NoiseAugmentation(dropout_p=1.0)
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0"):
        NoiseAugmentation(noise_std=-0.1)


def test_noise_augmentation_rejects_scalar():
    with pytest.raises(ValueError, match=r"shape \(N, \.\.\.\)"):
        NoiseAugmentation()(torch.tensor(1.0))
