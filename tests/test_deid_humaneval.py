"""`humaneval create-study --deid` / `export --deid` hooks."""

from __future__ import annotations

import json
from pathlib import Path

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
