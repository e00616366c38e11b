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


def test_roles_lock_and_audit_in_the_browser(page, tmp_path):
    """An admin creates a study and makes mona its monitor; alice rates; mona sees progress and
    agreement but no system name; the admin locks the study; alice's change is refused; the audit
    command lists every step and verifies the chain."""
    from typer.testing import CliRunner

    from medmm.cli import app as cli_app

    set_password_cost(1, 1024)
    url = str(tmp_path / "he.sqlite")
    engine, factory = open_db(url)
    with factory.begin() as s:
        create_user(s, "admin", "admin-password", admin=True)
        create_user(s, "alice", "alice-password")
        create_user(s, "mona", "mona-password")
    pred_paths = [str(write_predictions(tmp_path / f"{name}.jsonl", [
        {"id": str(i), "prediction": _prediction(i, k)} for i in range(N_CASES)])) for k, name in enumerate(SYSTEMS)]
    with serve_in_thread(create_app(url, secret_key="browser-test")) as base:
        _login(page, base, "admin")
        page.goto(base + "/admin")
        page.fill("#study-name", "roles")
        page.set_input_files("#study-pred", pred_paths)
        page.fill("#study-raters", "alice")
        page.click("#create-study")
        page.wait_for_selector("#progress")
        page.fill("#role-username", "mona")
        page.select_option("#role-role", "monitor")
        page.click("#grant")
        page.wait_for_selector("#roles li")
        assert "mona: monitor" in page.inner_text("#roles")
        study_url = page.url.split("?")[0]
        _logout(page)

        _login(page, base, "alice")
        page.click("a[id^=resume-]")
        page.wait_for_selector("#rating-form")
        for field in ("correctness", "completeness", "usefulness"):
            page.check(f"#{field}-4")
        page.wait_for_function("() => document.getElementById('save-status').textContent === 'saved'")
        _logout(page)

        _login(page, base, "mona")
        page.click("a[id^=monitor-]")
        page.wait_for_selector("#agreement")
        html = page.content()
        assert "alice" in page.inner_text("#progress") and "Krippendorff" in html
        assert not any(name in html for name in SYSTEMS)
        page.goto(study_url)
        assert "403" in page.inner_text("h1")
        page.goto(base + "/")
        _logout(page)

        _login(page, base, "admin")
        page.goto(study_url)
        page.click("#lock")
        page.wait_for_function("() => document.getElementById('study-status').textContent === 'locked'")
        _logout(page)

        _login(page, base, "alice")
        page.click("a[id^=resume-]")
        page.wait_for_selector("#locked")
        page.check("#correctness-1")
        page.wait_for_function("() => document.getElementById('save-status').textContent.includes('HTTP 409')")
        page.click("#save-next")
        page.wait_for_selector("#error-detail")
        assert "locked" in page.inner_text("#error-detail")
        page.goto(base + "/")
        _logout(page)

    with factory() as s:
        rows = export_rows(s, get_study(s, "roles").id)
    engine.dispose()
    assert [r["correctness"] for r in rows] == [4]  # the locked study kept alice's answer
    result = CliRunner().invoke(cli_app, ["humaneval", "audit", "--db", url])
    assert result.exit_code == 0, result.output
    steps = [tuple(line.split()[3:5]) for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    # Every step of this test, in order (autosave may split alice's three answers into several saves).
    expected = [("login", "user=admin"), ("study_created", "user=admin"), ("role_granted", "user=admin"),
                ("logout", "user=admin"), ("login", "user=alice"), ("rating_created", "user=alice"),
                ("logout", "user=alice"), ("login", "user=mona"), ("logout", "user=mona"),
                ("login", "user=admin"), ("study_locked", "user=admin"), ("logout", "user=admin"),
                ("login", "user=alice"), ("logout", "user=alice")]
    web_steps = [st for st in steps if st[0] not in ("user_created", "rating_changed")]
    assert web_steps == expected, result.output
    assert all(st == ("rating_changed", "user=alice") for st in steps if st[0] == "rating_changed")
    assert "chain OK" in result.output
