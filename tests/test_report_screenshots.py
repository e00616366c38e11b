"""The demo page and a run report in headless Chromium: every figure opens full size (the light
box shows the PNG at its natural size, and the figure links to the PNG itself), and the
screenshots in docs/ are taken here.

Slow (it runs `medmm demo --quick`, about a minute or more on 2 shared cores). To screenshot a full demo
instead, point MEDMM_DEMO_OUT at its output folder; MEDMM_SAVE_SCREENSHOTS=1 copies the
screenshots into docs/ (demo_screenshot.png, demo_lightbox_screenshot.png, run_report_screenshot.png).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
DOCS = Path(__file__).resolve().parents[1] / "docs"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    given = os.environ.get("MEDMM_DEMO_OUT")
    if given and (Path(given) / "index.html").is_file():
        return Path(given)
    from medmm.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo") / "out", quick=True, log=lambda msg: None).out_dir


@pytest.fixture(scope="module")
def page():
    profile = tempfile.mkdtemp(prefix="medmm-chromium-")
    with playwright_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                    viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        ctx.set_default_timeout(20_000)
        try:
            yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def _every_figure_opens_full_size(page, html: Path) -> int:
    """Click each thumbnail: its light box must show the same PNG at natural size; close it again.
    Returns the number of figures checked."""
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert broken == [], broken
    anchors = page.eval_on_selector_all("figure.fig > a[href^='#fig-']", "els => els.map(e => e.getAttribute('href'))")
    assert anchors, f"{html}: no figure opens full size"
    for href in anchors:
        thumb = page.locator(f"figure.fig > a[href='{href}']")
        thumb.scroll_into_view_if_needed()
        thumb.click()
        box = page.locator(f"div.lightbox{href}")
        box.wait_for(state="visible")
        img = box.locator("img")
        info = img.evaluate("i => ({w: i.clientWidth, h: i.clientHeight, nw: i.naturalWidth, nh: i.naturalHeight, src: i.src})")
        assert info["nw"] > 0 and (info["w"], info["h"]) == (info["nw"], info["nh"]), (href, info)
        thumb_src = thumb.locator("img").evaluate("i => i.src")
        assert info["src"] == thumb_src
        # the caption links to the PNG itself, which exists next to the page
        png_links = box.locator("figcaption a[href$='.png']")
        assert png_links.count() == 1
        assert (html.parent / png_links.get_attribute("href")).is_file()
        box.locator("a[href='#_']").last.click()
        box.wait_for(state="hidden")
    return len(anchors)


def _save(page, name: str, tmp: Path, full_page: bool = True) -> Path:
    shot = tmp / name
    page.screenshot(path=str(shot), full_page=full_page)
    if os.environ.get("MEDMM_SAVE_SCREENSHOTS"):
        from PIL import Image

        with Image.open(shot) as im:  # 256 colours: a third of the bytes, still sharp text
            im.convert("RGB").quantize(colors=256).save(DOCS / name, optimize=True)
    return shot


def test_demo_page_and_run_report_figures_open_full_size(demo_dir, page, tmp_path):
    from PIL import Image, ImageStat

    n_demo = _every_figure_opens_full_size(page, demo_dir / "index.html")
    assert n_demo >= 6  # VQA examples, by question type, loss, forest plot, explanation panels
    page.goto((demo_dir / "index.html").as_uri())
    shots = [_save(page, "demo_screenshot.png", tmp_path)]
    # one light box open, as a reader sees it
    first = page.locator("figure.fig > a[href^='#fig-']").first
    first.click()
    shots.append(_save(page, "demo_lightbox_screenshot.png", tmp_path, full_page=False))

    run_report = demo_dir / "runs" / "vqa" / "report.html"
    assert _every_figure_opens_full_size(page, run_report) >= 3
    page.goto(run_report.as_uri())
    shots.append(_save(page, "run_report_screenshot.png", tmp_path))
    for shot in shots:
        with Image.open(shot) as im:
            assert ImageStat.Stat(im.convert("L")).stddev[0] > 10, f"{shot.name} is blank"
