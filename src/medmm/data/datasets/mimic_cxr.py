"""MIMIC-CXR-JPG v2 (PhysioNet, credentialed): one sample per study, its JPEGs, CheXpert labels, report.

Layout (root = the ``mimic-cxr-jpg/2.0.0`` folder)::

    mimic-cxr-2.0.0-split.csv[.gz]      dicom_id, study_id, subject_id, split (train/validate/test)
    mimic-cxr-2.0.0-metadata.csv[.gz]   dicom_id, subject_id, study_id, ViewPosition, ...
    mimic-cxr-2.0.0-chexpert.csv[.gz]   subject_id, study_id, 14 observations (1, 0, -1, blank)
    files/p10/p10000032/s50414267/<dicom_id>.jpg
    files/p10/p10000032/s50414267.txt   the free-text report (from MIMIC-CXR's mimic-cxr-reports.zip;
                                        optional: text["report"] when present)

The CSVs (377k image rows) are streamed and only the requested split is kept. Images are ordered
frontal first (PA, then AP), then by dicom id, so ``images[0]`` is the frontal view when there is
one. Uncertain labels stay ``LabelState.UNCERTAIN``. Group by "patient" (subject_id).
Bad data is an error or a counted skip (``skip_bad``): a repeated dicom_id drops the later row; a
bad label row (value not 1/0/-1/blank, repeated study_id) is counted and its study loads without
labels (``meta["has_labels"] False``); a report that is not UTF-8, empty or holds NUL bytes skips
its study. A CSV row that cannot be read (not UTF-8, extra field) is counted in every split, since
its split is unknown.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from medmm.data.datasets._cxr_csv import find_file, iter_csv, parse_findings
from medmm.data.fields import UniqueIds, text_value
from medmm.data.io.text import read_text
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError

PREFIX = "mimic-cxr-2.0.0"
_VIEW_ORDER = {"PA": 0, "AP": 1}
_SECTION = re.compile(r"^\s*(FINDINGS|IMPRESSION)\s*:", re.MULTILINE)


def _study_dir(root: Path, subject: str, study: str) -> Path:
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"


def report_sections(text: str) -> dict[str, str]:
    """{'report': whole text, 'findings': ..., 'impression': ...} (sections only when headed)."""
    out = {"report": text.strip()}
    marks = list(_SECTION.finditer(text))
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        body = text[m.end() : nxt.start() if nxt else len(text)].strip()
        if body:
            out[m.group(1).lower()] = " ".join(body.split())
    return out


def _report(path: Path) -> dict[str, str]:
    """The report's sections; not UTF-8, empty or with NUL bytes is a BadInputError (never U+FFFD)."""
    return report_sections(text_value(read_text(path), path, "report") or "")


@register_dataset(
    "mimic_cxr",
    splits=("train", "validate", "test"),
    description="MIMIC-CXR-JPG v2: chest X-ray studies, JPEG views, CheXpert labels (-1 kept), reports if present",
    group_by="patient",
)
def load_mimic_cxr(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    split_csv = find_file(root, f"{PREFIX}-split.csv")
    if split_csv is None:
        raise BadInputError(root, f"{PREFIX}-split.csv(.gz) not found: not a MIMIC-CXR-JPG root")
    dicoms: dict[str, tuple[str, str]] = {}  # dicom_id -> (subject, study) of this split only
    seen = UniqueIds(split_csv, "dicom_id")
    for line, row in iter_csv(split_csv, {"dicom_id", "study_id", "subject_id", "split"}):
        if isinstance(row, BadInputError):
            errors.handle(row)
            continue
        try:
            seen.add(row["dicom_id"], f"line {line}")  # every split: one image in two splits is a leak
        except BadInputError as exc:
            if row["split"] == split:
                errors.handle(exc)
            continue
        if row["split"] == split:
            dicoms[row["dicom_id"]] = (row["subject_id"], row["study_id"])
    views: dict[str, str] = {}
    meta_csv = find_file(root, f"{PREFIX}-metadata.csv")
    if meta_csv is not None:
        for _, row in iter_csv(meta_csv, {"dicom_id", "ViewPosition"}):
            if isinstance(row, BadInputError):
                errors.handle(row)  # a bad row may hide the view of one of this split's images
                continue
            if row["dicom_id"] in dicoms:
                views[row["dicom_id"]] = row["ViewPosition"]
    studies: dict[tuple[str, str], list[str]] = defaultdict(list)
    for dicom, key in dicoms.items():
        studies[key].append(dicom)
    labels = {}
    label_csv = find_file(root, f"{PREFIX}-chexpert.csv")
    if label_csv is not None:
        wanted = {study for _, study in studies}
        seen_study = UniqueIds(label_csv, "study_id")
        for line, row in iter_csv(label_csv, {"subject_id", "study_id"}):
            if isinstance(row, BadInputError):
                errors.handle(row)
                continue
            if row["study_id"] in wanted:
                try:
                    seen_study.add(row["study_id"], f"line {line}")
                except BadInputError as exc:
                    errors.handle(exc)  # the first row's labels are kept
                    continue
                found = parse_findings(row, label_csv, line, errors)
                if found is not None:  # a bad label row is counted; the study loads as unlabelled
                    labels[row["study_id"]] = found
    out: list[Sample] = []
    for (subject, study), ids in sorted(studies.items()):
        folder = _study_dir(root, subject, study)
        ids.sort(key=lambda d: (_VIEW_ORDER.get(views.get(d, ""), 2), d))
        images = [ImageRef(path=str(folder / f"{d}.jpg"), modality="XR", view=views.get(d) or None, image_id=d) for d in ids]
        report = folder.with_suffix(".txt")
        try:
            text = _report(report) if report.is_file() else {}
        except BadInputError as exc:
            errors.handle(exc)
            continue
        out.append(
            Sample(
                id=f"s{study}", dataset="mimic_cxr", split=split, images=images, text=text,
                findings=labels.get(study, {}), patient_id=subject, study_id=study,
                meta={"has_labels": study in labels},
            )
        )
    return out
