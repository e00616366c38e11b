"""Explanations in human evaluation: a VQA rationale in words, shown to raters only in studies
made to show them, and a database of the first schema upgraded in place."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from medmm.humaneval.app import create_app
from medmm.humaneval.db import migrate, open_db
from medmm.humaneval.explanations import MAX_EXPLANATION, explain_rationale
from medmm.humaneval.export import export_rows, read_export, write_export
from medmm.humaneval.models import Output, Study
from medmm.humaneval.security import set_password_cost
from medmm.humaneval.studies import create_study_from_predictions, read_predictions
from medmm.humaneval.testing import login, write_predictions

# a rationale as medmm's VQA task writes it (model.rationale: true)
RATIONALE = {
    "facts": ["lung - function - breathe"],
    "image_regions": [{"row": 3, "col": 0, "grid": [6, 6], "weight": 0.1273}],
    "memory_match": {"question": "Are the lungs normal appearing?", "similarity": 0.4981, "n_same_image": 4},
    "question_type": "POS",
    "options": ["left", "right"],
    "novel_key": {"a": 1},
}


def test_rationale_in_words():
    text_ = explain_rationale(RATIONALE)
    assert text_.splitlines() == [
        "Options the question offered: left, right",
        "Predicted question type: POS",
        "Knowledge facts used: lung - function - breathe",
        'Most similar training question on this image: "Are the lungs normal appearing?" (cosine 0.50)',
        "Image cells attended most (top-left = row 1 col 1): row 4 col 1 of 6x6 (0.13)",
        'novel_key: {"a": 1}',  # unknown keys are shown, not dropped
    ]
    assert explain_rationale({"facts": [], "image_regions": []}) is None
    # a rationale of another shape (a hand-made predictions file) is shown raw, never an error
    odd = explain_rationale({"image_regions": [{"row": "top", "col": 1}], "options": 3, "memory_match": "x"})
    assert odd.splitlines() == ["Options the question offered: 3", 'Image cells attended most (top-left = row 1 col 1): [{"row": "top", "col": 1}]']
    long = explain_rationale({"facts": ["x" * 5000]})
    assert len(long) == MAX_EXPLANATION and long.endswith("[cut short]")


def test_explanation_text_wins_over_rationale(tmp_path):
    pred = write_predictions(tmp_path / "p.jsonl", [
        {"id": "1", "prediction": "left", "rationale": RATIONALE},
        {"id": "2", "prediction": "no", "explanation": "the costophrenic angles are sharp", "rationale": RATIONALE},
        {"id": "3", "prediction": "no"},
    ])
    recs = read_predictions(pred)
    assert recs[0].explanation.startswith("Options the question offered: left, right")
    assert recs[1].explanation == "the costophrenic angles are sharp"
    assert recs[2].explanation is None


@pytest.mark.parametrize("show", [True, False])
def test_raters_see_explanations_only_when_the_study_shows_them(tmp_path, show):
    set_password_cost(1, 1024)
    url = str(tmp_path / "he.sqlite")
    pred = write_predictions(tmp_path / "model.jsonl", [
        {"id": "c1", "question": "Which side?", "prediction": "left", "rationale": RATIONALE}])
    sid = create_study_from_predictions(url, "s", [str(pred)], "single", ["alice"], show_explanations=show,
                                        create_missing_raters={"alice": "alice-password"})
    engine, factory = open_db(url)
    with factory() as s:
        assert s.get(Study, sid).show_explanations is show
        assert s.query(Output).one().explanation.startswith("Options")  # stored either way
    engine.dispose()
    c = TestClient(create_app(url, secret_key="k"))
    login(c, "alice", "alice-password")
    page = c.get(f"/studies/{sid}/next")
    assert page.status_code == 200
    shown = re.search(r'id="explanation-0">([^<]*)<', page.text)
    if show:
        assert shown and "Options the question offered: left, right" in shown.group(1)
        assert "model.jsonl" not in page.text and ">model<" not in page.text  # still blinded
    else:
        assert shown is None and "Options the question offered" not in page.text
    # The export says what the rater was shown, and only that.
    pid = re.search(r'action="/rate/([^"]+)"', page.text).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post(f"/rate/{pid}", data={"csrf_token": token, "correctness": "4", "completeness": "5", "usefulness": "3"},
               follow_redirects=False)
    assert r.status_code == 303
    engine, factory = open_db(url)
    with factory() as s:
        rows = export_rows(s, sid)
    engine.dispose()
    assert len(rows) == 1 and rows[0]["explanations_shown"] is show
    assert (rows[0]["explanation"] or "").startswith("Options the question offered: left, right") is show
    assert rows[0]["explanation_left"] is None and rows[0]["explanation_right"] is None
    back = read_export(write_export(rows, tmp_path / "ratings.csv"))
    assert back[0]["explanation"] == rows[0]["explanation"] and back[0]["explanations_shown"] == str(show)


def test_pairwise_export_keeps_each_sides_explanation(tmp_path):
    set_password_cost(1, 1024)
    url = str(tmp_path / "he.sqlite")
    preds = [str(write_predictions(tmp_path / f"{name}.jsonl", [
        {"id": "c1", "question": "Which side?", "prediction": name, "explanation": f"evidence of {name}"}]))
        for name in ("left", "right")]
    sid = create_study_from_predictions(url, "p", preds, "pairwise", ["alice"], show_explanations=True,
                                        create_missing_raters={"alice": "alice-password"})
    c = TestClient(create_app(url, secret_key="k"))
    login(c, "alice", "alice-password")
    page = c.get(f"/studies/{sid}/next")
    pid = re.search(r'action="/rate/([^"]+)"', page.text).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert c.post(f"/rate/{pid}", data={"csrf_token": token, "preference": "tie"}, follow_redirects=False).status_code == 303
    engine, factory = open_db(url)
    with factory() as s:
        (row,) = export_rows(s, sid)
    engine.dispose()
    # whichever side each system was shown on, its own evidence is in its own column
    assert row["explanation"] is None
    assert row["explanation_left"] == f"evidence of {row['system_left']}"
    assert row["explanation_right"] == f"evidence of {row['system_right']}"


def test_database_of_the_first_schema_is_upgraded_in_place(tmp_path):
    from alembic import command
    from alembic.config import Config

    from medmm.humaneval.db import MIGRATIONS_DIR

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001_initial")
        conn.execute(text("INSERT INTO he_study (name, design, seed, created_at) VALUES ('old', 'single', 0, '2026-01-01')"))
    assert migrate(engine) == "0003_security"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name, show_explanations FROM he_study")).all() == [("old", 0)]
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(he_output)"))]
    assert "explanation" in columns
    engine.dispose()
