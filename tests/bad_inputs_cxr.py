"""Bad-input cases of the chest X-ray loaders (chexpert, mimic_cxr) and of packed shards.

Part of the seeded corpus of tests/bad_inputs.py (not a test module): each builder writes a
small valid copy of the original layout from the bundled CC0 VQA-RAD JPEGs, then one corruption.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from bad_inputs_layouts import _real_jpeg, _write_csv
from medmm.data.datasets._cxr_csv import CHEXPERT_OBSERVATIONS

OBS = list(CHEXPERT_OBSERVATIONS)
MIMIC = "mimic-cxr-2.0.0"


def _labels(rng: random.Random) -> list[str]:
    return [rng.choice(["1.0", "0.0", "-1.0", ""]) for _ in OBS]


def chexpert_root(dst: Path, recs: list[dict[str, Any]], rng: random.Random) -> Path:
    """CheXpert-v1.0-small/train.csv, one image row per record (patient i, study 1)."""
    rows: list[list[Any]] = [["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBS]]
    for i, rec in enumerate(recs):
        rel = f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg"
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(_real_jpeg(rec))
        rows.append([rel, "Female", str(40 + i), "Frontal", "PA", *_labels(rng)])
    _write_csv(dst / "CheXpert-v1.0-small" / "train.csv", rows)
    return dst


def mimic_root(dst: Path, recs: list[dict[str, Any]], rng: random.Random) -> Path:
    """mimic-cxr-jpg/2.0.0: one train study per record (subject 1000000i, study 5000000i, image di)."""
    split = [["dicom_id", "study_id", "subject_id", "split"]]
    meta = [["dicom_id", "subject_id", "study_id", "ViewPosition"]]
    labels = [["subject_id", "study_id", *OBS]]
    for i, rec in enumerate(recs):
        subject, study = f"1000000{i}", f"5000000{i}"
        folder = dst / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        folder.mkdir(parents=True)
        (folder / f"d{i}.jpg").write_bytes(_real_jpeg(rec))
        folder.with_suffix(".txt").write_text(f" FINDINGS: {rec['question']}\n IMPRESSION: {rec['answer']}\n", encoding="utf-8")
        split.append([f"d{i}", study, subject, "train"])
        meta.append([f"d{i}", subject, study, "PA"])
        labels.append([subject, study, *_labels(rng)])
    _write_csv(dst / f"{MIMIC}-split.csv", split)
    _write_csv(dst / f"{MIMIC}-metadata.csv", meta)
    _write_csv(dst / f"{MIMIC}-chexpert.csv", labels)
    return dst


def shards_root(dst: Path, recs: list[dict[str, Any]]) -> Path:
    """The records' JPEGs packed by `pack_samples` into shards of 3 samples (16x16 grey)."""
    from medmm.data.schema import ImageRef, Sample
    from medmm.data.shards.pack import PackSettings, pack_samples

    src = dst.parent / f"{dst.name}_src"
    src.mkdir(parents=True)
    samples = []
    for i, rec in enumerate(recs):
        (src / f"{i}.jpg").write_bytes(_real_jpeg(rec))
        samples.append(Sample(id=f"s{i}", dataset="vqa_rad", split="train", images=[ImageRef(path=str(src / f"{i}.jpg"))],
                              text={"question": rec["question"], "answer": rec["answer"]}, patient_id=f"p{i}"))  # fmt: skip
    pack_samples({"train": samples}, dst, PackSettings(size=16, channels=1, shard_size=3), source={"dataset": "vqa_rad"})
    return dst


