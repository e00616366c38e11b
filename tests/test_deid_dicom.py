"""DICOM header de-identification: a file carrying every attribute of the PS3.15 basic profile."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("dicomanonymizer")

from pydicom.datadict import dictionary_VR  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from medmm.deid.dicom import deidentify_folder, profile_actions  # noqa: E402
from medmm.errors import BadInputError  # noqa: E402

PIXELS = bytes(range(256)) * 16  # 64 x 64, 8-bit


def _value(vr: str, n: int):
    vr = vr.split(" or ")[0]
    if vr == "SQ":
        item = Dataset()
        item.PatientName = "Inner^Name"
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.99.{n}"
        return Sequence([item])
    return {"AE": "AE1", "AS": "045Y", "AT": 0x00100010, "CS": "VAL", "DA": "20200102", "DS": "1.5",
            "DT": "20200102120000", "FL": 1.0, "FD": 1.0, "IS": "3", "LO": f"long{n}", "LT": "text",
            "PN": "Doe^John", "SH": "sh", "SL": 1, "SS": 1, "ST": "st", "SV": 1, "TM": "120000", "UC": "uc",
            "UI": f"1.2.826.0.1.3680043.99.{n}", "UL": 1, "UR": "http://example.org", "US": 1, "UT": "ut",
            "UV": 1}.get(vr, b"\x01\x02")


def _every_profile_attribute(study_uid: str, sop_uid: str) -> tuple[Dataset, dict[int, str]]:
    plain, _ = profile_actions()
    ds, used = Dataset(), {}
    for n, (tag, action) in enumerate(sorted(plain.items())):
        try:
            vr = dictionary_VR(tag)
        except KeyError:  # newer than pydicom's dictionary: written with a VR that fits the action
            vr = "UI" if action in ("U", "U*") else "LO"
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command and file meta groups: not part of a stored dataset
        ds.add_new(tag, vr.split(" or ")[0], _value(vr, n))
        used[tag] = action
    ds.StudyInstanceUID, ds.SOPInstanceUID = study_uid, sop_uid
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.add_new(0x60003000, "OW", b"\x00\xff" * 8)  # overlay data (60xx,3000): X
    ds.add_new(0x60024000, "LT", "overlay comment")  # overlay comments (60xx,4000): X
    ds.add_new(0x50003000, "OW", b"\x00\xff" * 8)  # curve data (50xx,xxxx): X
    ds.add_new(0x00090010, "LO", "ACME private")  # private creator + element: removed
    ds.add_new(0x00091001, "LO", "secret")
    ds.BurnedInAnnotation = "YES"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = PIXELS
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    return ds, used


def test_every_basic_profile_attribute_is_handled_as_the_profile_says(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    study = generate_uid()
    originals = {}
    for name in ("a.dcm", "b.dcm"):
        ds, used = _every_profile_attribute(study, generate_uid())
        ds.save_as(src / name, enforce_file_format=True)
        originals[name] = pydicom.dcmread(src / name)
    # Every plain tag of the 2026c table (652) but two command-set elements (0000,1000/1001), which
    # a stored file cannot hold, and (0002,0003), the file meta copy of SOP Instance UID (checked below).
    assert len(used) == 649
    report = deidentify_folder(src, out, mapping=tmp_path / "map.csv")
    assert report["files"] == 2 and sorted(report["burned_in"]) == ["a.dcm", "b.dcm"]
    new = {name: pydicom.dcmread(out / name) for name in originals}
    counts = {"X": 0, "Z": 0, "D": 0, "U": 0, "U*": 0}
    for name, ds in new.items():
        orig = originals[name]
        assert ds.PixelData == orig.PixelData == PIXELS  # byte-identical
        assert ds.PatientIdentityRemoved == "YES" and "Annex E" in " ".join(ds.DeidentificationMethod)
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert 0x00091001 not in ds and 0x00090010 not in ds
        assert 0x60003000 not in ds and 0x60024000 not in ds and 0x50003000 not in ds
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID != orig.SOPInstanceUID
        for tag, action in used.items():
            counts[action] += 1
            if tag in (0x00120062, 0x00120063, 0x00120064, 0x00100020):
                continue  # set by the de-identifier itself (identity removed, method, pseudonym)
            if action == "X":
                assert tag not in ds, hex(tag)
            elif action == "Z":
                assert (tag in ds and ds[tag].value in (None, "", b"", [])) or len(ds[tag].value) == 0, hex(tag)
            elif action == "D":
                assert tag in ds, hex(tag)
                if ds[tag].VR != "SQ":
                    assert ds[tag].value != orig[tag].value, hex(tag)
            elif action in ("U", "U*") and ds[tag].VR == "UI":
                assert str(ds[tag].value).startswith("2.25.") and ds[tag].value != orig[tag].value, hex(tag)
            elif action == "U*" and ds[tag].VR == "SQ":
                item = ds[tag].value[0]
                assert str(item.ReferencedSOPInstanceUID).startswith("2.25.")
                assert item.PatientName in ("", None)  # the profile's Z inside kept sequences
    assert all(counts[a] for a in ("X", "Z", "D", "U"))
    # UIDs are remapped consistently across files: the shared study UID maps to one new UID.
    assert new["a.dcm"].StudyInstanceUID == new["b.dcm"].StudyInstanceUID != study
    rows = list(csv.DictReader((tmp_path / "map.csv").open()))
    assert {"uid", study} <= {r["kind"] for r in rows} | {r["original"] for r in rows}


def test_mapping_inside_output_is_refused_and_secret_file_makes_runs_consistent(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    ds, _ = _every_profile_attribute(generate_uid(), generate_uid())
    ds.save_as(src / "a.dcm", enforce_file_format=True)
    with pytest.raises(BadInputError, match="outside"):
        deidentify_folder(src, tmp_path / "out", mapping=tmp_path / "out" / "map.csv")
    key = tmp_path / "key.hex"
    deidentify_folder(src, tmp_path / "o1", secret_file=key)
    deidentify_folder(src, tmp_path / "o2", secret_file=key)
    a, b = pydicom.dcmread(tmp_path / "o1/a.dcm"), pydicom.dcmread(tmp_path / "o2/a.dcm")
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert (tmp_path / "o1.mapping.csv").exists()


def test_cli_dicom_reports_burned_in(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medmm.cli.app import app

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    ds, _ = _every_profile_attribute(generate_uid(), generate_uid())
    ds.save_as(src / "sub" / "a.dcm", enforce_file_format=True)
    (src / "notes.txt").write_text("not dicom")
    res = CliRunner().invoke(app, ["deid", "dicom", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "BurnedInAnnotation YES" in res.output and "sub/a.dcm" in res.output
    assert "skipped 1 non-DICOM" in res.output
    assert (tmp_path / "out" / "sub" / "a.dcm").exists() and (tmp_path / "out.mapping.csv").exists()
