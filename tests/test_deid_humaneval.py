"""`humaneval create-study --deid` / `export --deid` hooks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmm.deid.humaneval import deidentified_prediction_args, deidentify_export_rows


def test_prediction_files_are_masked_and_images_still_found(tmp_path: Path) -> None:
    (tmp_path / "img.png").write_bytes(b"x")
    src = tmp_path / "sysA.jsonl"
    src.write_text(json.dumps({"id": "1", "image": "img.png", "score": 0.5,
                               "prediction": "Discussed with Dr. Emily Carter on 03/04/2019. No effusion.",
                               "reference": "MRN: 12345678. Normal heart."}) + "\n")
    (arg,) = deidentified_prediction_args([str(src)], None)
    name, path = arg.split("=", 1)
    assert name == "sysA"
    obj = json.loads(Path(path).read_text())
    assert obj["prediction"] == "Discussed with Dr. [NAME] on [DATE]. No effusion."
    assert obj["reference"] == "MRN: [MRN]. Normal heart." and obj["score"] == 0.5
    assert Path(obj["image"]).is_file()


def test_export_rows_comments_masked() -> None:
    rows = deidentify_export_rows([{"comment": "Patient John Smith, 95 yo, seen 01/02/2020", "rater": "r1",
                                    "explanation": None}])
    assert rows[0]["comment"] == "Patient [NAME], [AGE] yo, seen [DATE]" and rows[0]["rater"] == "r1"


def test_loaded_samples_are_deidentified_on_the_fly() -> None:
    from medmm.data.schema import Sample
    from medmm.deid import TextDeidentifier
    from medmm.deid.samples import deidentify_samples

    samples = [Sample(id="1", dataset="manifest", split="train", patient_id="p1",
                      text={"report": "Seen 03/04/2019 by Dr. Emily Carter. No effusion.", "question": "Effusion?"}),
               Sample(id="2", dataset="manifest", split="train", patient_id="p1",
                      text={"report": "Seen 03/14/2019. Stable."})]
    out = list(deidentify_samples(samples, TextDeidentifier(mode="surrogate", seed=0)))
    assert "Emily Carter" not in out[0].text["report"] and out[0].text["question"] == "Effusion?"
    assert samples[0].text["report"].startswith("Seen 03/04/2019")  # the originals are not changed
    d1, d2 = out[0].text["report"][5:15], out[1].text["report"][5:15]
    import datetime as dt

    def parse(x: str) -> dt.date:
        return dt.date(int(x[6:]), int(x[:2]), int(x[3:5]))

    assert (parse(d2) - parse(d1)).days == 10 and d1 != "03/04/2019"


def test_cli_create_study_and_export_with_deid(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    from sqlalchemy import select
    from typer.testing import CliRunner

    from medmm.cli import app
    from medmm.humaneval.db import open_db, upsert_rating
    from medmm.humaneval.models import Assignment, Output
    from medmm.humaneval.security import set_password_cost

    set_password_cost(1, 1024)
    runner, db = CliRunner(), str(tmp_path / "he.sqlite")

    def invoke(*args: str) -> None:
        res = runner.invoke(app, ["humaneval", *args])
        assert res.exit_code == 0, res.output + repr(res.exception)

    invoke("create-user", "alice", "--db", db, "--password", "alice-password")
    pred = tmp_path / "sysa.jsonl"
    pred.write_text(json.dumps({"id": "1", "prediction": "Called to Dr. Emily Carter on 03/04/2019. No effusion.",
                                "reference": "MRN 12345678. Normal."}) + "\n")
    invoke("create-study", "--db", db, "--name", "s", "--pred", str(pred), "--raters", "alice", "--deid")
    engine, factory = open_db(db)
    with factory.begin() as s:
        assert s.scalars(select(Output.prediction)).one() == "Called to Dr. [NAME] on [DATE]. No effusion."
        a = s.scalars(select(Assignment)).one()
        upsert_rating(s, a.id, {"correctness": 4, "comment": "Dr. Jane Roe (555) 123-4567 agrees"})
    engine.dispose()
    invoke("export", "--db", db, "--study", "s", "--out", str(tmp_path / "r.json"), "--deid")
    (row,) = json.loads((tmp_path / "r.json").read_text())
    assert row["comment"] == "Dr. [NAME] [PHONE] agrees" and row["correctness"] == 4
