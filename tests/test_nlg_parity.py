"""medmm.metrics.nlg equals pycocoevalcap on real IU X-ray report pairs (BLEU, ROUGE-L, CIDEr-D, METEOR)."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import shared_dataset
from medmm.metrics.nlg import evaluate
from medmm.metrics.nlg.tokenize import tokenize_corpus

pytest.importorskip("pycocoevalcap")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="Java not installed (reference implementation only)")


def report_pairs(n: int, n_refs: int = 1) -> tuple[dict, dict]:
    """Findings of study i (sorted by id) vs the findings of studies i+7 (and i+13)."""
    path = shared_dataset("iu_xray_reports") / "r2gen_annotation" / "annotation.json"
    items = sorted((it for v in json.loads(path.read_text()).values() for it in v), key=lambda x: x["id"])
    reports = [it["report"] for it in items]
    hyps = {items[i]["id"]: reports[i] for i in range(n)}
    refs = {items[i]["id"]: [reports[(i + off) % len(reports)] for off in (7, 13)[:n_refs]] for i in range(n)}
    return hyps, refs


def coco_scores(gts: dict, res: dict) -> tuple[dict, dict]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    corpus, per = {}, {}
    b, bl = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"bleu_{n + 1}"], per[f"bleu_{n + 1}"] = b[n], bl[n]
    corpus["rouge_l"], per["rouge_l"] = Rouge().compute_score(gts, res)
    corpus["cider_d"], per["cider_d"] = Cider().compute_score(gts, res)
    return corpus, per


def assert_equal(ours, ids, corpus, per, tol=1e-9):
    for key, value in corpus.items():
        assert ours.corpus[key] == pytest.approx(value, abs=tol), key
        for i, k in enumerate(ids):
            assert ours.samples[k][key] == pytest.approx(per[key][i], abs=tol), (key, k)


@pytest.mark.parametrize("n_refs", [1, 2])
def test_pretokenised_equals_pycocoevalcap_scorers(n_refs):
    hyps, refs = report_pairs(300, n_refs)
    gts = tokenize_corpus(refs)
    res = tokenize_corpus({k: [v] for k, v in hyps.items()})
    ours = evaluate({k: v[0] for k, v in res.items()}, gts, metrics=["bleu", "rouge_l", "cider_d"], tokenize=False)
    corpus, per = coco_scores(gts, res)
    assert_equal(ours, list(hyps), corpus, per)


@needs_java
def test_raw_text_equals_pycocoevalcap_with_java_tokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    hyps, refs = report_pairs(300, 2)
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": hyps[k]}] for k in hyps})
    assert gts == tokenize_corpus(refs) and res == tokenize_corpus({k: [v] for k, v in hyps.items()})
    ours = evaluate(hyps, refs, metrics=["bleu", "rouge_l", "cider_d"])
    corpus, per = coco_scores(gts, res)
    assert_equal(ours, list(hyps), corpus, per, tol=1e-6)


@needs_java
@pytest.mark.slow
@pytest.mark.parametrize("n_refs", [1, 2])
def test_meteor_equals_java_meteor(n_refs):
    """Java METEOR 1.5 (pycocoevalcap) vs medmm on 300 report pairs: per caption and corpus."""
    from pycocoevalcap.meteor.meteor import Meteor

    hyps, refs = report_pairs(300, n_refs)
    gts = tokenize_corpus(refs)
    res = tokenize_corpus({k: [v] for k, v in hyps.items()})
    ours = evaluate({k: v[0] for k, v in res.items()}, gts, metrics="meteor", tokenize=False)
    m = Meteor()
    corpus, per = m.compute_score(gts, res)
    del m
    assert ours.corpus["meteor"] == pytest.approx(corpus, abs=1e-9)
    for i, k in enumerate(hyps):
        assert ours.samples[k]["meteor"] == pytest.approx(per[i], abs=1e-9), k
