"""`medmm demo` end to end in quick mode: every part of the report exists and its numbers are the runs'."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from medmm.demo import run_demo


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.links: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "h2":
            self._in_h2 = True
            self.h2.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_demo(out, quick=True, log=lambda msg: None)
    return result


def test_demo_report_has_every_part(demo):
    page = demo.report.read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(page)
    titles = " | ".join(parsed.h2)
    for part in ("Data", "Visual question answering", "retrieval", "fusing image and text", "Explanations", "Human evaluation"):
        assert part in titles, titles
    # every image and local link on the page exists; images decode
    from PIL import Image

    assert len(parsed.imgs) >= 6
    for src in parsed.imgs:
        with Image.open(demo.out_dir / src) as im:
            im.load()
            assert im.size[0] > 0
    for href in parsed.links:
        if href.startswith("#"):  # a figure's light box (or its close link): an element of this page
            assert href == "#_" or f'id="{href[1:]}"' in page, href
            continue
        assert (demo.out_dir / href).exists(), href


def test_demo_numbers_come_from_the_runs(demo):
    page = demo.report.read_text(encoding="utf-8")
    vqa = json.loads((demo.out_dir / "runs" / "vqa" / "metrics" / "val.json").read_text())["metrics"]
    # the VQA run's validation part chose its epoch: shown (and stored) as a selection number
    assert f"selection_val overall accuracy</td><td>{vqa['selection_overall_accuracy']:.3f}" in page
    assert 'src="runs/vqa/plots/vqa_examples_val.png"' in page  # the answers, with the attended cells
    ret = json.loads((demo.out_dir / "runs" / "retrieval" / "metrics" / "test.json").read_text())["metrics"]
    r10 = ret["text_to_image"]["R@10"]
    assert f"{r10:.2f}" in page
    rows = (demo.out_dir / "ablation" / "table.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # header + image_only, text_only, early
    image_only_auroc = float(rows[1].split(",")[4])
    assert f"{image_only_auroc:.3f}" in page


def test_demo_study_and_explanations(demo):
    from sqlalchemy import create_engine, text

    db = demo.out_dir / "humaneval" / "study.sqlite"
    n_preds = sum(1 for _ in (demo.out_dir / "runs" / "vqa" / "predictions" / "val.jsonl").open())
    with create_engine(f"sqlite:///{db}").connect() as con:
        n_cases = con.execute(text("select count(*) from he_case")).scalar()
        shown = con.execute(text("select show_explanations from he_study")).scalar()
        explanations = con.execute(text("select explanation from he_output")).scalars().all()
    assert n_cases == n_preds
    # the rater sees the evidence the model reports (image cells attended, ...) under each answer
    assert shown and all(e and "Image cells attended most" in e for e in explanations)
    assert demo.parts["humaneval"]["n_items"] == n_preds
    assert "medmm humaneval serve --db sqlite:///" in demo.parts["humaneval"]["serve"]
    # lean run folders: model.pt stays, no checkpoint copies unless --keep-checkpoints
    assert not list(demo.out_dir.rglob("*.ckpt")) and (demo.out_dir / "runs" / "retrieval" / "model.pt").is_file()
    for name in ("organ_classifier", "vqa"):
        summary = json.loads((demo.out_dir / "explanations" / name / "explanations.json").read_text())
        assert summary["n_samples"] >= 1
        assert list((demo.out_dir / "explanations" / name).rglob("*.png"))


@pytest.mark.browser
def test_demo_report_renders_in_chromium(demo, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400", f"--screenshot={shot}",
           demo.report.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    from PIL import Image, ImageStat

    with Image.open(shot) as im:
        stat = ImageStat.Stat(im.convert("L"))
    assert stat.stddev[0] > 10, "screenshot is blank"
    # and the browser itself loads every image (no broken links): ask it through the DOM
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed: image loading checked by file only")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(demo.report.as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        n = page.evaluate("document.images.length")
        browser.close()
    assert n >= 6 and broken == [], broken
    assert re.search(r"medmm demo", demo.report.read_text())
