"""Security of the web app (FastAPI TestClient): auth on every route, isolation between raters,
CSRF, injection strings, oversized and out-of-range input, blinding, cookies and headers."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from starlette.routing import Route
from starlette.testclient import TestClient

from medmm.humaneval.app import create_app
from medmm.humaneval.db import open_db
from medmm.humaneval.models import Assignment, Rating, User
from medmm.humaneval.security import hash_password, set_password_cost, verify_password
from medmm.humaneval.studies import create_study_from_predictions, create_user
from medmm.humaneval.testing import login, write_predictions


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One SQLite db: admin, alice, bob; a single and a pairwise study both rated by alice and bob."""
    from PIL import Image

    # Cheap argon2 for speed here; the default cost is tested in test_default_password_cost.
    set_password_cost(1, 1024)
    tmp = tmp_path_factory.mktemp("he_sec")
    url = str(tmp / "he.sqlite")
    _engine, factory = open_db(url)
    with factory.begin() as s:
        create_user(s, "admin", "admin-password", admin=True)
        create_user(s, "alice", "alice-password")
        create_user(s, "bob", "bob-password")
    Image.new("L", (8, 8)).save(tmp / "img.png")
    preds = []
    for name in ("secretmodelx", "secretmodely"):
        rows = [{"id": f"c{i}", "prediction": f"text {i} variant {name[-1]}", "image": "img.png"} for i in range(3)]
        preds.append(str(write_predictions(tmp / f"{name}.jsonl", rows)))
    single = create_study_from_predictions(url, "single", preds, "single", ["alice", "bob"], images_root=tmp)
    pair = create_study_from_predictions(url, "pair", preds, "pairwise", ["alice", "bob"], images_root=tmp)
    with factory() as s:
        ids = {u: [a.public_id for a in s.scalars(
            select(Assignment).join(User, Assignment.rater_id == User.id).where(User.username == u))]
            for u in ("alice", "bob")}
    app = create_app(url, secret_key="test-secret", image_roots=[tmp])
    return {"url": url, "tmp": tmp, "app": app, "factory": factory, "ids": ids, "single": single, "pair": pair}


def client(world, user=None):
    c = TestClient(world["app"], base_url="http://testserver")
    token = login(c, user, f"{user}-password") if user else None
    return c, token


def fill(path: str, world) -> str:
    pid = world["ids"]["alice"][0]
    return (path.replace("{public_id}", pid).replace("{study_id}", str(world["single"]))
            .replace("{user_id}", "1").replace("{fmt}", "csv"))


def test_every_route_refused_without_session(world):
    c, _ = client(world)
    checked = 0
    for route in world["app"].routes:
        if not isinstance(route, Route) or route.path == "/login":
            continue
        for method in route.methods - {"HEAD"}:
            r = c.request(method, fill(route.path, world), follow_redirects=False)
            checked += 1
            assert r.status_code in (401, 403, 303), (method, route.path, r.status_code)
            if r.status_code == 303:
                assert r.headers["location"] == "/login"
            assert "secretmodel" not in r.text and "text 0" not in r.text
    assert checked >= 12


def test_login_rejects_bad_password_and_injection(world):
    c, _ = client(world)
    page = c.get("/login")
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    for user, pw in [("alice", "wrong-password"), ("alice' --", "x"), ("' OR '1'='1", "' OR '1'='1"),
                     ("admin", "' OR 1=1; --")]:
        r = c.post("/login", data={"username": user, "password": pw, "csrf_token": tok}, follow_redirects=False)
        assert r.status_code == 401
    assert c.get("/", follow_redirects=False).status_code == 303