def _edit_line(path: Path, line: int, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` in 1-based line `line` of a file (bytes, so any corruption fits)."""
    lines = path.read_bytes().split(b"\n")
    assert old in lines[line - 1], (path, line, old)
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_bytes(b"\n".join(lines))


def cxr_cases(tmp: Path, recs: list[dict[str, Any]], seed: int) -> list[Any]:
    """The cases of chexpert, mimic_cxr and shards (see `bad_inputs.Case`)."""
    from bad_inputs import Case

    cases: list[Case] = []
    n = len(recs)

    # ---- chexpert (train.csv rows; line k+2 is record k)
    def chex(name: str) -> tuple[Path, Path]:
        root = chexpert_root(tmp / name, recs, random.Random(seed))
        return root, root / "CheXpert-v1.0-small" / "train.csv"

    def chex_case(kind: str, problem: str, root: Path, **kw: Any) -> None:
        cases.append(Case(kind, "chexpert", kw.pop("file", "train.csv"), problem, "chexpert", root, "train", **kw))

    for kind, value, problem in (("nan-label", b"nan", "Cardiomegaly = 'nan' is not 1, 0, -1 or blank"),
                                 ("float-label", b"0.7", "Cardiomegaly = '0.7' is not 1, 0, -1 or blank"),
                                 ("bad-label", b"2.0", "Cardiomegaly = '2.0' is not 1, 0, -1 or blank")):  # fmt: skip
        root, csv_path = chex(f"cx_{kind}")
        header = csv_path.read_text().splitlines()[0].split(",")
        _set_field(csv_path, 3, header.index("Cardiomegaly"), value)
        chex_case(kind, problem, root, n_good=n - 1)
    root, csv_path = chex("cx_dup")
    _edit_line(csv_path, 3, b"patient00001/", b"patient00000/")
    chex_case("duplicate-id", "line 3: Path .*patient00000.* repeats line 2", root, n_good=n - 1)
    root, csv_path = chex("cx_utf8")
    _edit_line(csv_path, 4, b",Female,", b",Fem\xe9le,")
    chex_case("bad-utf8", "line 4: not valid UTF-8", root, n_good=n - 1)
    root, csv_path = chex("cx_nul")
    _edit_line(csv_path, 5, b",Female,", b",Fe\x00male,")
    chex_case("nul-byte", "line 5: contains a NUL byte", root, n_good=n - 1)
    root, csv_path = chex("cx_extra")
    _edit_line(csv_path, 6, b",Female,", b",Female,oops,")
    chex_case("extra-field", f"line 6 has {len(OBS) + 6} fields but the header has {len(OBS) + 5}", root, n_good=n - 1)
    root, csv_path = chex("cx_empty")
    csv_path.write_bytes(b"")
    chex_case("empty-file", "empty \\(0 bytes\\)", root, whole_file=True)
    root, _ = chex("cx_missing_image")
    (root / "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg").unlink()
    chex_case("missing-image", "not found", root, file="view1_frontal.jpg", engine=True, n_good=n - 1)
    root, _ = chex("cx_textjpg")
    (root / "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg").write_text("a text file, not a JPEG\n")
    chex_case("text-as-image", "not a recognised image format", root, file="view1_frontal.jpg", engine=True, n_good=n - 1)

    # ---- mimic_cxr (split/metadata/chexpert CSVs; line k+2 is study k; reports beside the studies)
    def mimic(name: str) -> Path:
        return mimic_root(tmp / name, recs, random.Random(seed))

    def mimic_case(kind: str, file: str, problem: str, root: Path, **kw: Any) -> None:
        cases.append(Case(kind, "mimic_cxr", file, problem, "mimic_cxr", root, "train", **kw))

    labels = f"{MIMIC}-chexpert.csv"
    for kind, value, problem in (("nan-label", b"NaN", "Edema = 'NaN' is not 1, 0, -1 or blank"),
                                 ("float-label", b"0.5", "Edema = '0.5' is not 1, 0, -1 or blank"),
                                 ("bad-label", b"-2", "Edema = '-2' is not 1, 0, -1 or blank")):  # fmt: skip
        root = mimic(f"mc_{kind}")
        _set_field(root / labels, 4, 2 + OBS.index("Edema"), value)
        # the label row is counted; its study still loads, marked unlabelled (has_labels False)
        mimic_case(kind, labels, problem, root, n_good=n)
    root = mimic("mc_dup_label")
    _edit_line(root / labels, 3, b"50000001", b"50000000")
    _edit_line(root / labels, 3, b"10000001", b"10000000")
    mimic_case("duplicate-id", labels, "line 3: study_id '50000000' repeats line 2", root, n_good=n)
    root = mimic("mc_dup_image")
    _edit_line(root / f"{MIMIC}-split.csv", 3, b"d1,", b"d0,")
    mimic_case("duplicate-id", f"{MIMIC}-split.csv", "line 3: dicom_id 'd0' repeats line 2", root, n_good=n - 1)
    root = mimic("mc_utf8")
    _edit_line(root / f"{MIMIC}-split.csv", 4, b",train", b",tr\xffain")
    mimic_case("bad-utf8", f"{MIMIC}-split.csv", "line 4: not valid UTF-8", root, n_good=n - 1)
    root = mimic("mc_extra")
    _edit_line(root / f"{MIMIC}-metadata.csv", 5, b",PA", b",PA,LL")
    mimic_case("extra-field", f"{MIMIC}-metadata.csv", "line 5 has 5 fields but the header has 4", root, n_good=n)
    root = mimic("mc_empty")
    (root / labels).write_bytes(b"")
    mimic_case("empty-file", labels, "empty \\(0 bytes\\)", root, whole_file=True)
    root = mimic("mc_report_utf8")
    report = root / "files/p10/p10000002/s50000002.txt"
    report.write_bytes(report.read_bytes().replace(b"FINDINGS", b"FINDINGS \xe9", 1))
    mimic_case("bad-utf8", "s50000002.txt", "not valid UTF-8 at byte offset", root, n_good=n - 1)
    root = mimic("mc_report_nul")
    report = root / "files/p10/p10000003/s50000003.txt"
    report.write_bytes(report.read_bytes() + b"\x00\x00\x00")
    mimic_case("nul-byte", "s50000003.txt", "report contains a NUL byte", root, n_good=n - 1)
    root = mimic("mc_report_empty")
    (root / "files/p10/p10000004/s50000004.txt").write_bytes(b"")
    mimic_case("empty-file", "s50000004.txt", "empty", root, n_good=n - 1)
    root = mimic("mc_missing_image")
    (root / "files/p10/p10000001/s50000001/d1.jpg").unlink()
    mimic_case("missing-image", "d1.jpg", "not found", root, engine=True, n_good=n - 1)
    root = mimic("mc_textjpg")
    (root / "files/p10/p10000005/s50000005/d5.jpg").write_text("a text file, not a JPEG\n")
    mimic_case("text-as-image", "d5.jpg", "not a recognised image format", root, engine=True, n_good=n - 1)

    # ---- shards (index.json, per-shard summaries, tar members); no record of a damaged pack is trusted
    def shards(name: str) -> Path:
        return shards_root(tmp / name, recs)

    def shard_case(kind: str, file: str, problem: str, root: Path) -> None:
        cases.append(Case(kind, "shards", file, problem, "shards", root, "train", whole_file=True))

    root = shards("sh_truncated")
    tar = root / "train-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    shard_case("truncated-shard", tar.name, "size \\d+ differs from the index", root)
    root = shards("sh_sha")
    tar = root / "train-000000.tar"
    data = bytearray(tar.read_bytes())
    offset = json.loads(tar.with_suffix(".json").read_text())["records"][1]["images"][0]["offset"]
    data[offset : offset + 16] = bytes(255 - b for b in data[offset : offset + 16])  # same size, other pixels
    tar.write_bytes(bytes(data))
    shard_case("sha256-mismatch", tar.name, "sha256 .* differs from the index", root)
    root = shards("sh_npy")
    tar = root / "train-000000.tar"
    data = tar.read_bytes()
    at = data.index(b"\x93NUMPY")
    tar.write_bytes(data[:at] + b"\x00GARBAGE" + data[at + 8 :])  # a corrupted .npy header, same size
    shard_case("corrupt-npy", tar.name, "sha256 .* differs from the index", root)
    root = shards("sh_no_index")
    (root / "index.json").unlink()
    shard_case("missing-index", "index.json", "no index of packed shards", root)
    root = shards("sh_empty_index")
    (root / "index.json").write_bytes(b"")
    shard_case("empty-file", "index.json", "empty \\(0 bytes\\)", root)
    root = shards("sh_bad_index")
    (root / "index.json").write_bytes(b'{"format": ')
    shard_case("truncated-index", "index.json", "invalid JSON", root)
    root = shards("sh_summary")
    (root / "train-000000.json").write_bytes(b"\xff\xfe")
    shard_case("bad-utf8", "train-000000.json", "not valid UTF-8", root)
    return cases


def _set_field(path: Path, line: int, column: int, value: bytes) -> None:
    """Set field `column` (0-based) of 1-based CSV line `line` (no quoted fields in these files)."""
    lines = path.read_bytes().split(b"\n")
    fields = lines[line - 1].split(b",")
    fields[column] = value
    lines[line - 1] = b",".join(fields)
    path.write_bytes(b"\n".join(lines))
