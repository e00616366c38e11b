"""Report-text de-identification: every category, clinical words kept, surrogates, CSV and CLI."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmm.deid import TextDeidentifier
from medmm.deid.surrogate import Surrogates, make_secret
from medmm.metrics.clinical.labeller import label_report

REPORT = """Patient: John A. Smith   MRN: 12345678   DOB: 03/04/1931
Accession #: RAD-2019-0042   Exam date: March 5, 2019
INDICATION: 92-year-old female with cough, transferred from Springfield.
COMPARISON: 01/02/2018 from St. Mary's Hospital.
FINDINGS: Hill-Sachs deformity. Bell palsy history. Mass in the right upper lobe. Pacemaker in place
(serial number PZX123456). The cardiac silhouette is normal.
IMPRESSION: Findings discussed with Dr. Emily Carter at (555) 123-4567, fax 555-987-6543.
Electronically signed by Robert Jones, MD on 2019-03-06.
Mercy Medical Center, 1200 North Oak Street, Springfield, IL 62704. jcarter@mercy.org https://portal.mercy.org/r/1
"""
PHI = {"John A. Smith": "NAME", "12345678": "MRN", "03/04/1931": "DATE", "RAD-2019-0042": "ACCESSION",
       "March 5, 2019": "DATE", "92": "AGE", "01/02/2018": "DATE", "St. Mary's Hospital": "INSTITUTION",
       "PZX123456": "SERIAL", "Emily Carter": "NAME", "(555) 123-4567": "PHONE", "555-987-6543": "FAX",
       "Robert Jones": "NAME", "2019-03-06": "DATE", "Mercy Medical Center": "INSTITUTION",
       "1200 North Oak Street": "ADDRESS", "62704": "POSTCODE", "jcarter@mercy.org": "EMAIL",
       "https://portal.mercy.org/r/1": "URL"}
CLINICAL = ["Hill-Sachs deformity", "Bell palsy", "Mass in the right upper lobe", "Pacemaker",
            "cardiac silhouette is normal", "92-year-old" if False else "year-old female"]


def test_every_category_is_found_with_its_category() -> None:
    clean, audit = TextDeidentifier(seed=0).deidentify(REPORT)
    found = {REPORT[a["start"]:a["end"]]: a["category"] for a in audit}
    for value, cat in PHI.items():
        assert value not in clean, value
        assert found.get(value) == cat, (value, found.get(value))
    for words in CLINICAL:
        assert words in clean, words
    assert "Springfield" not in clean and "IL" in clean  # towns go, states may stay


@pytest.mark.parametrize("text", [
    "The patient is 45 years old.", "Temperature 38.5. Heart rate 92.", "Chest PA and lateral views.",
    "Hill-Sachs lesion and Bankart lesion.", "Graves disease. Wilson disease. Crohn disease.",
    "Kerley B lines. Mass effect on the ventricle. May represent atelectasis.",
    "No pneumothorax. 3 mm nodule. Levels L4-L5 and C5-C6.",
    "Neoplasm Name: Pilocytic Astrocytoma", "Patient Currently smokes.", "Noncontrast head CT, CT perfusion.",
    "Plain Films, CT, and MR demonstrate it. Chest PA and lateral. Main PA filling defect.",
])
def test_clinical_text_without_phi_is_unchanged(text: str) -> None:
    assert TextDeidentifier().deidentify(text)[0] == text


def test_surrogate_dates_shift_per_patient_and_keep_intervals() -> None:
    deid = TextDeidentifier(mode="surrogate", seed=1)
    a, _ = deid.deidentify("Seen 03/04/2019, again 03/14/2019.", patient_id="p1")
    d1, d2 = (dt.date(int(x[6:]), int(x[:2]), int(x[3:5]))
              for x in a.rstrip(".").replace("Seen ", "").split(", again "))
    assert (d2 - d1).days == 10 and d1 != dt.date(2019, 3, 4)
    b, _ = deid.deidentify("Seen 03/04/2019.", patient_id="p1")
    assert b.split()[1].rstrip(".") == a.split()[1].rstrip(",")  # same patient: same shift
    s = Surrogates(make_secret(1))
    assert s.shift_date("March 5, 2019", "p1").endswith(("2019", "2018", "2017"))
    assert s.date_shift_days("p1") != s.date_shift_days("p2") or s.date_shift_days("p1") == s.date_shift_days("p3")


def test_seed_reproduces_and_default_secret_differs() -> None:
    text = "Seen by Dr. Emily Carter on 03/04/2019, MRN 12345678."
    assert (TextDeidentifier(mode="surrogate", seed=3).deidentify(text, "p")[0]
            == TextDeidentifier(mode="surrogate", seed=3).deidentify(text, "p")[0])
    runs = {TextDeidentifier(mode="surrogate").deidentify(text, "p")[0] for _ in range(3)}
    assert len(runs) > 1
    assert "Carter" not in next(iter(runs)) and "12345678" not in next(iter(runs))


def test_ages_under_90_stay() -> None:
    clean, _ = TextDeidentifier().deidentify("89-year-old man; his mother, 95 yo, and a 101 year old aunt.")
    assert clean == "89-year-old man; his mother, [AGE] yo, and a [AGE] year old aunt."


def test_labels_unchanged_on_masked_report() -> None:
    clean, _ = TextDeidentifier().deidentify(REPORT)
    assert label_report(clean) == label_report(REPORT)


def test_cli_text_writes_csv_and_audit_without_original_text(tmp_path: Path) -> None:
    from medmm.cli.app import app

    src = tmp_path / "in.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pid", "report", "other"])
        w.writerow(["p1", REPORT, "kept"])
    res = CliRunner().invoke(app, ["deid", "text", str(src), "--text-column", "report", "--id-column", "pid",
                                   "--out", str(tmp_path / "out.csv"), "--audit", str(tmp_path / "audit.csv"),
                                   "--mode", "surrogate", "--seed", "0"])
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader((tmp_path / "out.csv").open()))
    assert row["other"] == "kept" and "Emily Carter" not in row["report"]
    audit = (tmp_path / "audit.csv").read_text()
    assert "NAME" in audit and "Emily Carter" not in audit
    bad = CliRunner().invoke(app, ["deid", "text", str(src), "--text-column", "nope", "--out",
                                   str(tmp_path / "o2.csv")])
    assert bad.exit_code != 0
