"""Images read and preprocessed once: the per-file cache the diagnosis, VQA and report tasks share.

Reading and resizing an image costs far more than a training step on cached features, and every
epoch asks for the same files, so each task keeps its encoder's preprocessed input per image file
(`preprocess_image` at the encoder's size, channels and normalisation). Images given as in-memory
arrays have no file to key on: they are preprocessed on every call unless the caller names a key.
A file that cannot be decoded or has an unusable shape is a `BadInputError` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medmm.data.schema import ImageRef
from medmm.errors import BadInputError


class PreprocessedImages:
    """`get(ref)` -> the image preprocessed for one encoder input spec, cached by file path."""

    def __init__(self, size: int | Sequence[int], channels: int, mean: Sequence[float], std: Sequence[float]):
        self.size, self.channels, self.mean, self.std = size, channels, mean, std
        self._cache: dict[str, np.ndarray] = {}

    def get(self, ref: ImageRef, key: str | None = None) -> np.ndarray:
        """The preprocessed image (channels, H, W) float32; cached under the file path, else under
        `key` when given (an in-memory array of a known sample), else not cached."""
        from medmm.data.io import read_image
        from medmm.data.transforms import preprocess_image

        key = str(ref.path) if ref.path is not None else key
        if key is not None and key in self._cache:
            return self._cache[key]
        try:
            arr = np.asarray(ref.array) if ref.array is not None else read_image(ref.path)
            x = preprocess_image(arr, self.size, self.channels, self.mean, self.std)
        except BadInputError:
            raise
        except (ValueError, OSError) as exc:  # a decodable file of an unusable shape or type
            raise BadInputError(str(ref.path or key or "<in-memory image>"), f"cannot use image: {exc}") from exc
        if key is not None:
            self._cache[key] = x
        return x

    def clear(self) -> None:
        """Forget every cached image (e.g. to time reading them afresh)."""
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)
