"""medmm.data.transforms: deterministic, torch-free preprocessing."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medmm.data.transforms import (
    normalize,
    preprocess_image,
    preprocess_mask,
    resize,
    to_channels,
    to_unit_range,
)

RNG = np.random.default_rng(0)


def test_to_channels_gray_rgb_roundtrip_and_luma():
    gray = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    rgb = to_channels(gray, 3)
    assert rgb.shape == (5, 6, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(to_channels(rgb, 1), gray)  # equal channels -> same gray
    pixel = np.array([[[255, 0, 0]]], dtype=np.uint8)
    assert to_channels(pixel, 1)[0, 0] == 76  # round(0.299 * 255)
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert to_channels(rgba, 3).shape == (2, 2, 3)
    assert to_channels(np.zeros((2, 2, 1), np.float32), 1).shape == (2, 2)
    with pytest.raises(ValueError):
        to_channels(gray, 2)
    with pytest.raises(ValueError):
        to_channels(np.zeros((2, 2, 5)), 3)


def test_to_unit_range_rules():
    np.testing.assert_allclose(to_unit_range(np.array([0, 255], np.uint8)), [0, 1])
    hu = np.array([-1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(to_unit_range(hu), [0, 0.5, 1])
    windowed = np.array([0.2, 0.7], np.float32)
    np.testing.assert_array_equal(to_unit_range(windowed), windowed)
    assert to_unit_range(np.full((3, 3), 7, np.uint16)).max() == 0
    with pytest.raises(ValueError):
        to_unit_range(np.array([0.0, np.nan]))


def test_resize_image_bilinear_and_mask_nearest():
    img = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))
    small = resize(img, (4, 2))
    assert small.shape == (4, 2) and small.dtype == np.float32
    assert small[0, 0] < small[0, 1]  # the ramp survives
    up = resize(np.array([[0, 255]], np.uint8), (1, 4))
    assert up.dtype == np.uint8 and up[0, 0] == 0 and up[0, -1] == 255 and 0 < up[0, 1] < 255
    labels = RNG.integers(0, 5, (9, 9)).astype(np.int64)
    out = resize(labels, 20, mask=True)
    assert out.dtype == np.int64 and set(np.unique(out)) <= set(np.unique(labels))
    rgb = RNG.random((10, 12, 3), dtype=np.float32)
    assert resize(rgb, (5, 6)).shape == (5, 6, 3)
    with pytest.raises(ValueError):
        resize(img, (0, 3))


def test_normalize_per_channel():
    x = np.ones((2, 2, 3), np.float32)
    out = normalize(x, [0.5, 1.0, 0.0], [0.5, 1.0, 2.0])
    np.testing.assert_allclose(out[0, 0], [1.0, 0.0, 0.5])
    with pytest.raises(ValueError):
        normalize(x, [0.1, 0.2], 1.0)
    with pytest.raises(ValueError):
        normalize(x, 0.0, 0.0)


def test_preprocess_image_shapes_dtypes_and_values():
    gray = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    out = preprocess_image(gray, 16, in_channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    assert out.shape == (3, 16, 16) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    one = preprocess_image(RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8), (8, 12), in_channels=1)
    assert one.shape == (1, 8, 12)
    const = preprocess_image(np.full((4, 4), 255, np.uint8), 4, in_channels=1, mean=0.5, std=0.5)
    np.testing.assert_allclose(const, 1.0)  # (1 - 0.5) / 0.5


def test_gray_shortcut_equals_explicit_replication():
    gray = RNG.integers(0, 256, (33, 47), dtype=np.uint8)
    fast = preprocess_image(gray, (20, 16), 3, mean=[0.4, 0.5, 0.6], std=[0.2, 0.3, 0.4])
    slow = preprocess_image(to_channels(gray, 3), (20, 16), 3, mean=[0.4, 0.5, 0.6], std=[0.2, 0.3, 0.4])
    np.testing.assert_array_equal(fast, slow)


def test_preprocess_is_byte_deterministic():
    img = RNG.integers(0, 65535, (37, 53), dtype=np.uint16)
    digests = {hashlib.sha256(preprocess_image(img.copy(), (24, 20), 3).tobytes()).hexdigest() for _ in range(3)}
    assert len(digests) == 1


def test_preprocess_mask_binary_and_multiclass():
    m = np.zeros((10, 10), np.uint8)
    m[2:6, 3:8] = 255
    out = preprocess_mask(m, 5)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
    labels = np.arange(100).reshape(10, 10) % 3
    assert set(np.unique(preprocess_mask(labels, 7, binary=False))) <= {0, 1, 2}
    rgb_mask = np.zeros((4, 4, 3), np.uint8)
    rgb_mask[0, 0, 1] = 200
    assert preprocess_mask(rgb_mask, 4)[0, 0] == 1
    with pytest.raises(ValueError):
        preprocess_mask(np.zeros((2, 2, 2, 2)), 4)


@settings(max_examples=40, deadline=None)
@given(
    img=arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20))),
    h=st.integers(1, 24),
    w=st.integers(1, 24),
)
def test_property_preprocess_output_is_finite_and_bounded(img, h, w):
    out = preprocess_image(img, (h, w), in_channels=3, mean=0.5, std=0.5)
    assert out.shape == (3, h, w) and np.all(np.isfinite(out))
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5
