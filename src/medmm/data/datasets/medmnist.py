"""MedMNIST v2 (Yang et al. 2023, CC BY 4.0) 2-D classification arrays (``<flag>.npz``).

Root is the folder holding the npz files (or one npz file). Each registered name reads one
file: ``breastmnist`` -> ``breastmnist.npz``, ``pneumoniamnist`` -> ``pneumoniamnist.npz``, and
the two modified PneumoniaMNIST copies of ../shared/data/medmnist (see its SOURCE.txt):
``pneumoniamnist_trainsubset`` -> ``pneumoniamnist_28_trainsubset_fullvaltest.npz`` and
``pneumoniamnist_balanced`` -> ``pneumoniamnist_28_balanced_subset.npz``. Naming convention for
adding a flag: register ``<flag>`` reading ``<flag>.npz`` via `_register`, with its class names.

Arrays ``{split}_images`` (N, H, W) or (N, H, W, 3) uint8 and ``{split}_labels`` (N,) or (N, 1);
splits train/val/test, a split whose arrays are absent is []. Images are in memory
(``ImageRef(array=...)``). Target ``label`` is the class name, ``meta["label_index"]`` its index.
MedMNIST has no patient ids, so every image is its own group.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from medmm.data.fields import whole_number
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError

SPLITS = ("train", "val", "test")


def _npz_path(root: Path, filename: str) -> Path:
    if root.is_file():
        return root
    path = root / filename
    if not path.is_file():
        raise BadInputError(path, "MedMNIST file not found (root must be the folder holding it, or the file)")
    return path


def load_npz_split(
    path: Path, split: str, errors: ErrorPolicy, *, name: str, classes: tuple[str, ...], modality: str
) -> list[Sample]:
    """Samples of one split of a MedMNIST-format npz file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            if f"{split}_images" not in files:
                return []
            if f"{split}_labels" not in files:
                raise BadInputError(path, f"has {split}_images but no {split}_labels")
            images, labels = data[f"{split}_images"], data[f"{split}_labels"]
    except BadInputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInputError(path, f"cannot read npz: {exc}") from exc
    if images.ndim not in (3, 4) or images.dtype != np.uint8:
        raise BadInputError(
            path, f"{split}_images has shape {images.shape} dtype {images.dtype}; expected (N, H, W[, 3]) uint8"
        )
    labels = labels.reshape(len(labels), -1)
    if labels.shape != (len(images), 1):
        raise BadInputError(
            path, f"{split}_labels has shape {labels.shape} for {len(images)} images; expected one label per image"
        )
    out: list[Sample] = []
    if labels.dtype.kind not in "iuf":
        raise BadInputError(path, f"{split}_labels has dtype {labels.dtype}; expected integer class indices")
    for i, (image, label) in enumerate(zip(images, labels[:, 0], strict=True)):
        try:
            # A float label must be a whole number: NaN or 0.7 is an error, never class 0.
            index = whole_number(label.item(), path, f"{split} image {i}: label")
            if not 0 <= index < len(classes):
                raise BadInputError(path, f"{split} image {i}: label {index} outside 0..{len(classes) - 1}")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        sample_id = f"{split}/{i}"
        out.append(
            Sample(
                id=sample_id,
                dataset=name,
                split=split,
                images=[ImageRef(array=image, modality=modality, image_id=sample_id)],
                targets={"label": classes[index]},
                image_id=sample_id,
                meta={"label_index": index, "file": path.name},
            )
        )
    return out


def _register(name: str, filename: str, classes: tuple[str, ...], modality: str, description: str) -> None:
    def loader(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
        return load_npz_split(_npz_path(root, filename), split, errors, name=name, classes=classes, modality=modality)

    loader.__name__ = f"load_{name}"
    loader.__doc__ = f"{description} ({filename})."
    register_dataset(name, splits=SPLITS, description=description, group_by="id")(loader)


# Class names as in the official MedMNIST INFO (medmnist/info.py).
_BREAST = ("malignant", "normal, benign")
_PNEUMONIA = ("normal", "pneumonia")

_register(
    "breastmnist", "breastmnist.npz", _BREAST, "US", "BreastMNIST 28 px breast ultrasound, malignant vs normal/benign"
)
_register(
    "pneumoniamnist",
    "pneumoniamnist.npz",
    _PNEUMONIA,
    "XR",
    "PneumoniaMNIST 28 px paediatric chest X-ray, official file",
)
_register(
    "pneumoniamnist_trainsubset",
    "pneumoniamnist_28_trainsubset_fullvaltest.npz",
    _PNEUMONIA,
    "XR",
    "PneumoniaMNIST copy: normal class subsampled in train, full official val/test",
)
_register(
    "pneumoniamnist_balanced",
    "pneumoniamnist_28_balanced_subset.npz",
    _PNEUMONIA,
    "XR",
    "PneumoniaMNIST copy: class-balanced subset of train/val/test",
)
