"""Storage: migrations, study creation (blinding, per-rater order), upsert, export, import hygiene.

Runs on SQLite and, when MEDMM_TEST_POSTGRES_URL is set, on a real PostgreSQL server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from medmm.errors import BadInputError, MedmmError
from medmm.humaneval.db import migrate, open_db, upsert_rating
from medmm.humaneval.export import export_rows, read_export, write_export
from medmm.humaneval.models import Assignment, Base, Case, Rating, Study
from medmm.humaneval.security import set_password_cost
from medmm.humaneval.studies import (
    create_study_from_predictions,
    create_user,
    get_study,
    read_predictions,
    study_progress,
)
from medmm.humaneval.testing import write_predictions


@pytest.fixture(autouse=True, scope="module")
def _cheap_passwords():
    set_password_cost(1, 1024)  # argon2 at full cost takes ~0.5 s per user on the CI machine




def make_preds(tmp_path: Path, n: int = 6, systems=("alpha", "beta")) -> list[str]:
    from PIL import Image

    img_dir = tmp_path / "imgs"
    img_dir.mkdir(exist_ok=True)
    for i in range(n):
        Image.new("L", (8, 8), color=i * 10).save(img_dir / f"c{i}.png")
    paths = []
    for k, s in enumerate(systems):
        rows = [
            {"id": f"c{i}", "prediction": f"{s} says finding {i}", "reference": f"ref {i}",
             "image": f"imgs/c{i}.png", "question": f"q{i}?", "bleu": (i + k) / 10}
            for i in range(n)
        ]
        paths.append(str(write_predictions(tmp_path / f"{s}.jsonl", rows)))
    return paths


def add_users(url: str, *names: str) -> None:
    engine, factory = open_db(url)
    with factory.begin() as s:
        for n in names:
            create_user(s, n, f"{n}-password")
    engine.dispose()


def test_migrations_match_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine, _ = open_db(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert migrate(engine) == "0003_security"  # idempotent: a second start changes nothing
    engine.dispose()


def test_pairwise_study_is_blinded_and_randomised_per_rater(db_url, tmp_path):
    add_users(db_url, "alice", "bob")
    preds = make_preds(tmp_path, n=12)
    sid = create_study_from_predictions(db_url, "s", preds, "pairwise", ["alice", "bob"],
                                        images_root=tmp_path, seed=3)
    engine, factory = open_db(db_url)
    with factory() as s:
        assigns = s.scalars(select(Assignment).where(Assignment.study_id == sid)).all()
        assert len(assigns) == 24  # 12 cases x 1 pair x 2 raters
        by_rater: dict[str, list] = {}
        for a in sorted(assigns, key=lambda a: a.position):
            by_rater.setdefault(a.rater.username, []).append(a)
        orders = {r: [a.case.source_id for a in lst] for r, lst in by_rater.items()}
        assert sorted(orders["alice"]) == sorted(orders["bob"]) == sorted(f"c{i}" for i in range(12))
        assert orders["alice"] != orders["bob"]
        lefts = [a.left_output.system.name for a in assigns]
        assert 0 < lefts.count("alpha") < len(lefts)  # left/right really randomised
        assert len({a.public_id for a in assigns}) == 24
        assert all(len(a.public_id) >= 20 and "alpha" not in a.public_id for a in assigns)
        case = s.scalar(select(Case).where(Case.study_id == sid, Case.source_id == "c0"))
        assert Path(case.image_path).is_file() and case.reference == "ref 0"
    engine.dispose()


def test_seed_reproducible_order(tmp_path):
    preds = make_preds(tmp_path)
    orders = []
    for k in range(2):
        url = str(tmp_path / f"db{k}.sqlite")
        add_users(url, "alice")
        sid = create_study_from_predictions(url, "s", preds, "single", ["alice"], seed=7, images_root=tmp_path)
        engine, factory = open_db(url)
        with factory() as s:
            q = select(Assignment).where(Assignment.study_id == sid).order_by(Assignment.position)
            orders.append([(a.case.source_id, a.left_output.system.name) for a in s.scalars(q)])
        engine.dispose()
    assert orders[0] == orders[1] and len(orders[0]) == 12


def test_upsert_keeps_one_row_and_merges_fields(db_url, tmp_path):
    add_users(db_url, "alice")
    sid = create_study_from_predictions(db_url, "s", make_preds(tmp_path, 2), "single", ["alice"],
                                        images_root=tmp_path)
    engine, factory = open_db(db_url)
    with factory() as s:
        aid = s.scalar(select(Assignment.id).where(Assignment.study_id == sid).limit(1))
        upsert_rating(s, aid, {"correctness": 3})
        upsert_rating(s, aid, {"comment": "x'); DROP TABLE he_rating; --"})
        upsert_rating(s, aid, {"correctness": 5, "err_sig_false_finding": 2})
        s.commit()
        assert s.scalar(select(func.count(Rating.id))) == 1
        r = s.scalar(select(Rating))
        assert (r.correctness, r.err_sig_false_finding) == (5, 2)
        assert r.comment == "x'); DROP TABLE he_rating; --"
        rows = export_rows(s, sid)
        prog = study_progress(s, sid)
    assert len(rows) == 1 and rows[0]["rater"] == "alice" and rows[0]["system"] in ("alpha", "beta")
    assert rows[0]["errors_significant"] == 2 and prog == [{"rater": "alice", "total": 4, "started": 1, "completed": 0}]
    for suffix in (".csv", ".json"):
        back = read_export(write_export(rows, tmp_path / f"out{suffix}"))
        assert back[0]["correctness"] == 5 and back[0]["item_id"] == rows[0]["item_id"]
    engine.dispose()


def test_bad_inputs_name_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "prediction": "a"}\nnot json\n')
    with pytest.raises(BadInputError, match="bad.jsonl: line 2"):
        read_predictions(bad)
    bad.write_text('{"id": "1"}\n')
    with pytest.raises(BadInputError, match="missing 'prediction'"):
        read_predictions(bad)
    bad.write_text('{"id": "1", "prediction": "a"}\n{"id": "1", "prediction": "b"}\n')
    with pytest.raises(BadInputError, match="duplicate id"):
        read_predictions(bad)
    url = str(tmp_path / "db.sqlite")
    add_users(url, "alice")
    preds = make_preds(tmp_path, 3)
    other = write_predictions(tmp_path / "gamma.jsonl", [{"id": "zz", "prediction": "p"}])
    with pytest.raises(BadInputError, match="ids differ"):
        create_study_from_predictions(url, "s", [preds[0], str(other)], "single", ["alice"], images_root=tmp_path)
    with pytest.raises(BadInputError, match="no account"):
        create_study_from_predictions(url, "s", preds, "single", ["nobody"], images_root=tmp_path)
    with pytest.raises(BadInputError, match="give the images folder"):
        create_study_from_predictions(url, "s", preds, "single", ["alice"])
    with pytest.raises(BadInputError, match="outside --images-root"):
        esc = write_predictions(tmp_path / "esc.jsonl", [{"id": "1", "prediction": "p", "image": "../x.png"}])
        create_study_from_predictions(url, "s", [str(esc)], "single", ["alice"], images_root=tmp_path / "imgs")
    with pytest.raises(BadInputError, match="username"):
        engine, factory = open_db(url)
        with factory.begin() as s:
            create_user(s, "bob' OR 1=1 --", "a-long-password-123")
    with pytest.raises(MedmmError), factory() as s:
        get_study(s, "missing")
    engine.dispose()


def test_named_pred_argument_and_metrics(tmp_path):
    url = str(tmp_path / "db.sqlite")
    preds = make_preds(tmp_path, 2)
    sid = create_study_from_predictions(url, "s", [f"m1={preds[0]}", f"m2={preds[1]}"], "single",
                                        ["carol"], create_missing_raters={"carol": "carol-password"},
                                        images_root=tmp_path)
    from medmm.humaneval.export import output_metrics

    engine, factory = open_db(url)
    with factory() as s:
        study = s.get(Study, sid)
        assert sorted(x.name for x in study.systems) == ["m1", "m2"]
        assert output_metrics(s, sid)[("c1", "m2")] == {"bleu": 0.2}
    engine.dispose()


def test_image_path_of_medmm_prediction_records_is_the_image(tmp_path):
    """A medmm run's own predictions file (VQA records name the image `image_path`, absolute)
    makes a study whose cases show their images, with no conversion step."""
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "scan.png")
    record = {"id": "7", "question": "Is there a mass?", "prediction": "no", "reference": "No",
              "answer_type": "CLOSED", "image_path": str(tmp_path / "scan.png"), "confidence": 0.7,
              "rationale": {"facts": []}}
    (tmp_path / "run").mkdir()
    pred = write_predictions(tmp_path / "run" / "test.jsonl", [record])
    (rec,) = read_predictions(pred)
    assert rec.image == str(tmp_path / "scan.png") and rec.metrics == {"confidence": 0.7}
    url = str(tmp_path / "db.sqlite")
    sid = create_study_from_predictions(url, "vqa", [f"model={pred}"], "single", ["dana"],
                                        create_missing_raters={"dana": "dana-password"}, images_root=tmp_path)
    engine, factory = open_db(url)
    with factory() as s:
        (case,) = s.scalars(select(Case).where(Case.study_id == sid)).all()
        assert case.image_path == str((tmp_path / "scan.png").resolve())
    engine.dispose()


def test_web_app_imports_no_torch_models_or_engine(tmp_path):
    code = (
        "import sys; from medmm.humaneval.app import create_app; import medmm.cli.humaneval; "
        f"create_app({json.dumps(str(tmp_path / 'x.sqlite'))}); "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'medmm.models', "
        "'medmm.engine'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_servers_starting_together_migrate_once(db_url):
    """Two processes (and threads inside this one) open a new database at the same moment."""
    import threading

    code = f"from medmm.humaneval.db import open_db; e, _ = open_db({db_url!r}); e.dispose()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors: list[str] = []

    def here() -> None:
        try:
            open_db(db_url)[0].dispose()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=here) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [(p.wait(timeout=120), p.stderr.read()[-300:]) for p in procs]
    assert errors == [] and all(rc == 0 for rc, _ in results), (errors, results)
    engine, _ = open_db(db_url)
    with engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [("0003_security",)]
    engine.dispose()
