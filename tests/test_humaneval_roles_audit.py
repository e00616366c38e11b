"""Roles (owner, monitor, rater), study lock and unblinding, and the hash-chained audit trail
(on SQLite and PostgreSQL), the `audit` command, and upgrading a 0002 database in place."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient
from typer.testing import CliRunner

from medmm.cli import app as cli_app
from medmm.humaneval import audit
from medmm.humaneval.app import create_app
from medmm.humaneval.db import migrate, open_db
from medmm.humaneval.models import AuditEvent, Study
from medmm.humaneval.security import set_password_cost
from medmm.humaneval.studies import create_study_from_predictions, create_user, grant_role
from medmm.humaneval.testing import login, write_predictions

SYSTEMS = ("sysred", "sysblue")


@pytest.fixture
def world(db_url, tmp_path):
    set_password_cost(1, 1024)
    engine, factory = open_db(db_url)
    with factory.begin() as s:
        create_user(s, "admin", "admin-password", admin=True)
        for name in ("alice", "bob", "olivia", "max"):
            create_user(s, name, f"{name}-password")
    preds = [str(write_predictions(tmp_path / f"{name}.jsonl", [
        {"id": f"c{i}", "prediction": f"finding {i} by {k}"} for i in range(4)])) for k, name in enumerate(SYSTEMS)]
    sid = create_study_from_predictions(db_url, "trial", preds, "single", ["alice", "bob"], owners=["olivia"])
    with factory.begin() as s:
        grant_role(s, s.get(Study, sid), "max", "monitor", actor="admin")
    yield {"url": db_url, "app": create_app(db_url, secret_key="k"), "factory": factory, "sid": sid}
    engine.dispose()


def _rate_all(app, user: str, sid: int, score: int) -> str:
    c = TestClient(app)
    token = login(c, user, f"{user}-password")
    while True:
        r = c.get(f"/studies/{sid}/next", follow_redirects=False)
        if r.headers["location"].startswith("/?done"):
            return token
        pid = r.headers["location"].rsplit("/", 1)[1]
        data = {"csrf_token": token, "correctness": str(score), "completeness": "3", "usefulness": "4"}
        assert c.post(f"/rate/{pid}", data=data, follow_redirects=False).status_code == 303


def test_monitor_sees_progress_and_agreement_but_no_system(world):
    _rate_all(world["app"], "alice", world["sid"], 4)
    _rate_all(world["app"], "bob", world["sid"], 4)
    c = TestClient(world["app"])
    login(c, "max", "max-password")
    home = c.get("/").text
    assert f"/studies/{world['sid']}/monitor" in home
    page = c.get(f"/studies/{world['sid']}/monitor")
    assert page.status_code == 200 and 'id="agreement"' in page.text and "alice" in page.text
    assert "Krippendorff" in page.text and "sysred" not in page.text and "sysblue" not in page.text
    for path in (f"/admin/studies/{world['sid']}", f"/admin/studies/{world['sid']}/export.csv", "/admin"):
        assert c.get(path).status_code == 403, path
    # A rater of the study has no monitor page either.
    r = TestClient(world["app"])
    login(r, "alice", "alice-password")
    assert r.get(f"/studies/{world['sid']}/monitor").status_code == 403


def test_lock_refuses_edits_and_unblinding_releases_names(world):
    alice = TestClient(world["app"])
    a_token = login(alice, "alice", "alice-password")
    pid = alice.get(f"/studies/{world['sid']}/next", follow_redirects=False).headers["location"].rsplit("/", 1)[1]
    assert alice.post(f"/api/rate/{pid}", json={"correctness": 2}, headers={"X-CSRF-Token": a_token}).status_code == 200
    owner = TestClient(world["app"])
    o_token = login(owner, "olivia", "olivia-password")
    base = f"/admin/studies/{world['sid']}"
    assert "sysred" in owner.get(base).text  # the owner runs the study and knows its systems
    blinded = owner.get(base + "/export.json").json()
    assert {r["system"] for r in blinded} <= {"system 1", "system 2"}
    r = owner.post(base + "/unblind", data={"csrf_token": o_token, "confirm": "trial"})
    assert r.status_code == 409 and "lock the study" in r.text
    assert owner.post(base + "/lock", data={"csrf_token": o_token}, follow_redirects=False).status_code == 303
    r = alice.post(f"/api/rate/{pid}", json={"correctness": 5}, headers={"X-CSRF-Token": a_token})
    assert r.status_code == 409
    r = alice.post(f"/rate/{pid}", data={"csrf_token": a_token, "correctness": "5"})
    assert r.status_code == 409 and "locked" in r.text
    assert "This study is locked" in alice.get(f"/rate/{pid}").text
    assert owner.post(base + "/unblind", data={"csrf_token": o_token, "confirm": "nope"}).status_code == 422
    r = owner.post(base + "/unblind", data={"csrf_token": o_token, "confirm": "trial"}, follow_redirects=False)
    assert r.status_code == 303
    rows = owner.get(base + "/export.json").json()
    assert len(rows) == 1 and rows[0]["system"] in SYSTEMS and rows[0]["correctness"] == 2
    assert owner.post(base + "/unlock", data={"csrf_token": o_token}).status_code == 409
    with world["factory"]() as s:
        trail = [(e.action, e.username) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.study_id == world["sid"]).order_by(AuditEvent.seq))]
    assert ("study_locked", "olivia") in trail and ("study_unblinded", "olivia") in trail
    assert [a for a, _ in trail].count("export") == 2


def test_rating_changes_are_logged_with_old_and_new_values(world):
    c = TestClient(world["app"])
    token = login(c, "alice", "alice-password")
    pid = c.get(f"/studies/{world['sid']}/next", follow_redirects=False).headers["location"].rsplit("/", 1)[1]
    for body in ({"correctness": 2}, {"correctness": 2}, {"correctness": 5, "comment": "sure"}):
        assert c.post(f"/api/rate/{pid}", json=body, headers={"X-CSRF-Token": token}).status_code == 200
    with world["factory"]() as s:
        evs = s.scalars(select(AuditEvent).where(AuditEvent.action.like("rating_%")).order_by(AuditEvent.seq)).all()
        assert [e.action for e in evs] == ["rating_created", "rating_changed"]  # the repeat changed nothing
        assert json.loads(evs[1].detail) == {"assignment": pid, "old": {"correctness": 2, "comment": None},
                                             "new": {"correctness": 5, "comment": "sure"}}
        assert evs[1].username == "alice" and evs[1].address == "testclient"
        assert audit.verify_chain(s).ok


def test_chain_detects_tampering_and_the_database_refuses_edits(world):
    with world["factory"]() as s:
        check = audit.verify_chain(s)
        assert check.ok and check.n_entries >= 8  # 5 users, study, 1 owner + 1 monitor role
        with pytest.raises(DBAPIError, match="append-only"):
            s.execute(text("UPDATE he_audit SET username = 'mallory' WHERE seq = 1"))
            s.flush()
        s.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            s.execute(text("DELETE FROM he_audit WHERE seq = 2"))
        s.rollback()
    # Someone with the database owner's rights drops the trigger and edits an entry: the chain shows it.
    with world["factory"].begin() as s:
        if s.get_bind().dialect.name == "sqlite":
            s.execute(text("DROP TRIGGER he_audit_no_update"))
        else:
            s.execute(text("ALTER TABLE he_audit DISABLE TRIGGER he_audit_no_change"))
        s.execute(text("UPDATE he_audit SET username = 'mallory' WHERE seq = 3"))
    with world["factory"]() as s:
        check = audit.verify_chain(s)
    assert not check.ok and "entry 3" in check.problem
    result = CliRunner().invoke(cli_app, ["humaneval", "audit", "--db", world["url"]])
    assert result.exit_code == 1 and "CHAIN BROKEN" in result.output


def test_audit_command_prints_filters_and_writes_csv(world, tmp_path):
    _rate_all(world["app"], "alice", world["sid"], 3)
    runner = CliRunner()
    result = runner.invoke(cli_app, ["humaneval", "audit", "--db", world["url"], "--study", "trial"])
    assert result.exit_code == 0, result.output
    assert "chain OK" in result.output and "rating_created" in result.output and "role_granted" in result.output
    assert "user_created" not in result.output  # not an entry of this study
    out = tmp_path / "trail.csv"
    result = runner.invoke(cli_app, ["humaneval", "audit", "--db", world["url"], "--out", str(out)])
    assert result.exit_code == 0 and "chain OK" in result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("seq,at,username,address,action") and any(",login," in x for x in lines)


def test_database_of_schema_0002_is_upgraded_in_place(db_url):
    from alembic import command
    from alembic.config import Config

    from medmm.humaneval.db import MIGRATIONS_DIR, normalize_url

    engine = create_engine(normalize_url(db_url))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002_explanations")
        conn.execute(text("INSERT INTO he_user (username, password_hash, is_admin, created_at) "
                          "VALUES ('old', 'x', false, '2026-01-01')"))
        conn.execute(text("INSERT INTO he_study (name, design, seed, created_at, show_explanations) "
                          "VALUES ('old', 'single', 3, '2026-01-01', false)"))
    assert migrate(engine) == "0003_security"
    with engine.connect() as conn:
        (row,) = conn.execute(text("SELECT name, seeded, blind_secret, locked_at FROM he_study")).all()
        assert (row[0], bool(row[1]), row[2], row[3]) == ("old", True, None, None)
        assert [bool(x) for (x,) in conn.execute(text("SELECT disabled FROM he_user"))] == [False]
    _e, factory = open_db(db_url)
    with factory.begin() as s:
        audit.append(s, "export", username="cli:test", study_id=1)
    with factory() as s:
        assert audit.verify_chain(s).ok
    _e.dispose()
    engine.dispose()


def test_study_pages_need_a_role(world):
    c = TestClient(world["app"])
    login(c, "bob", "bob-password")
    assert c.get(f"/admin/studies/{world['sid']}").status_code == 403
    token = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").text).group(1)
    assert c.post(f"/admin/studies/{world['sid']}/lock", data={"csrf_token": token}).status_code == 403
    assert c.post(f"/admin/studies/{world['sid']}/roles",
                  data={"csrf_token": token, "username": "bob", "role": "owner"}).status_code == 403


def test_web_admin_explicit_seed_is_warned_and_audited(world):
    c = TestClient(world["app"])
    token = login(c, "admin", "admin-password")
    assert "Warning" in c.get("/admin").text
    files = [("pred", (f"{n}.jsonl", b'{"id": "1", "prediction": "a"}\n', "application/json")) for n in SYSTEMS]
    data = {"csrf_token": token, "name": "seeded-web", "design": "pairwise", "raters": "alice", "seed": "7"}
    r = c.post("/admin/studies", data=data, files=files, follow_redirects=False)
    assert r.status_code == 303 and "explicit+seed" in r.headers["location"]
    page = c.get(r.headers["location"]).text
    assert "explicit seed 7" in page and "recompute" in page
    assert c.post("/admin/studies", data={**data, "name": "bad-seed", "seed": "1e9"}, files=files).status_code == 422
    with world["factory"]() as s:
        ev = s.scalar(select(AuditEvent).where(AuditEvent.action == "seed_chosen"))
        assert ev.username == "admin" and ev.address == "testclient" and json.loads(ev.detail)["seed"] == 7
