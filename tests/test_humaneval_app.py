"""Rating flows without JavaScript: pairwise preference, required answers, resume order, progress."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from medmm.humaneval.app import create_app
from medmm.humaneval.db import open_db
from medmm.humaneval.export import export_rows
from medmm.humaneval.security import set_password_cost
from medmm.humaneval.studies import create_study_from_predictions, create_user, study_progress
from medmm.humaneval.testing import login, write_predictions


@pytest.fixture
def setup(tmp_path):
    set_password_cost(1, 1024)
    url = str(tmp_path / "he.sqlite")
    engine, factory = open_db(url)
    with factory.begin() as s:
        create_user(s, "alice", "alice-password")
        create_user(s, "admin", "admin-password", admin=True)
    preds = []
    for k, name in enumerate(("good", "bad")):
        rows = [{"id": f"c{i}", "prediction": f"out-{i}-{k}", "reference": f"ref-{i}", "question": f"q-{i}"}
                for i in range(3)]
        preds.append(str(write_predictions(tmp_path / f"{name}.jsonl", rows)))
    pair = create_study_from_predictions(url, "pair", preds, "pairwise", ["alice"], seed=1)
    single = create_study_from_predictions(url, "single", preds, "single", ["alice"], seed=1)
    app = create_app(url, secret_key="k")
    yield {"app": app, "factory": factory, "pair": pair, "single": single}
    engine.dispose()


def _form_page(c, url):
    page = c.get(url)
    assert page.status_code == 200
    pid = re.search(r'action="/rate/([^"]+)"', page.text).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return page, pid, token


def test_pairwise_no_js_flow_exports_preferred_system(setup):
    c = TestClient(setup["app"])
    login(c, "alice", "alice-password")
    chosen = {}
    url = f"/studies/{setup['pair']}/next"
    for _ in range(3):
        page, pid, token = _form_page(c, url)
        assert "good" not in page.text and "bad" not in page.text  # system names never shown
        left_text = re.search(r'id="output-0">([^<]+)<', page.text).group(1)
        # Always choose the output written by system "good" (k = 0), wherever it was shown.
        side = "left" if left_text.endswith("-0") else "right"
        assert "Reference answer" in page.text and "Reference report" not in page.text and "q-" in page.text
        r = c.post(f"/rate/{pid}", data={"csrf_token": token, "preference": side, "comment": "ok"},
                   follow_redirects=False)
        assert r.status_code == 303
        chosen[pid] = side
        url = r.headers["location"]
    assert url == "/?done=1"
    with setup["factory"]() as s:
        rows = export_rows(s, setup["pair"])
        prog = study_progress(s, setup["pair"])
    assert {r["preferred_system"] for r in rows} == {"good"}
    assert {r["preference"] for r in rows} == set(chosen.values())
    assert all(r["completed"] for r in rows) and prog[0]["completed"] == 3


def test_missing_answers_are_kept_and_asked_for(setup):
    c = TestClient(setup["app"])
    login(c, "alice", "alice-password")
    _page, pid, token = _form_page(c, f"/studies/{setup['single']}/next")
    r = c.post(f"/rate/{pid}", data={"csrf_token": token, "correctness": "4", "err_insig_false_finding": "2"})
    assert r.status_code == 422 and "Please answer: Completeness, Clinical usefulness" in r.text
    assert re.search(r'id="correctness-4"\s+checked', r.text)  # the answer given was kept
    # Not completed: resume still points at the same item.
    again = c.get(f"/studies/{setup['single']}/next", follow_redirects=False)
    assert again.headers["location"] == f"/rate/{pid}"
    r = c.post(f"/rate/{pid}", data={"csrf_token": token, "correctness": "4", "completeness": "5",
                                     "usefulness": "3"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] != f"/rate/{pid}"
    with setup["factory"]() as s:
        rows = export_rows(s, setup["single"])
    assert len(rows) == 1 and rows[0]["completed"] and rows[0]["err_insig_false_finding"] is None


def test_resume_follows_the_raters_own_order(setup):
    c = TestClient(setup["app"])
    login(c, "alice", "alice-password")
    seen = []
    url = f"/studies/{setup['single']}/next"
    for k in range(6):
        page, pid, token = _form_page(c, url)
        assert f"Item {k + 1} of 6" in page.text
        seen.append(pid)
        r = c.post(f"/rate/{pid}", data={"csrf_token": token, "correctness": "1", "completeness": "1",
                                         "usefulness": "1"}, follow_redirects=False)
        url = r.headers["location"]
    assert len(set(seen)) == 6 and url == "/?done=1"
    assert "finished" in c.get("/").text


def test_admin_pages_show_progress(setup):
    c = TestClient(setup["app"])
    login(c, "admin", "admin-password")
    html = c.get("/admin").text
    assert "pair" in html and "0 / 3" in html and "0 / 6" in html
    html = c.get(f"/admin/studies/{setup['single']}").text
    assert "good, bad" in html and "alice" in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = c.post("/admin/users", data={"csrf_token": token, "username": "carol", "password": "carol-password"},
               follow_redirects=False)
    assert r.status_code == 303
    r = c.post("/admin/users", data={"csrf_token": token, "username": "carol", "password": "carol-password"})
    assert r.status_code == 422
    r = c.post("/admin/users", data={"csrf_token": token, "username": "<script>", "password": "whatever-pw"})
    assert r.status_code == 422
