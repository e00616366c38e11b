"""Small datasets shipped inside the package, so demos and tests run without downloads.

``vqa_rad_sample/``: 102 VQA-RAD images (34 each HEAD / CHEST / ABD, longer side <= 256 px,
JPEG q85) with all 602 of their official training QA pairs, in the original VQA-RAD layout
(CC0 1.0; see its README.txt and the NOTICE file). Load it with
``load_dataset("vqa_rad", vqa_rad_sample_root(), "train")``; it has no test QA.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from medmm.errors import MedmmError


def vqa_rad_sample_root() -> Path:
    """Folder of the bundled VQA-RAD sample (a real directory, also in an installed wheel)."""
    root = Path(str(files(__name__).joinpath("vqa_rad_sample")))
    if not (root / "VQA_RAD Dataset Public.json").is_file():
        raise MedmmError(
            f"bundled VQA-RAD sample missing at {root}; the package was built without its data files "
            "(reinstall medmm, or rebuild it with scripts/make_vqa_rad_sample.py)"
        )
    return root


__all__ = ["vqa_rad_sample_root"]
