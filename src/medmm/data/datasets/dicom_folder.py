"""Any folder of DICOM files: one Sample per ``*.dcm`` / ``*.dicom`` file found recursively.

Split "all" only (DICOM folders carry no split; split by patient with medmm.data.splits).
Only headers are read here (pydicom with deferred large values): patient id (PatientID),
study id (StudyInstanceUID), modality, view (ViewPosition). Pixels are decoded when a task
reads the image with `medmm.data.io.read_image`. Files that are not DICOM or hold no pixel
data are bad records (skipped and counted with ``skip_bad=True``); so is a symlink that leads
nowhere or to itself. Raw datasets without the 128-byte preamble are read (forced), exactly as
`read_image` reads them.
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
        # Not is_file(): it is False for a broken or self-referencing symlink, which would then
        # vanish uncounted. Every DICOM-named entry that is not a folder is a record.
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and not _is_dir(p))
        base = root
    out: list[Sample] = []
    for path in files:
        try:
            if path.is_symlink() and not _resolves(path):
                raise BadInputError(path, "symlink is broken or points to itself (a link loop)")
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


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a symlink loop: is_dir() itself can raise on some Pythons
        return False


def _resolves(path: Path) -> bool:
    """True when a symlink leads to an existing file (False for loops and dangling links)."""
    try:
        path.resolve(strict=True)
    except (OSError, RuntimeError):  # ELOOP / "Symlink loop" (RuntimeError before Python 3.13)
        return False
    return path.is_file()
