"""CheXpert v1.0 (Stanford, registration): one sample per image row of train.csv / valid.csv.

Layout: ``CheXpert-v1.0[-small]/{train,valid}.csv`` with ``Path`` relative to the folder *above*
it (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``), Sex, Age,
Frontal/Lateral, AP/PA and the 14 observations (1, 0, -1 = uncertain, blank = not mentioned).
Root may be that folder or the one above it. Uncertain labels stay ``LabelState.UNCERTAIN``
(choosing U-Ones / U-Zeros is the task's decision, not the loader's). Group by "patient".
The CSVs are streamed row by row; a bad row (not UTF-8, NUL byte, extra field, a label other than
1/0/-1/blank, a repeated Path) is an error or a counted skip (``skip_bad``).
"""

from __future__ import annotations

from pathlib import Path

from medmm.data.datasets._cxr_csv import find_file, iter_csv, parse_findings
from medmm.data.fields import UniqueIds
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError


def _csv_and_base(root: Path, split: str) -> tuple[Path | None, Path]:
    """The split's CSV and the folder its Path column is relative to."""
    for folder in (root, *sorted(root.glob("CheXpert-v1.0*"))):
        csv_path = find_file(folder, f"{split}.csv")
        if csv_path is not None:
            return csv_path, folder.parent
    return None, root


@register_dataset(
    "chexpert",
    splits=("train", "valid"),
    description="CheXpert v1.0: chest X-ray images, 14 observations (uncertain kept as -1), sex, age, view",
    group_by="patient",
)
def load_chexpert(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    csv_path, base = _csv_and_base(root, split)
    if csv_path is None:
        if not any(_csv_and_base(root, s)[0] for s in ("train", "valid")):
            raise BadInputError(root, "no train.csv or valid.csv: not a CheXpert root")
        return []
    out: list[Sample] = []
    seen = UniqueIds(csv_path, "Path")
    for line, row in iter_csv(csv_path, {"Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"}):
        if isinstance(row, BadInputError):
            errors.handle(row)
            continue
        try:
            seen.add(row["Path"].strip(), f"line {line}")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        parts = Path(row["Path"]).parts
        patient = next((p for p in parts if p.startswith("patient")), None)
        study = next((p for p in parts if p.startswith("study")), None)
        if patient is None or study is None:
            errors.handle(BadInputError(csv_path, f"line {line}: Path {row['Path']!r} has no patientNNNNN/studyN folders"))
            continue
        findings = parse_findings(row, csv_path, line, errors)
        if findings is None:
            continue
        view = row["AP/PA"] or row["Frontal/Lateral"] or None
        image_id = "/".join(parts[-3:])
        out.append(
            Sample(
                id=image_id, dataset="chexpert", split=split,
                images=[ImageRef(path=str(base / row["Path"]), modality="XR", view=view, image_id=image_id)],
                findings=findings, patient_id=patient, study_id=f"{patient}/{study}", image_id=image_id,
                meta={"sex": row["Sex"], "age": row["Age"], "frontal_lateral": row["Frontal/Lateral"]},
            )
        )
    return out
