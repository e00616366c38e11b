"""Run reports a person can read: figures open full size (light box + PNG link), split headers
say their n, validation curves never put counts or other scales on the rates' axis, VQA
question types are case-normalised."""

from __future__ import annotations

import re

from medmm.engine import report as rep
from medmm.engine import rundir as rd
from medmm.metrics.vqa import vqa_metrics

LOG = ("epoch,step,train/loss_step,val/loss,val/overall_accuracy,val/n,val/n_open,val/by_answer_type/OPEN/n,"
       "val/by_answer_type/OPEN/overall_accuracy,val/text_to_image/R@10,val/text_to_image/mrr\n"
       "0,0,1.0,,,,,,,,\n0,5,,0.9,0.2,142,79,79,0.1,40.0,0.3\n1,10,,0.8,0.3,142,79,79,0.15,55.0,0.4\n")


def _run(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/metrics.csv").write_text(LOG)
    rd.write_json(tmp_path / "metrics/val.json", {
        "metrics": {"overall_accuracy": 0.3, "labels": ["a", "b"], "confusion_matrix": [[3, 1], [0, 4]],
                    "by_question_type": {"PRES": {"n": 6, "overall_accuracy": 0.5}, "POS": {"n": 2, "overall_accuracy": 0.0}}},
        "provenance": {"n_samples": 142, "n_skipped": 0},
    })
    return tmp_path


def test_counts_and_other_scales_never_share_the_rates_axis(tmp_path, monkeypatch):
    plotted = {}
    real = rep._line_plot

    def spy(series, ylabel, path, **kw):
        plotted[path.name] = sorted(series)
        return real(series, ylabel, path, **kw)

    monkeypatch.setattr(rep, "_line_plot", spy)
    rep.write_report(_run(tmp_path))
    assert plotted["val_metrics.png"] == ["val/overall_accuracy", "val/text_to_image/mrr"]
    assert plotted["val_metrics_other.png"] == ["val/text_to_image/R@10"]  # percent: its own axis
    assert not any("/n" in k or "/by_" in k for names in plotted.values() for k in names)


def test_every_figure_opens_full_size_and_headers_say_n(tmp_path):
    html = rep.write_report(_run(tmp_path)).read_text()
    assert "<h2>val (n = 142)</h2>" in html
    thumbs = re.findall(r'<figure class="fig [^"]*"><a href="#(fig-[^"]+)" title="open full size"><img src="([^"]+)"', html)
    assert len(thumbs) == len(re.findall(r"<figure class=\"fig", html)) >= 4  # loss, 2 val curves, by type, confusion
    for anchor, src in thumbs:
        box = re.search(rf'<div class="lightbox" id="{anchor}">.*?</div>', html)
        assert box and f'<img src="{src}"' in box.group(0) and f'<a href="{src}">open the PNG</a>' in box.group(0)
        assert (tmp_path / src).stat().st_size > 1000
    assert ".lightbox:target{display:block}" in html and "<script" not in html


def test_question_types_are_case_normalised():
    m = vqa_metrics(["yes", "no", "x"], ["yes", "yes", "x"], question_types=["OTHER", "Other", " other "])
    assert list(m["by_question_type"]) == ["OTHER"] and m["by_question_type"]["OTHER"]["n"] == 3
