"""Keeping VQA-RAD's images out of pretraining: VQA-RAD images come from MedPix (same synpic ids),
so an encoder for VQA-RAD must not be pretrained on them."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from medmm.data.schema import Sample
from medmm.errors import BadInputError, MedmmError

log = logging.getLogger("medmm.tasks.pretrain")
_SYNPIC = re.compile(r"synpic\d+")


def vqa_rad_synpics(root: str | Path) -> set[str]:
    """synpic ids of every image in a VQA-RAD root's image folder."""
    folder = Path(root) / "VQA_RAD Image Folder"
    if not folder.is_dir():
        raise BadInputError(folder, "VQA-RAD image folder not found (model.exclude_vqa_rad must be a VQA-RAD root)")
    ids = {p.stem for p in folder.glob("synpic*")}
    if not ids:
        raise BadInputError(folder, "no synpic* images: nothing to exclude (wrong folder?)")
    return ids


def drop_vqa_rad_images(samples: list[Sample], vqa_rad_root: str | Path) -> list[Sample]:
    """`samples` minus those whose image file name holds a synpic id of the VQA-RAD root's images.
    MedmmError when nothing is left."""
    exclude = vqa_rad_synpics(vqa_rad_root)

    def excluded(s: Sample) -> bool:
        m = _SYNPIC.search(Path(str(s.images[0].path)).name) if s.images and s.images[0].path else None
        return m is not None and m.group(0) in exclude

    kept = [s for s in samples if not excluded(s)]
    if not kept:
        raise MedmmError(f"all {len(samples)} training images are VQA-RAD images ({vqa_rad_root}); nothing to pretrain on")
    log.info("left out %d VQA-RAD images of %d training images", len(samples) - len(kept), len(samples))
    return kept
