"""How one Sample is stored in a shard, and the lazy image that reads it back.

The JSON record holds every Sample field except pixels (images and masks are ``.npy`` members
of the same tar key); each image/mask entry also records where its raw pixel bytes start in
the tar file, so a reader seeks straight to them without scanning the shard.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from medmm.data.schema import Box, ImageRef, LabelState, MaskRef, Sample
from medmm.errors import BadInputError


class ShardImage:
    """A uint8 array stored raw inside a tar shard, read only when asked (``np.asarray(x)``).

    Small and picklable (a path and four numbers), so a data-loader worker or DDP rank holding a
    million samples holds no pixels; each read opens the file, seeks and reads ``nbytes``.
    It offers the ndarray attributes the rest of medmm uses on ``ImageRef.array``
    (``shape``, ``dtype``, ``ndim``, ``tobytes``).
    """

    __slots__ = ("path", "offset", "shape", "dtype_str")

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: str = "|u1"):
        self.path, self.offset, self.shape, self.dtype_str = str(path), int(offset), tuple(shape), dtype

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.dtype_str)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def read(self) -> np.ndarray:
        """The pixels, read from disk now."""
        buf = bytearray(self.nbytes)  # writable, so torch.from_numpy needs no copy and gives no warning
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            got = f.readinto(buf)
        if got != self.nbytes:
            raise BadInputError(self.path, f"shard truncated: {got} of {self.nbytes} bytes at offset {self.offset}")
        return np.frombuffer(buf, dtype=self.dtype).reshape(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.read()
        return arr if dtype is None else arr.astype(dtype)

    def tobytes(self) -> bytes:
        return self.read().tobytes()

    def __getstate__(self):
        return (self.path, self.offset, self.shape, self.dtype_str)

    def __setstate__(self, state) -> None:
        self.path, self.offset, self.shape, self.dtype_str = state

    def __repr__(self) -> str:
        return f"ShardImage({Path(self.path).name}@{self.offset}, shape={self.shape})"


def sample_record(s: Sample) -> dict[str, Any]:
    """Every non-pixel field of a Sample as JSON-able data (images/masks filled in by the packer)."""
    return {
        "id": s.id,
        "dataset": s.dataset,
        "split": s.split,
        "text": dict(s.text),
        "targets": dict(s.targets),
        "findings": {k: int(v) for k, v in s.findings.items()},
        "boxes": [asdict(b) for b in s.boxes],
        "patient_id": s.patient_id,
        "case_id": s.case_id,
        "study_id": s.study_id,
        "image_id": s.image_id,
        "question_id": s.question_id,
        "meta": s.meta,
    }


def _i(x: str | None) -> str | None:
    """Interned: the few distinct dataset/split/view/label strings are stored once, not per sample."""
    return sys.intern(x) if isinstance(x, str) else x


_SHAPES: dict[tuple[int, ...], tuple[int, ...]] = {}


def _shape(shape: list[int]) -> tuple[int, ...]:
    t = tuple(shape)
    return _SHAPES.setdefault(t, t)


def sample_from_record(rec: dict[str, Any], tar_path: str) -> Sample:
    """Rebuild the Sample of one packed record; pixels stay on disk as `ShardImage`s.

    Repeated strings and shapes are shared between samples: a split of a million samples is held
    in memory as metadata only, so each byte per sample counts."""
    images = [
        ImageRef(
            array=ShardImage(tar_path, im["offset"], _shape(im["shape"]), _i(im["dtype"])),  # type: ignore[arg-type]
            modality=_i(im.get("modality")),
            view=_i(im.get("view")),
            image_id=im.get("image_id"),
        )
        for im in rec["images"]
    ]
    masks = [
        MaskRef(label=_i(m["label"]), array=ShardImage(tar_path, m["offset"], _shape(m["shape"]), _i(m["dtype"])))  # type: ignore[arg-type]
        for m in rec["masks"]
    ]
    return Sample(
        id=rec["id"],
        dataset=_i(rec["dataset"]),
        split=_i(rec["split"]),
        images=images,
        text=rec["text"],
        targets={k: _i(v) for k, v in rec["targets"].items()},
        findings={k: LabelState(v) for k, v in rec["findings"].items()},
        masks=masks,
        boxes=[Box(**b) for b in rec["boxes"]],
        patient_id=rec["patient_id"],
        case_id=rec["case_id"],
        study_id=rec["study_id"],
        image_id=rec["image_id"],
        question_id=rec["question_id"],
        meta=rec["meta"],
    )
