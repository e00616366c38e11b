"""`medmm humaneval ...` commands end to end: users, study, serve, export, agreement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from medmm.cli import app
from medmm.humaneval.db import open_db, upsert_rating
from medmm.humaneval.models import Assignment, User
from medmm.humaneval.security import set_password_cost
from medmm.humaneval.testing import free_port, write_predictions

runner = CliRunner()
MEDMM = [sys.executable, "-c", "from medmm.cli import main; main()"]  # the `medmm` entry point


@pytest.fixture(autouse=True, scope="module")
def _cheap_passwords():
    set_password_cost(1, 1024)


def invoke(*args: str, env: dict | None = None):
    result = runner.invoke(app, ["humaneval", *args], env=env)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_cli_create_study_rate_export_agreement(tmp_path):
    db = str(tmp_path / "he.sqlite")
    for user in ("alice", "bob"):
        invoke("create-user", user, "--db", db, "--password", f"{user}-password")
    preds = []
    for k, name in enumerate(("sysa", "sysb")):
        rows = [{"id": str(i), "prediction": f"p{i}{name}", "rouge": (i * (k + 1)) % 7 / 7} for i in range(8)]
        preds.append(str(write_predictions(tmp_path / f"{name}.jsonl", rows)))
    out = invoke("create-study", "--db", db, "--name", "s", "--pred", preds[0], "--pred", f"B={preds[1]}",
                 "--raters", "alice,bob", "--design", "single").output
    assert "created study 's'" in out
    # Ratings that depend on the item only, so the raters agree perfectly apart from one item.
    engine, factory = open_db(db)
    with factory.begin() as s:
        for a, rater in s.execute(
            select(Assignment, User.username).join(User, Assignment.rater_id == User.id)
        ).all():
            score = 1 + int(a.case.source_id) % 5
            if rater == "bob" and a.case.source_id == "3":
                score = 1
            upsert_rating(s, a.id, {"correctness": score, "completeness": score, "usefulness": score})
    engine.dispose()
    invoke("export", "--db", db, "--study", "s", "--out", str(tmp_path / "r.csv"))
    invoke("export", "--db", db, "--study", "s", "--out", str(tmp_path / "r.json"))
    rows = json.loads((tmp_path / "r.json").read_text())
    assert len(rows) == 32 and {r["system"] for r in rows} == {"sysa", "B"}
    assert (tmp_path / "r.csv").read_text().count("\n") == 33

    metrics = tmp_path / "m.jsonl"
    metrics.write_text("".join(json.dumps({"id": str(i), "system": "B", "bertscore": i / 10}) + "\n" for i in range(8)))
    report_path = tmp_path / "agree.json"
    out = invoke("agreement", "--db", db, "--study", "s", "--metrics", str(metrics), "--out", str(report_path)).output
    assert "Krippendorff" in out and "Fleiss" in out and "rouge" in out and "bertscore" in out
    report = json.loads(report_path.read_text())
    corr = report["fields"][0]
    assert corr["field"] == "correctness" and corr["n_units"] == 16
    assert 0.5 < corr["cohen"][0]["kappa_quadratic"] < 1.0
    # The same report from the exported CSV (no database).
    out2 = invoke("agreement", "--ratings", str(tmp_path / "r.csv")).output
    assert out2.splitlines()[:8] == out.splitlines()[:8]


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    proc = subprocess.run(
        [*MEDMM, "humaneval", "create-study", "--db", str(tmp_path / "x.sqlite"),
         "--name", "s", "--pred", str(bad), "--raters", "a"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2 and "bad.jsonl: line 1: not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_command_starts_and_migrates(tmp_path):
    db = tmp_path / "served.sqlite"
    port = free_port()
    env = {**os.environ, "MEDMM_HUMANEVAL_SECRET": "s3cret"}
    proc = subprocess.Popen(
        [*MEDMM, "humaneval", "serve", "--db", str(db), "--port", str(port), "--images-root", str(tmp_path),
         "--https-only", "--forwarded-allow-ips", "127.0.0.1", "--idle-timeout-min", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        import httpx2

        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx2.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except httpx2.TransportError as exc:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("server did not start") from exc
                time.sleep(0.2)
        assert r.status_code == 200 and "Log in" in r.text
        assert "max-age=" in r.headers["strict-transport-security"]  # --https-only sends HSTS
        assert httpx2.get(f"http://127.0.0.1:{port}/", follow_redirects=False, timeout=5).status_code == 303
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert db.exists()


def test_study_from_real_vqa_rad_images(shared_data, tmp_path):
    """Real VQA-RAD questions and images: the image route serves the original JPEG."""
    from starlette.testclient import TestClient

    from medmm.humaneval import create_app, create_study_from_predictions
    from medmm.humaneval.testing import login

    root = shared_data / "vqa_rad"
    qa = json.loads((root / "VQA_RAD Dataset Public.json").read_text())[:5]
    rows = [{"id": str(q["qid"]), "prediction": "yes", "reference": str(q["answer"]),
             "question": q["question"], "image": q["image_name"]} for q in qa]
    pred = write_predictions(tmp_path / "yes_model.jsonl", rows)
    db = str(tmp_path / "he.sqlite")
    create_study_from_predictions(db, "vqa", [str(pred)], "single", ["rater1"],
                                  images_root=root / "VQA_RAD Image Folder",
                                  create_missing_raters={"rater1": "rater1-password"})
    c = TestClient(create_app(db, secret_key="k", image_roots=[root / "VQA_RAD Image Folder"]))
    login(c, "rater1", "rater1-password")
    page = c.get("/studies/1/next")
    assert page.status_code == 200 and "Question" in page.text and "yes" in page.text
    pid = str(page.url).rsplit("/", 1)[1]
    img = c.get(f"/image/{pid}")
    expected_name = next(r["image"] for r in rows if r["question"] in page.text)
    assert img.content == (root / "VQA_RAD Image Folder" / expected_name).read_bytes()
    assert img.headers["content-type"] == "image/jpeg"


def test_cli_totp_user_seed_warning_and_password_policy(tmp_path):
    from medmm.humaneval.models import AuditEvent, Study

    db = str(tmp_path / "he.sqlite")
    out = invoke("create-user", "boss", "--db", db, "--admin", "--totp", "--password", "boss-long-password").output
    assert "otpauth://totp/" in out
    result = runner.invoke(app, ["humaneval", "create-user", "weak", "--db", db, "--password", "password1234"])
    assert result.exit_code != 0 and "too common" in str(result.exception)
    pred = write_predictions(tmp_path / "m.jsonl", [{"id": "1", "prediction": "p"}])
    result = invoke("create-study", "--db", db, "--name", "s", "--pred", str(pred), "--raters", "boss",
                    "--seed", "5", "--owner", "boss")
    assert "WARNING: an explicit seed" in result.output
    engine, factory = open_db(db)
    with factory() as s:
        assert s.scalar(select(User.totp_secret).where(User.username == "boss"))
        assert s.scalar(select(Study.seeded))
        actions = [(e.action, e.username[:4]) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    engine.dispose()
    assert actions[:2] == [("user_created", "cli:"), ("study_created", "cli:")]
    assert ("seed_chosen", "cli:") in actions and ("role_granted", "cli:") in actions
