"""Any folder of DICOM files: one Sample per ``*.dcm`` / ``*.dicom`` file found recursively.

Split "all" only (DICOM folders carry no split; split by patient with medmm.data.splits).
Only headers are read here (pydicom with deferred large values): patient id (PatientID),
study id (StudyInstanceUID), modality, view (ViewPosition). Pixels are decoded when a task
reads the image with `medmm.data.io.read_image`. Files that are not DICOM or hold no pixel
data are bad records (skipped and counted with ``skip_bad=True``).
"""

from __future__ import annotations

from pathlib import Path

from medmm.data.io import read_dicom_info
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError

SUFFIXES = (".dcm", ".dicom")


@register_dataset(
    "dicom_folder",
    splits=("all",),
    description="every DICOM file under a folder; ids, modality and view from the headers",
    group_by="patient",
)
def load_dicom_folder(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One Sample per DICOM file under `root` (a file root means just that file)."""
    if root.is_file():
        files, base = [root], root.parent
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        base = root
    out: list[Sample] = []
    for path in files:
        try:
            info = read_dicom_info(path)
            if not info.has_pixels:
                raise BadInputError(path, "DICOM has no pixel data (no PixelData element)")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        rel = path.relative_to(base).as_posix()
        meta = {
            k: v
            for k, v in (
                ("series_id", info.series_id),
                ("sop_instance_uid", info.sop_instance_uid),
                ("body_part", info.body_part),
                ("study_description", info.study_description),
                ("rows", info.rows),
                ("columns", info.columns),
            )
            if v is not None
        }
        out.append(
            Sample(
                id=rel,
                dataset="dicom_folder",
                split=split,
                images=[
                    ImageRef(path=path, modality=info.modality, view=info.view, image_id=info.sop_instance_uid or rel)
                ],
                patient_id=info.patient_id,
                study_id=info.study_id,
                image_id=info.sop_instance_uid or rel,
                meta=meta,
            )
        )
    return out
