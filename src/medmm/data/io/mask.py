"""`read_mask`: a `MaskRef` (file or array, optionally a crop placed by its box) -> full-size binary mask."""

from __future__ import annotations

import numpy as np

from medmm.data.schema import MaskRef
from medmm.errors import BadInputError


def read_mask(ref: MaskRef, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Binary uint8 (H, W) mask, 1 = foreground (any nonzero channel of the stored mask).

    When ``ref.box = (left, top, width, height)`` the stored mask is a crop of that region
    (the covid_cxr segmentations_100 format): it is pasted at (top, left) into a zero mask of
    ``image_shape`` = (H, W) of the full image; parts falling outside the image are clipped
    (box sizes of rescaled copies can be off by a pixel). Without a box the mask must already
    have ``image_shape`` when one is given.
    """
    from medmm.data.io.image import read_image

    where = ref.path
    if ref.array is not None:
        raw = np.asarray(ref.array)
    elif ref.path is not None:
        raw = read_image(ref.path)
    else:
        raise ValueError(f"MaskRef {ref.label!r} has neither path nor array")
    if raw.ndim == 3:
        raw = raw.max(axis=-1) if raw.dtype != np.bool_ else raw.any(axis=-1)
    if raw.ndim != 2:
        raise BadInputError(where, f"mask {ref.label!r} has shape {raw.shape}; expected (H, W) or (H, W, C)")
    crop = (raw != 0).astype(np.uint8)
    if ref.box is None:
        if image_shape is not None and crop.shape != tuple(image_shape):
            raise BadInputError(where, f"mask {ref.label!r} is {crop.shape}, image is {tuple(image_shape)}")
        return crop
    if image_shape is None:
        raise ValueError(f"mask {ref.label!r} is a crop placed by a box; pass image_shape=(H, W) of the full image")
    h, w = int(image_shape[0]), int(image_shape[1])
    left, top = int(round(ref.box[0])), int(round(ref.box[1]))
    full = np.zeros((h, w), np.uint8)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + crop.shape[0], h), min(left + crop.shape[1], w)
    if y1 <= y0 or x1 <= x0:
        raise BadInputError(where, f"mask {ref.label!r} box {ref.box} lies outside the {h}x{w} image")
    full[y0:y1, x0:x1] = crop[y0 - top : y1 - top, x0 - left : x1 - left]
    return full
