"""Deterministic, torch-free image preprocessing: channels, resize, intensity scaling, normalisation.

Everything here is plain numpy + PIL, so the same input gives the same output bytes on every
machine and in every data-loader worker. A model declares what it needs (size, channels,
mean/std) and `preprocess_image` builds its input from any array `read_image` returns.

Conventions: images are (H, W) or (H, W, C) numpy arrays; sizes are (height, width) or one int
for a square; the output of `preprocess_image` is float32 (C, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# ITU-R BT.601 luma weights, the same ones PIL uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        if len(size) != 2:
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
        h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {(h, w)}")
    return h, w


def _check_image(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"expected an image of shape (H, W) or (H, W, 3|4), got {arr.shape}")
    return arr


def to_channels(arr: np.ndarray, n: int) -> np.ndarray:
    """Convert to n channels: n=1 gives (H, W) grayscale (BT.601 luma), n=3 gives (H, W, 3).

    Alpha channels are dropped. Integer inputs keep their dtype (luma is rounded).
    """
    if n not in (1, 3):
        raise ValueError(f"n must be 1 or 3, got {n}")
    arr = _check_image(arr)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if n == 3:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=-1)) if arr.ndim == 2 else arr
    if arr.ndim == 2:
        return arr
    gray = arr.astype(np.float64) @ _LUMA
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(gray), info.min, info.max).astype(arr.dtype)
    return gray.astype(arr.dtype)


def to_unit_range(arr: np.ndarray) -> np.ndarray:
    """Scale intensities to float32 in [0, 1].

    uint8 is divided by 255. Any other input already inside [0, 1] (a windowed DICOM) is kept;
    anything else (uint16 PNG/TIFF, Hounsfield units) is min-max scaled per image, because its
    stored range says nothing reliable about the display range. A constant image becomes 0.
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("image contains NaN or infinite values")
    lo, hi = float(out.min()), float(out.max())
    if lo >= 0.0 and hi <= 1.0:
        return out
    if hi == lo:
        return np.zeros_like(out)
    return ((out - lo) / (hi - lo)).astype(np.float32)


def _resize_plane(plane: np.ndarray, h: int, w: int, resample: Image.Resampling) -> np.ndarray:
    # Mode "F" (32-bit float) keeps full precision for any dtype; PIL's bilinear filter widens its
    # support when shrinking, so downsampling is antialiased.
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), resample=resample), dtype=np.float32)


def resize(arr: np.ndarray, size: int | Sequence[int], *, mask: bool = False) -> np.ndarray:
    """Resize to ``size`` = (height, width) (or an int for a square).

    Images use PIL bilinear interpolation and come back as float32 (uint8 stays uint8, rounded);
    masks (``mask=True``) use nearest neighbour and keep their dtype and label values.
    """
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C), got shape {arr.shape}")
    h, w = _size_hw(size)
    if arr.shape[:2] == (h, w):
        return arr.copy()
    resample = Image.Resampling.NEAREST if mask else Image.Resampling.BILINEAR
    if mask and np.issubdtype(arr.dtype, np.integer) and arr.size and np.abs(arr).max() > 2**24:
        raise ValueError("mask label values above 2**24 cannot be resized exactly")
    planes = [arr] if arr.ndim == 2 else [arr[..., c] for c in range(arr.shape[-1])]
    out = [_resize_plane(p, h, w, resample) for p in planes]
    res = out[0] if arr.ndim == 2 else np.stack(out, axis=-1)
    if mask or arr.dtype == np.bool_:
        return res.astype(arr.dtype)
    if arr.dtype == np.uint8:
        return np.clip(np.rint(res), 0, 255).astype(np.uint8)
    return res


def normalize(arr: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """(x - mean) / std per channel (last axis of (H, W, C); scalar for (H, W)), as float32."""
    x = np.asarray(arr, dtype=np.float32)
    channels = 1 if x.ndim == 2 else x.shape[-1]
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    s = np.asarray(std, dtype=np.float32).reshape(-1)
    for name, v in (("mean", m), ("std", s)):
        if v.size not in (1, channels):
            raise ValueError(f"{name} has {v.size} values for an image with {channels} channel(s)")
    if np.any(s <= 0):
        raise ValueError(f"std must be positive, got {std}")
    return ((x - m) / s).astype(np.float32)


def preprocess_image(
    arr: np.ndarray,
    size: int | Sequence[int],
    in_channels: int = 3,
    mean: float | Sequence[float] = 0.5,
    std: float | Sequence[float] = 0.5,
) -> np.ndarray:
    """Any image from `read_image` -> model input: float32 (in_channels, H, W), normalised.

    Steps: channel conversion (`to_channels`), intensity to [0, 1] (`to_unit_range`), bilinear
    resize to ``size`` (`resize`), then (x - mean) / std per channel.
    """
    # Grayscale is resized once and replicated afterwards: 3x less work, identical result.
    x = to_channels(arr, 1) if in_channels == 1 or np.ndim(arr) == 2 else to_channels(arr, 3)
    x = resize(to_unit_range(x), size)
    if in_channels == 3 and x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    x = normalize(x, mean, std)
    x = x[None] if x.ndim == 2 else np.transpose(x, (2, 0, 1))
    return np.ascontiguousarray(x, dtype=np.float32)


def preprocess_mask(arr: np.ndarray, size: int | Sequence[int], *, binary: bool = True) -> np.ndarray:
    """A mask (H, W) -> (H', W') by nearest-neighbour resize.

    ``binary=True`` returns uint8 {0, 1} (nonzero = foreground, as in `MaskRef`); otherwise the
    label values and dtype are kept (multi-class label maps).
    """
    m = np.asarray(arr)
    if m.ndim == 3 and m.shape[-1] in (3, 4):
        m = m[..., :3].max(axis=-1)  # masks saved as RGB: any lit channel marks foreground
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"expected a mask of shape (H, W), got {np.asarray(arr).shape}")
    if binary:
        m = (m != 0).astype(np.uint8)
    return resize(m, size, mask=True)
