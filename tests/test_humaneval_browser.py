"""End to end in headless Chromium: an admin creates a study in the UI, two raters log in and rate
(JS autosave and the form's "Save and next"), and the export holds exactly their ratings."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from medmm.humaneval.app import create_app
from medmm.humaneval.db import open_db
from medmm.humaneval.export import export_rows
from medmm.humaneval.security import set_password_cost
from medmm.humaneval.studies import create_user, get_study
from medmm.humaneval.testing import serve_in_thread, write_predictions

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian chromium not installed (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")

SYSTEMS = ("modelred", "modelblue")
N_CASES = 3


@pytest.fixture
def page():
    """A page of the system Chromium (never a downloaded browser) with a new empty profile."""
    profile = tempfile.mkdtemp(prefix="medmm-chromium-")
    with playwright_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1280, "height": 1000}
        )
        ctx.set_default_timeout(20_000)
        try:
            yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def _login(page, base, user):
    page.goto(base + "/login")
    page.fill("#username", user)
    page.fill("#password", f"{user}-password")
    page.click("#login")
    page.wait_for_selector("#logout")


def _logout(page):
    page.click("#logout")
    page.wait_for_selector("#username")


def _prediction(case: int, k: int) -> str:
    # Text that tells the test (not the rater) which system wrote it: "finding 2.1" = case 2, system 1.
    return f"finding {case}.{k}"


def _shown_item(page) -> tuple[str, str]:
    """(item id, system) decoded from the output text shown on the page."""
    case, k = page.inner_text("#output-0").strip().removeprefix("finding ").split(".")
    return case, SYSTEMS[int(k)]


def _rate_current(page, values: dict, *, submit: bool) -> tuple[str, str]:
    page.wait_for_selector("#rating-form")
    item = _shown_item(page)
    # The image comes through the authenticated route and really loads.
    page.wait_for_function("() => { const i = document.querySelector('.image img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    for field in ("correctness", "completeness", "usefulness"):
        page.check(f"#{field}-{values[field]}")
    page.fill("#err_sig_missing_finding", str(values["err_sig_missing_finding"]))
    page.fill("#comment", values["comment"])
    page.click("h2")  # blur: the number field fires "change"
    # Autosave: wait until the page reports the last change saved.
    page.wait_for_function("() => document.getElementById('save-status').textContent === 'saved'")
    if submit:
        url = page.url
        page.click("#save-next")
        page.wait_for_function(f"() => location.href !== {json.dumps(url)}")
    return item


def test_admin_creates_study_two_raters_rate_and_export(page, tmp_path):
    from PIL import Image

    set_password_cost(1, 1024)
    url = str(tmp_path / "he.sqlite")
    engine, factory = open_db(url)
    with factory.begin() as s:
        create_user(s, "admin", "admin-password", admin=True)
        create_user(s, "alice", "alice-password")
        create_user(s, "bob", "bob-password")
    (tmp_path / "images").mkdir()
    for i in range(N_CASES):
        Image.new("RGB", (32, 24), color=(40 * i, 80, 120)).save(tmp_path / "images" / f"case{i}.png")
    pred_paths = []
    for k, sysname in enumerate(SYSTEMS):
        rows = [{"id": str(i), "prediction": _prediction(i, k), "image": f"case{i}.png",
                 "reference": f"reference of case {i}"} for i in range(N_CASES)]
        pred_paths.append(str(write_predictions(tmp_path / f"{sysname}.jsonl", rows)))

    entered: dict[tuple[str, str, str], dict] = {}
    with serve_in_thread(create_app(url, secret_key="browser-test", image_roots=[tmp_path])) as base:
        # Admin: create the study from uploaded predictions files.
        _login(page, base, "admin")
        page.goto(base + "/admin")
        page.fill("#study-name", "e2e")
        page.set_input_files("#study-pred", pred_paths)
        page.fill("#study-raters", "alice,bob")
        page.fill("#study-images", str(tmp_path / "images"))
        page.click("#create-study")
        page.wait_for_selector("#progress")
        assert "modelred" in page.content() and "alice" in page.content()
        _logout(page)

        # Alice: two items with "Save and next", a third only autosaved, then she leaves.
        _login(page, base, "alice")
        page.click("a[id^=resume-]")
        for k in range(3):
            page.wait_for_selector("#rating-form")
            assert "modelred" not in page.content() and "modelblue" not in page.content()
            vals = {"correctness": 1 + k, "completeness": 5 - k, "usefulness": 3,
                    "err_sig_missing_finding": k, "comment": f"alice note {k}"}
            item = _rate_current(page, vals, submit=k < 2)
            entered[("alice", *item)] = {**vals, "completed": k < 2}
        last_autosaved = page.url
        # She closes the tab without pressing anything; autosave already stored her answers.
        page.goto(base + "/")
        _logout(page)
        # She comes back: "Resume" opens the item she had not finished, with her answers.
        _login(page, base, "alice")
        page.click("a[id^=resume-]")
        page.wait_for_selector("#rating-form")
        assert page.url == last_autosaved
        assert page.is_checked("#correctness-3")
        assert page.input_value("#comment") == "alice note 2"
        _logout(page)

        # Bob: one item.
        _login(page, base, "bob")
        page.click("a[id^=resume-]")
        vals = {"correctness": 2, "completeness": 2, "usefulness": 4, "err_sig_missing_finding": 1,
                "comment": "bob's note <b>ok</b>"}
        item = _rate_current(page, vals, submit=True)
        entered[("bob", *item)] = {**vals, "completed": True}
        _logout(page)

    with factory() as s:
        rows = export_rows(s, get_study(s, "e2e").id)
    engine.dispose()
    got = {
        (r["rater"], r["item_id"], r["system"]): {
            "correctness": r["correctness"], "completeness": r["completeness"], "usefulness": r["usefulness"],
            "err_sig_missing_finding": r["err_sig_missing_finding"], "comment": r["comment"],
            "completed": r["completed"],
        }
        for r in rows
    }
    assert len(rows) == 4
    assert got == entered, json.dumps({"got": str(got), "entered": str(entered)})
