"""A frozen image encoder's features, computed once per image: `FrozenImageFeatures`.

A frozen encoder in eval mode maps the same preprocessed image to the same features every
epoch, so a task whose image tower is frozen (VQA, report generation, diagnosis with
``image.freeze``) needs to run it once per distinct image: an epoch then costs only the trainable
parts. Features are kept in a per-process in-memory store, least recently used first out beyond
``MEDMM_FEATURE_MEMORY_MB`` (default 4096), or, where ``$MEDMM_FEATURE_CACHE`` names a folder,
in the bounded on-disk cache shared by loader workers and runs (`medmm.models.feature_cache`,
keyed by the encoder's weights, the preprocessing and the image's checksum).

Features come from the store only when that is safe; otherwise the encoder runs as usual:

* every parameter of the encoder is frozen and the encoder is in eval mode (no dropout, fixed
  batch-norm statistics; the tasks' ``train()`` keeps a frozen encoder in eval mode);
* the batch's images are a deterministic function of their key: the caller says
  ``augmented=True`` for a batch that random augmentation changed (then nothing is read or kept);
* the image has a key: its file path, or `array_key` of an in-memory image (None: computed).

The preprocessing (e.g. ``{"input_spec": spec.to_dict()}``) is part of the key: another one drops
the in-memory entries, and it is in the on-disk cache's encoder identity. The owner calls
`reset()` whenever the encoder's weights may have changed (pretrained weights loaded, a run's
weights restored, the encoder rebuilt): on next use the encoder's weights checksum is compared
with the one the features were made with, and they are forgotten if it differs (a best
checkpoint reloaded after training holds the same frozen weights: nothing is recomputed).

    feats = FrozenImageFeatures()
    img = feats(encoder, batch["images"], batch["image_paths"], {"input_spec": spec.to_dict()})
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medmm.data.schema import ImageRef
from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageFeatures

ARRAY_PREFIX = "sha256:"  # a key naming an in-memory image by its pixels' checksum


def array_key(ref: ImageRef) -> str | None:
    """The key of an image: its file path, else ``sha256:<checksum of the pixels>``."""
    from medmm.models.feature_cache import image_checksum

    if ref.path is not None:
        return str(ref.path)
    if ref.array is None:
        return None
    return ARRAY_PREFIX + image_checksum(ref)


class FrozenImageFeatures:
    """`self(encoder, images, keys, preprocessing)` -> `ImageFeatures`, cached per key (module docstring).

    Args:
        max_bytes: bound of the in-memory store (default ``MEDMM_FEATURE_MEMORY_MB`` or 4096 MB).
    """

    def __init__(self, max_bytes: int | None = None):
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("MEDMM_FEATURE_MEMORY_MB", "4096")) * 2**20)
        if max_bytes <= 0:
            raise MedmmError(f"frozen image features: max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.memory: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.nbytes = 0
        self.clear()

    def reset(self) -> None:
        """The encoder's weights may have changed: checked on next use, features forgotten if so."""
        self._stale = True

    def clear(self) -> None:
        """Forget every feature; the on-disk cache is reopened under the weights' identity on next use."""
        self.memory.clear()
        self.nbytes = 0
        self.disk: Any = None
        self._opened_for: int | None = None  # id() of the encoder (a weakref would not pickle)
        self._preprocessing: dict[str, Any] | None = None
        self._weights: tuple[str, str] | None = None  # (state checksum, device type) the features were made with
        self._stale = False
        self._sha: dict[str, str] = {}

    @staticmethod
    def cacheable(encoder: nn.Module, augmented: bool = False) -> bool:
        """Whether `encoder`'s features may come from the store: frozen, eval mode, not augmented."""
        return not augmented and not encoder.training and not any(p.requires_grad for p in encoder.parameters())

    def __call__(
        self,
        encoder: nn.Module,
        images: torch.Tensor,
        keys: Sequence[str | Path | None],
        preprocessing: Mapping[str, Any],
        *,
        augmented: bool = False,
    ) -> ImageFeatures:
        """`encoder(images)`, each image's features read from the store by its key where safe."""
        if len(keys) != len(images):
            raise MedmmError(f"frozen image features: {len(keys)} keys for {len(images)} images")
        if not self.cacheable(encoder, augmented) or all(k is None for k in keys):
            return encoder(images)  # nothing to read or keep: no round trip through the store
        self._open(encoder, preprocessing)
        names = [str(k) if k is not None else None for k in keys]
        # an image in the batch twice (several questions about one image) is encoded once
        first = {k: i for i, k in reversed(list(enumerate(names))) if k is not None}
        uniq = [i for i, k in enumerate(names) if k is None or first[k] == i]
        with torch.no_grad():
            if len(uniq) < len(names):
                sub = self._features(encoder, images[uniq], [names[i] for i in uniq])
                pos = {i: j for j, i in enumerate(uniq)}
                rows = [pos[i] if k is None else pos[first[k]] for i, k in enumerate(names)]
                return ImageFeatures(pooled=sub.pooled[rows], tokens=sub.tokens[rows])
            return self._features(encoder, images, names)

    def _features(self, encoder: nn.Module, images: torch.Tensor, keys: list[str | None]) -> ImageFeatures:
        if self.disk is not None:
            return self._from_disk(encoder, images, keys)
        return self._from_memory(encoder, images, keys)

    def _open(self, encoder: nn.Module, preprocessing: Mapping[str, Any]) -> None:
        """Start afresh for another encoder or preprocessing; open the on-disk cache (None when
        ``$MEDMM_FEATURE_CACHE`` is unset) under the encoder's weights as they are now."""
        prep = dict(preprocessing)
        same = self._opened_for == id(encoder) and self._preprocessing == prep
        if same and not self._stale:
            return
        from medmm.models.feature_cache import open_feature_cache, state_checksum

        param = next(iter(encoder.parameters()), None)
        weights = (state_checksum(encoder), param.device.type if param is not None else "cpu")
        if same and weights == self._weights:
            self._stale = False
            return
        self.clear()
        self.disk = open_feature_cache(encoder, prep)
        self._opened_for, self._preprocessing, self._weights = id(encoder), prep, weights

    def _from_disk(self, encoder: nn.Module, images: torch.Tensor, keys: list[str | None]) -> ImageFeatures:
        from medmm.models.feature_cache import cached_image_features, image_checksum

        for k in keys:
            if k is not None and k not in self._sha:
                self._sha[k] = k[len(ARRAY_PREFIX):] if k.startswith(ARRAY_PREFIX) else image_checksum(ImageRef(path=k))
        return cached_image_features(self.disk, encoder, images, [self._sha[k] if k is not None else None for k in keys])

    def _from_memory(self, encoder: nn.Module, images: torch.Tensor, keys: list[str | None]) -> ImageFeatures:
        rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, k in enumerate(keys):
            if k is not None and k in self.memory:
                self.memory.move_to_end(k)
                rows[i] = self.memory[k]
        todo = [i for i in range(len(keys)) if i not in rows]
        if todo:
            feats = encoder(images[todo])
            for j, i in enumerate(todo):
                # a copy: a view of the batch's tensor would keep the whole batch alive (and uncounted)
                rows[i] = (feats.tokens[j].detach().to("cpu", copy=True), feats.pooled[j].detach().to("cpu", copy=True))
                if keys[i] is not None:
                    self._put(keys[i], rows[i])
        dev = images.device
        return ImageFeatures(pooled=torch.stack([rows[i][1] for i in range(len(keys))]).to(dev),
                             tokens=torch.stack([rows[i][0] for i in range(len(keys))]).to(dev))

    def _put(self, key: str, row: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Keep one image's features; evict the least recently used beyond `max_bytes`."""
        size = sum(t.element_size() * t.numel() for t in row)
        if size > self.max_bytes:
            return
        old = self.memory.pop(key, None)
        if old is not None:
            self.nbytes -= sum(t.element_size() * t.numel() for t in old)
        self.memory[key] = row
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, gone = self.memory.popitem(last=False)
            self.nbytes -= sum(t.element_size() * t.numel() for t in gone)
