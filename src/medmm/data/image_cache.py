"""Images read and preprocessed once: the per-file cache the diagnosis, VQA, retrieval and report tasks share.

Reading and resizing an image costs far more than a training step on cached features, and every
epoch asks for the same files, so each task keeps its encoder's preprocessed input per image file
(`build_transform(spec)` for the encoder's declared `ImageInputSpec`). Images given as in-memory
arrays have no file to key on: they are preprocessed on every call unless the caller names a key.
A file that cannot be decoded or has an unusable shape is a `BadInputError` naming the file.

The cache is a least-recently-used store bounded in bytes (``max_bytes``; default from the
environment variable ``MEDMM_IMAGE_CACHE_MB``, else 2048 MB per process), so a dataset larger than
memory evicts old images instead of growing without bound. For such datasets, `medmm data pack`
stores every image already decoded and resized on disk, where the OS page cache shares it between
data-loader workers (see docs/shards.md).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from medmm.data.schema import ImageRef
from medmm.data.transforms import ImageInputSpec, build_transform
from medmm.errors import BadInputError


class PreprocessedImages:
    """`get(ref)` -> the image preprocessed for one encoder input spec, cached by file path."""

    def __init__(self, spec: ImageInputSpec, max_bytes: int | None = None):
        self.spec = spec
        self.transform = build_transform(spec)
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("MEDMM_IMAGE_CACHE_MB", "2048")) * 2**20)
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, ref: ImageRef, key: str | None = None) -> np.ndarray:
        """The preprocessed image (channels, H, W) float32; cached under the file path, else under
        `key` when given (an in-memory array of a known sample), else not cached."""
        from medmm.data.io import read_image

        key = str(ref.path) if ref.path is not None else key
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            arr = np.asarray(ref.array) if ref.array is not None else read_image(ref.path)
            x = self.transform(arr)
        except BadInputError:
            raise
        except (ValueError, OSError) as exc:  # a decodable file of an unusable shape or type
            raise BadInputError(str(ref.path or key or "<in-memory image>"), f"cannot use image: {exc}") from exc
        if key is not None and x.nbytes <= self.max_bytes:
            self._cache[key] = x
            self.nbytes += x.nbytes
            while self.nbytes > self.max_bytes:  # evict the least recently used
                _, old = self._cache.popitem(last=False)
                self.nbytes -= old.nbytes
        return x

    def clear(self) -> None:
        """Forget every cached image (e.g. to time reading them afresh)."""
        self._cache.clear()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._cache)
