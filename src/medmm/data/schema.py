"""One record type, `Sample`, for every task and dataset.

A dataset loader turns its public layout into a list of `Sample`s; tasks read the fields they
need. Images stay on disk (``ImageRef.path``) until a task reads them, so loading a dataset is
cheap and a bad image is found (and counted) when it is used, not hours before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np


class LabelState(IntEnum):
    """State of one observation in a report or label file. Missing = key absent."""

    NEGATIVE = 0
    POSITIVE = 1
    UNCERTAIN = -1


# Known text fields. Loaders use these keys so a config can say `text_field: clinical_notes`.
TEXT_FIELDS = (
    "report",
    "findings",
    "impression",
    "caption",
    "clinical_notes",
    "history",
    "question",
    "answer",
    "sentence",
)


@dataclass
class ImageRef:
    """One image of a sample: a file on disk or an in-memory array (H, W) or (H, W, C)."""

    path: str | None = None
    array: np.ndarray | None = None
    modality: str | None = None  # "XR", "CT", "MR", "US", "pathology", ...
    view: str | None = None  # "PA", "AP", "axial", ...
    image_id: str | None = None

    def __post_init__(self) -> None:
        if self.path is None and self.array is None:
            raise ValueError("ImageRef needs a path or an array")
        if self.path is not None:
            self.path = str(self.path)


@dataclass
class MaskRef:
    """A segmentation mask for one class: a file or an array (H, W), nonzero = foreground.

    ``box`` (x, y, w, h) places a cropped mask inside the full image when the mask file only
    covers a region (the covid_cxr segmentations_100 format).
    """

    label: str
    path: str | None = None
    array: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None


@dataclass
class Box:
    """An axis-aligned box in pixel coordinates of the full image: (x, y, width, height)."""

    label: str
    x: float
    y: float
    width: float
    height: float


@dataclass
class Sample:
    """One example for any task.

    Fields:
        id: unique within its dataset (used to trace predictions back).
        dataset, split: where it came from.
        images: zero or more images (a study may have several views).
        text: text fields keyed by a name from TEXT_FIELDS.
        targets: categorical targets by name, e.g. {"organ": "HEAD", "finding": "COVID-19"}.
        findings: multi-label observation states, e.g. {"Edema": LabelState.UNCERTAIN};
            an observation absent from the dict is missing (unknown), not negative.
        masks, boxes: segmentation masks and boxes.
        patient_id, case_id, study_id, image_id: grouping ids for leak-free splits.
        question_id: the question's paraphrase group (VQA-RAD links each paraphrase to its
            free-form question), so a split never puts one wording in train and another in test.
        meta: anything else the dataset provides (answer_type, question_type, licence, ...).
    """

    id: str
    dataset: str
    split: str
    images: list[ImageRef] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    findings: dict[str, LabelState] = field(default_factory=dict)
    masks: list[MaskRef] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    patient_id: str | None = None
    case_id: str | None = None
    study_id: str | None = None
    image_id: str | None = None
    question_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def group(self, key: str) -> str:
        """The grouping id named by key ("patient", "case", "study", "image", "question" or "id").

        Falls back to the sample id when the dataset has no such id, so every sample is its
        own group rather than silently sharing one.
        """
        value = self.id if key == "id" else getattr(self, f"{key}_id", None)
        if key not in {"id", "patient", "case", "study", "image", "question"}:
            raise ValueError(f"unknown group key {key!r}; use patient, case, study, image, question or id")
        return str(value) if value is not None else f"sample:{self.id}"

    @property
    def image_paths(self) -> list[Path]:
        return [Path(im.path) for im in self.images if im.path is not None]
