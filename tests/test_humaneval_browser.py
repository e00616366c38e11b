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
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="Debian chromium/chromium-driver not installed (apt-get install chromium chromium-driver)",
    ),
]
selenium = pytest.importorskip("selenium", reason="selenium (test extra) not installed")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SYSTEMS = ("modelred", "modelblue")
N_CASES = 3


@pytest.fixture
def browser():
    profile = tempfile.mkdtemp(prefix="medmm-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, cond, timeout=15):
    return WebDriverWait(driver, timeout).until(cond)


def _login(driver, base, user):
    driver.get(base + "/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(f"{user}-password")
    driver.find_element(By.ID, "login").click()
    _wait(driver, EC.presence_of_element_located((By.ID, "logout")))


def _logout(driver):
    driver.find_element(By.ID, "logout").click()
    _wait(driver, EC.presence_of_element_located((By.ID, "username")))


def _prediction(case: int, k: int) -> str:
    # Text that tells the test (not the rater) which system wrote it: "finding 2.1" = case 2, system 1.
    return f"finding {case}.{k}"


def _shown_item(driver) -> tuple[str, str]:
    """(item id, system) decoded from the output text shown on the page."""
    case, k = driver.find_element(By.ID, "output-0").text.removeprefix("finding ").split(".")
    return case, SYSTEMS[int(k)]


def _rate_current(driver, values: dict, *, submit: bool) -> tuple[str, str]:
    item = _shown_item(driver)
    img = driver.find_element(By.CSS_SELECTOR, ".image img")
    _wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img))
    for field in ("correctness", "completeness", "usefulness"):
        driver.find_element(By.ID, f"{field}-{values[field]}").click()
    err = driver.find_element(By.ID, "err_sig_missing_finding")
    err.clear()
    err.send_keys(str(values["err_sig_missing_finding"]))
    driver.find_element(By.ID, "comment").send_keys(values["comment"])
    driver.find_element(By.TAG_NAME, "h2").click()  # blur: the number field fires "change"
    # Autosave: wait until the page reports the last change saved.
    _wait(driver, lambda d: d.find_element(By.ID, "save-status").text == "saved")
    if submit:
        url = driver.current_url
        driver.find_element(By.ID, "save-next").click()
        _wait(driver, lambda d: d.current_url != url)
    return item


def test_admin_creates_study_two_raters_rate_and_export(browser, tmp_path):
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
    with serve_in_thread(create_app(url, secret_key="browser-test")) as base:
        # Admin: create the study from uploaded predictions files.
        _login(browser, base, "admin")
        browser.get(base + "/admin")
        browser.find_element(By.ID, "study-name").send_keys("e2e")
        browser.find_element(By.ID, "study-pred").send_keys("\n".join(pred_paths))
        browser.find_element(By.ID, "study-raters").send_keys("alice,bob")
        browser.find_element(By.ID, "study-images").send_keys(str(tmp_path / "images"))
        browser.find_element(By.ID, "create-study").click()
        _wait(browser, EC.presence_of_element_located((By.ID, "progress")))
        assert "modelred" in browser.page_source and "alice" in browser.page_source
        _logout(browser)

        # Alice: two items with "Save and next", a third only autosaved, then she leaves.
        _login(browser, base, "alice")
        browser.find_element(By.CSS_SELECTOR, "a[id^=resume-]").click()
        for k in range(3):
            _wait(browser, EC.presence_of_element_located((By.ID, "rating-form")))
            assert "modelred" not in browser.page_source and "modelblue" not in browser.page_source
            vals = {"correctness": 1 + k, "completeness": 5 - k, "usefulness": 3,
                    "err_sig_missing_finding": k, "comment": f"alice note {k}"}
            item = _rate_current(browser, vals, submit=k < 2)
            entered[("alice", *item)] = {**vals, "completed": k < 2}
        last_autosaved = browser.current_url
        _logout(browser)
        # She comes back: "Resume" opens the item she had not finished, with her answers.
        _login(browser, base, "alice")
        browser.find_element(By.CSS_SELECTOR, "a[id^=resume-]").click()
        _wait(browser, EC.presence_of_element_located((By.ID, "rating-form")))
        assert browser.current_url == last_autosaved
        assert browser.find_element(By.ID, "correctness-3").is_selected()
        assert browser.find_element(By.ID, "comment").get_attribute("value") == "alice note 2"
        _logout(browser)

        # Bob: one item.
        _login(browser, base, "bob")
        browser.find_element(By.CSS_SELECTOR, "a[id^=resume-]").click()
        _wait(browser, EC.presence_of_element_located((By.ID, "rating-form")))
        vals = {"correctness": 2, "completeness": 2, "usefulness": 4, "err_sig_missing_finding": 1,
                "comment": "bob's note <b>ok</b>"}
        item = _rate_current(browser, vals, submit=True)
        entered[("bob", *item)] = {**vals, "completed": True}
        _logout(browser)

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
