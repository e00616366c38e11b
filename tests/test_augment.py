"""Training-time augmentation of image batches: shapes, ranges, determinism, no flips."""

from __future__ import annotations

import pytest
import torch

from medmm.models.augment import random_affine_jitter


def _gradient_images(n: int = 4, size: int = 32) -> torch.Tensor:
    ramp = torch.linspace(-1, 1, size)
    return (ramp[None, :] + 0.5 * ramp[:, None]).expand(n, 1, size, size).clone()


def test_zero_ranges_give_back_the_images():
    x = _gradient_images()
    y = random_affine_jitter(x, max_rotate=0, max_scale=0, max_shift=0, contrast=0, brightness=0)
    assert y.shape == x.shape and torch.allclose(y, x, atol=1e-5)


def test_same_generator_seed_same_batch_and_each_image_gets_its_own_draw():
    x = _gradient_images(8)
    a = random_affine_jitter(x, generator=torch.Generator().manual_seed(1))
    b = random_affine_jitter(x, generator=torch.Generator().manual_seed(1))
    c = random_affine_jitter(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a[0], a[1])  # identical inputs, different transforms
    assert not torch.allclose(a, x, atol=1e-3)


def test_changes_stay_small_and_never_mirror_left_and_right():
    x = _gradient_images(64)
    y = random_affine_jitter(x, generator=torch.Generator().manual_seed(0))
    # Intensity: the mean moves by at most brightness + contrast * |mean| (plus border effects).
    assert (y.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() < 0.25
    # The left-to-right ramp keeps its direction in every image: no horizontal flip.
    left, right = y[..., :, :8].mean(dim=(1, 2, 3)), y[..., :, -8:].mean(dim=(1, 2, 3))
    assert bool((right > left).all())


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_affine_jitter(torch.zeros(3, 32, 32))
