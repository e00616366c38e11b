"""What the report generator reads from a study, cached in memory after the first read.

A study (`Sample`) gives the task three image-derived inputs and one text-derived one:

* its views (at most `max_images`), preprocessed for the image encoder (`views`);
* its retrieval key: the training-free thumbnail embedding
  (`medmm.knowledge.report_store.thumbnail_embedding`, `thumbnail`) or a trained, frozen key
  (`retrieval.FrozenImageKey`, `key`), both computed from the raw views;
* the clinical labels of its report (`medmm.metrics.clinical.label_report`, `labels`), the
  targets of the findings head.

Reading and preprocessing dominate later epochs otherwise, so each result is cached: views by
image path, keys by study id + image paths, labels by study id. Images held in memory
(`ImageRef.array`, no path) are never cached, since nothing identifies them. The caches grow with
the dataset (see docs/report-generation.md, Notes).

    inputs = StudyInputs(max_images=2, spec=ImageInputSpec(size=64, in_channels=1, mean=(0.5,), std=(0.25,)))
    x = inputs.views(sample)                      # [(1, 64, 64) float32 per view]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medmm.data.image_cache import PreprocessedImages
from medmm.data.schema import LabelState, Sample
from medmm.data.transforms import ImageInputSpec
from medmm.errors import BadInputError
from medmm.knowledge.report_store import thumbnail_embedding

if TYPE_CHECKING:
    from medmm.tasks.report.retrieval import FrozenImageKey


class StudyInputs:
    """Preprocessed views, retrieval keys and report labels of studies (module docstring).

    Args:
        max_images: views of a study used (the first ones).
        spec: the image encoder's declared input (`medmm.data.transforms.build_transform`).
    """

    def __init__(self, max_images: int, spec: ImageInputSpec):
        self.max_images = max_images
        self._images = PreprocessedImages(spec)
        self._thumb_cache: dict[str, np.ndarray] = {}
        self._key_cache: dict[str, np.ndarray] = {}
        self._label_cache: dict[str, dict[str, LabelState]] = {}

    def clear_images(self) -> None:
        """Forget the cached views, thumbnails and keys (e.g. to time reading them afresh)."""
        self._images.clear()
        self._thumb_cache.clear()
        self._key_cache.clear()

    def arrays(self, s: Sample) -> list[np.ndarray]:
        """The study's views as read (not preprocessed, not cached)."""
        from medmm.data.io import read_image

        if not s.images:
            raise BadInputError(s.id, "study has no image (image files missing?)")
        out = []
        for ref in s.images[: self.max_images]:
            arr = np.asarray(ref.array) if ref.array is not None else read_image(ref.path)
            out.append(arr)
        return out

    def _study_key(self, s: Sample) -> str:
        return s.id + "|" + "|".join(str(r.path) for r in s.images[: self.max_images])

    def thumbnail(self, s: Sample) -> np.ndarray:
        """The study's thumbnail embedding (views averaged), cached by image paths."""
        if any(r.path is None for r in s.images):  # in-memory views: recomputed, never kept (no unbounded cache)
            return thumbnail_embedding(self.arrays(s))
        key = self._study_key(s)
        if key not in self._thumb_cache:
            self._thumb_cache[key] = thumbnail_embedding(self.arrays(s))
        return self._thumb_cache[key]

    def key(self, s: Sample, retrieval_key: FrozenImageKey) -> np.ndarray:
        """The trained retrieval key of a study (views averaged), cached by image paths."""
        if any(r.path is None for r in s.images):  # in-memory views: recomputed, never kept (no unbounded cache)
            return retrieval_key.embed(self.arrays(s))
        key = self._study_key(s)
        if key not in self._key_cache:
            self._key_cache[key] = retrieval_key.embed(self.arrays(s))
        return self._key_cache[key]

    def views(self, s: Sample) -> list[np.ndarray]:
        """The study's views preprocessed for the image encoder, cached by image path."""
        if not s.images:
            raise BadInputError(s.id, "study has no image (image files missing?)")
        return [self._images.get(ref) for ref in s.images[: self.max_images]]

    def labels(self, sid: str, text: str) -> dict[str, LabelState]:
        """Clinical labels of study `sid`'s report `text`, cached by study id."""
        from medmm.metrics.clinical import label_report

        if sid not in self._label_cache:
            self._label_cache[sid] = label_report(text)
        return self._label_cache[sid]


__all__ = ["StudyInputs"]