def test_csrf_required(world):
    c, token = client(world, "alice")
    pid = world["ids"]["alice"][0]
    assert c.post(f"/api/rate/{pid}", json={"correctness": 3}).status_code == 403
    assert c.post(f"/api/rate/{pid}", json={"correctness": 3}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert c.post(f"/rate/{pid}", data={"correctness": "3"}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    # A token from another session does not work either.
    _, bob_token = client(world, "bob")
    assert c.post(f"/api/rate/{pid}", json={"correctness": 3}, headers={"X-CSRF-Token": bob_token}).status_code == 403
    r = c.post(f"/api/rate/{pid}", json={"correctness": 3}, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"})
    assert r.status_code == 403
    assert c.post(f"/api/rate/{pid}", json={"correctness": 3}, headers={"X-CSRF-Token": token}).status_code == 200


def test_login_csrf_required(world):
    c, _ = client(world)
    r = c.post("/login", data={"username": "alice", "password": "alice-password"}, follow_redirects=False)
    assert r.status_code == 403


def test_rater_isolation(world):
    c, token = client(world, "alice")
    bob_item = world["ids"]["bob"][0]
    assert c.get(f"/rate/{bob_item}").status_code == 404
    assert c.get(f"/image/{bob_item}").status_code == 404
    assert c.post(f"/api/rate/{bob_item}", json={"correctness": 1}, headers={"X-CSRF-Token": token}).status_code == 404
    assert c.post(f"/rate/{bob_item}", data={"csrf_token": token, "correctness": "1"}).status_code == 404
    # Rater pages of the admin area are refused.
    assert c.get("/admin").status_code == 403
    assert c.get(f"/admin/studies/{world['single']}/export.csv").status_code == 403
    with world["factory"]() as s:
        bob_id = s.scalar(select(User.id).where(User.username == "bob"))
        n = s.scalar(select(func.count(Rating.id)).join(Assignment).where(Assignment.rater_id == bob_id))
    assert n == 0


def test_blinding_no_system_names_in_rater_pages(world):
    c, _ = client(world, "alice")
    for pid in world["ids"]["alice"]:
        html = c.get(f"/rate/{pid}").text
        assert "secretmodel" not in html and "text" in html
    assert "secretmodel" not in c.get("/").text
    img = c.get(f"/image/{world['ids']['alice'][0]}")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "payload",
    [
        {"correctness": 0},
        {"correctness": 6},
        {"correctness": "5"},
        {"correctness": 3.5},
        {"usefulness": -1},
        {"err_sig_false_finding": 51},
        {"err_insig_wrong_location": -2},
        {"preference": "secretmodelx"},
        {"comment": "a" * 5001},
        {"unknown_field": 1},
        {"correctness": "1; DROP TABLE he_rating"},
        ["correctness", 3],
    ],
)
def test_invalid_values_rejected(world, payload):
    c, token = client(world, "alice")
    pid = world["ids"]["alice"][1]
    r = c.post(f"/api/rate/{pid}", json=payload, headers={"X-CSRF-Token": token})
    assert r.status_code in (400, 422), r.text


def test_oversized_bodies_rejected(world):
    c, token = client(world, "alice")
    pid = world["ids"]["alice"][1]
    big = "x" * (1024 * 1024)
    r = c.post(f"/api/rate/{pid}", json={"comment": big}, headers={"X-CSRF-Token": token})
    assert r.status_code == 413
    r = c.post(f"/rate/{pid}", data={"csrf_token": token, "comment": big})
    assert r.status_code == 413
    r = c.post(f"/rate/{pid}", data={"csrf_token": token, "correctness": "99", "completeness": "1", "usefulness": "1"})
    assert r.status_code == 422
    r = c.post(f"/rate/{pid}", data={"csrf_token": token, "correctness": "1 OR 1=1"})
    assert r.status_code == 422
    with world["factory"]() as s:
        row = s.scalar(select(Rating).join(Assignment).where(Assignment.public_id == pid))
    assert row is None or (row.comment is None and row.correctness in (None, 1, 2, 3, 4, 5))


def test_injection_text_is_stored_verbatim(world):
    c, token = client(world, "alice")
    pid = world["ids"]["alice"][2]
    evil = "'); DROP TABLE he_rating; -- <script>alert(1)</script>"
    assert c.post(f"/api/rate/{pid}", json={"comment": evil}, headers={"X-CSRF-Token": token}).status_code == 200
    html = c.get(f"/rate/{pid}").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html  # escaped
    with world["factory"]() as s:
        row = s.scalar(select(Rating).join(Assignment).where(Assignment.public_id == pid))
        assert row.comment == evil


def test_session_cookie_flags_and_headers(world):
    c = TestClient(world["app"])
    page = c.get("/login")
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post("/login", data={"username": "alice", "password": "alice-password", "csrf_token": tok},
               follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    # A tampered cookie is not accepted.
    name, value = r.headers["set-cookie"].split(";")[0].split("=", 1)
    c2 = TestClient(world["app"])
    c2.cookies.set(name, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert c2.get("/", follow_redirects=False).status_code == 303


def test_admin_upload_and_export(world, tmp_path):
    c, token = client(world, "admin")
    files = [
        ("pred", ("m1.jsonl", b'{"id": "1", "prediction": "a"}\n{"id": "2", "prediction": "b"}\n', "application/json")),
        ("pred", ("m2.jsonl", b'{"id": "1", "prediction": "c"}\n{"id": "2", "prediction": "d"}\n', "application/json")),
    ]
    data = {"csrf_token": token, "name": "uploaded", "design": "pairwise", "raters": "alice,bob"}
    r = c.post("/admin/studies", data=data, files=files, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = c.get(r.headers["location"])
    assert "m1" in page.text and "alice" in page.text
    bad = [("pred", ("m1.jsonl", b"not json\n", "application/json"))]
    r = c.post("/admin/studies", data={**data, "name": "bad"}, files=bad)
    assert r.status_code == 422 and "m1.jsonl: line 1" in r.text
    with_image = [("pred", ("m3.jsonl", b'{"id": "1", "prediction": "a", "image": "/etc/passwd"}\n', "application/json"))]
    r = c.post("/admin/studies", data={**data, "name": "img", "design": "single"}, files=with_image)
    assert r.status_code == 422 and "images folder" in r.text
    r = c.post("/admin/studies", data={**data, "name": "img", "design": "single", "images_root": str(tmp_path)},
               files=with_image)
    assert r.status_code == 422 and "inside a folder allowed at server start" in r.text
    r = c.post("/admin/studies", data={**data, "name": "img", "design": "single", "images_root": str(world["tmp"])},
               files=with_image)
    assert r.status_code == 422 and "outside --images-root" in r.text
    r = c.post("/admin/studies", data={**data, "name": "nocsrf", "csrf_token": "x"}, files=files)
    assert r.status_code == 403
    r = c.get(f"/admin/studies/{world['pair']}/export.json")
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert "secretmodel" not in r.text  # not unblinded: systems are "system 1", "system 2"


def test_default_password_cost():
    from argon2 import PasswordHasher
    from argon2.profiles import RFC_9106_LOW_MEMORY

    h = PasswordHasher().hash("pw-123456")  # what the app uses unless set_password_cost is called
    assert h.startswith("$argon2id$") and f"m={RFC_9106_LOW_MEMORY.memory_cost}" in h
    cheap = hash_password("pw-123456")
    assert verify_password(cheap, "pw-123456") and not verify_password(cheap, "pw-1234567")
    assert not verify_password(None, "pw-123456")
