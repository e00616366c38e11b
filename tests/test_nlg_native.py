"""medmm.metrics.nlg compiled kernels (``_native*.py``) give exactly what the pure-Python reference gives.

Every comparison runs the same inputs twice: with the kernels, and with ``_native.load`` patched to
report "unavailable" (the path a machine without a C compiler takes).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil

import pytest

from conftest import shared_dataset
from medmm.metrics.nlg import _native, evaluate

HAS_CC = any(shutil.which(c) for c in (os.environ.get("CC", "cc"), "gcc", "clang"))
# Skip only where no compiler exists: a kernel that fails to compile must fail the tests, not skip them.
needs_cc = pytest.mark.skipif(not HAS_CC, reason="no C compiler here: only the Python path runs")
NGRAM = ["bleu", "rouge_l", "cider_d"]


def python_only(monkeypatch):
    """Make every metric take its pure-Python path (as without a compiler)."""
    monkeypatch.setattr(_native, "load", lambda: None)


def assert_same(a, b):
    """Same corpus scores, per-sample scores and sufficient statistics (floats to 1e-12, ints exactly)."""
    assert a.corpus.keys() == b.corpus.keys()
    for k in a.corpus:
        assert a.corpus[k] == pytest.approx(b.corpus[k], abs=1e-12, rel=0), k
    assert a.samples.keys() == b.samples.keys()
    for i in a.samples:
        for k, v in a.samples[i].items():
            assert v == pytest.approx(b.samples[i][k], abs=1e-12, rel=0), (i, k)
    assert a.stats == b.stats


def both(monkeypatch, fn):
    fast = fn()
    with monkeypatch.context() as m:
        python_only(m)
        slow = fn()
    return fast, slow


def iu_pairs(n: int, n_refs: int) -> tuple[dict, dict]:
    path = shared_dataset("iu_xray_reports") / "r2gen_annotation" / "annotation.json"
    items = sorted((it for v in json.loads(path.read_text()).values() for it in v), key=lambda x: x["id"])
    reports = [it["report"] for it in items]
    hyps = {i: reports[i] for i in range(n)}
    refs = {i: [reports[(i + off) % len(reports)] for off in (7, 13, 29)[:n_refs]] for i in range(n)}
    return hyps, refs


@needs_cc
def test_kernels_build_where_a_compiler_exists():
    assert _native.load() is not None, "the C source did not compile (see the RuntimeWarning)"


# ---- BLEU / ROUGE-L / CIDEr-D ---------------------------------------------------------------------
@needs_cc
@pytest.mark.parametrize("n_refs", [1, 3])
def test_ngram_metrics_equal_python_on_iu_reports(monkeypatch, n_refs):
    hyps, refs = iu_pairs(300, n_refs)
    fast, slow = both(monkeypatch, lambda: evaluate(hyps, refs, metrics=NGRAM))
    assert_same(fast, slow)
    assert 0.05 < fast.corpus["bleu_4"] < 0.5 and fast.corpus["cider_d"] > 0  # a real, non-trivial score


ADVERSARIAL = {
    "empty_hyp": ("", ["no acute disease"]),
    "empty_ref": ("heart normal", [""]),
    "both_empty": ("", [""]),
    "unicode": ("épanchement ≥ 5 mm — ½ 肺 🙂", ["épanchement pleural ≥ 5 mm", "肺 normal 🙂"]),
    "repeated": ("the the the the the the the the", ["the the the", "the cat the the the"]),
    "identical": ("lungs are clear no effusion", ["lungs are clear no effusion"]),
    "long": (" ".join(f"w{i % 37}" for i in range(1500)), [" ".join(f"w{i % 41}" for i in range(1200))]),
    "many_refs": ("heart size normal", ["heart normal", "size normal", "", "heart size is normal", "x"]),
    "one_word": ("x", ["x"]),
}


@needs_cc
@pytest.mark.parametrize("tokenize", [True, False])
def test_ngram_metrics_equal_python_on_adversarial_inputs(monkeypatch, tokenize):
    hyps = {k: h for k, (h, _) in ADVERSARIAL.items()}
    refs = {k: r for k, (_, r) in ADVERSARIAL.items()}
    fast, slow = both(monkeypatch, lambda: evaluate(hyps, refs, metrics=NGRAM, tokenize=tokenize))
    assert_same(fast, slow)
    assert fast.samples["identical"]["bleu_1"] == pytest.approx(1.0)
    assert fast.samples["empty_hyp"]["rouge_l"] == 0.0


@needs_cc
def test_pretokenised_odd_spacing_keeps_rouge_split_on_single_spaces(monkeypatch):
    # tokenize=False: BLEU/CIDEr-D split on any whitespace, ROUGE-L on single spaces (pycocoevalcap).
    hyps = {"a": "heart  normal", "b": " lungs\tclear ", "c": "x\u00a0y z", "d": "a"}
    refs = {"a": ["heart normal"], "b": ["lungs clear"], "c": ["x y z"], "d": ["a  "]}
    fast, slow = both(monkeypatch, lambda: evaluate(hyps, refs, metrics=NGRAM, tokenize=False))
    assert_same(fast, slow)
    assert fast.samples["a"]["bleu_1"] == pytest.approx(1.0) and fast.samples["a"]["rouge_l"] < 1.0


@needs_cc
def test_single_sample_corpus(monkeypatch):
    # One sample: CIDEr-D's IDF is log(1) - log(1) = 0 for every n-gram, so the score is 0 (pycocoevalcap too).
    fast, slow = both(monkeypatch, lambda: evaluate({"a": "heart normal"}, {"a": ["heart normal"]}, metrics=NGRAM))
    assert_same(fast, slow)
    assert fast.corpus["cider_d"] == 0.0


# ---- METEOR -----------------------------------------------------------------------------------------
PARAPHRASES = [  # (phrase, paraphrase): one- and multi-word, both directions, overlapping prefixes
    ("cardiac silhouette", "heart"), ("heart", "cardiac silhouette"), ("heart", "cardiac"),
    ("no acute", "without acute"), ("is", "are"), ("are", "is"), ("lungs", "lung fields"),
    ("lung fields", "lungs"), ("pleural effusion", "effusion"), ("effusion", "fluid"), ("the", "the"),
    ("normal in size", "normal size"), ("is normal", "is unremarkable"), ("clear", "clear"),
]


@pytest.fixture()
def res(tmp_path, monkeypatch):
    """Real jar resources (stems, synonyms, function words) + a small paraphrase table."""
    pytest.importorskip("pycocoevalcap")
    from medmm.metrics.nlg.meteor_data import load_resources, resource_paths

    monkeypatch.setenv("MEDMM_CACHE", str(tmp_path / "cache"))
    para = tmp_path / "paraphrase-en.gz"
    with gzip.open(para, "wt", encoding="utf-8") as f:
        for a, b in PARAPHRASES:
            f.write(f"0.5\n{a}\n{b}\n")
    jar, _ = resource_paths()
    return load_resources(jar, para)


def meteor_both(monkeypatch, hyps, refs, res):
    from medmm.metrics.nlg.meteor import meteor_scores

    return meteor_scores(hyps, refs, res, return_stats=True), meteor_scores(hyps, refs, res, return_stats=True,
                                                                             native=False)


@needs_cc
def test_meteor_equals_python_on_random_word_salad(monkeypatch, res):
    # Words with stems, synonyms and paraphrases in common, repeated often: many ambiguous alignments.
    vocab = ("the lungs lung fields are is clear no acute without pleural effusion fluid heart cardiac "
             "silhouette big large normal size in unremarkable of enlarged enlargement").split()
    rng = random.Random(0)
    hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 30))) for _ in range(200)]
    refs = [[" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 30))) for _ in range(rng.randint(1, 3))]
            for _ in range(200)]
    fast, slow = meteor_both(monkeypatch, hyps, refs, res)
    assert fast == slow
    assert any(st[4][3] for st in fast[2]) and any(st[4][1] for st in fast[2]) and any(st[4][2] for st in fast[2])


@needs_cc
def test_meteor_equals_python_on_iu_reports(monkeypatch, res):
    from medmm.metrics.nlg.tokenize import tokenize_corpus

    hyps, refs = iu_pairs(150, 2)
    gts = tokenize_corpus(refs)
    out = tokenize_corpus({k: [v] for k, v in hyps.items()})
    fast, slow = meteor_both(monkeypatch, [out[k][0] for k in hyps], [gts[k] for k in hyps], res)
    assert fast == slow and 0.1 < fast[0] < 0.6


@needs_cc
def test_meteor_equals_python_on_adversarial_inputs(monkeypatch, res):
    hyps = [h for h, _ in ADVERSARIAL.values()] + ["heart heart heart is is normal normal"] * 2
    refs = [r for _, r in ADVERSARIAL.values()] + [["cardiac silhouette is normal in size heart"], ["heart " * 120]]
    hyps[list(ADVERSARIAL).index("long")] = " ".join(["the heart is normal"] * 60)  # 240 words, many ties
    fast, slow = meteor_both(monkeypatch, hyps, refs, res)
    assert fast == slow
    assert fast[1][list(ADVERSARIAL).index("identical")] > 0.99


@needs_cc
def test_paraphrase_subset_compiled_equals_numpy(monkeypatch, res):
    import numpy as np

    table = res.paraphrases
    words = ["heart", "cardiac", "silhouette", "is", "are", "lungs", "lung", "fields", "the", "effusion"]
    fast, slow = both(monkeypatch, lambda: table.subset_arrays(words))
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow, strict=True))
    assert len(fast[0]) == 8  # the pairs above whose words are all in `words`


# ---- building and loading the library ----------------------------------------------------------------
@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MEDMM_NO_NATIVE", raising=False)
    _native.load.cache_clear()
    yield tmp_path / "cache"
    _native.load.cache_clear()


@needs_cc
def test_library_is_built_once_into_the_cache(fresh_cache):
    assert _native.load() is not None
    files = sorted(p.name for p in fresh_cache.iterdir())
    assert files == [_native.library_path().name]  # no temporary file left behind
    mtime = _native.library_path().stat().st_mtime_ns
    _native.load.cache_clear()
    assert _native.load() is not None and _native.library_path().stat().st_mtime_ns == mtime


def test_without_compiler_warns_and_scores_in_python(fresh_cache, monkeypatch):
    monkeypatch.setattr(_native.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        assert _native.load() is None
    out = evaluate({"a": "heart normal"}, {"a": ["heart is normal"]}, metrics=NGRAM)
    assert out.corpus["bleu_1"] > 0.5


def test_compile_failure_warns_and_leaves_no_file(fresh_cache, monkeypatch):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with pytest.warns(RuntimeWarning, match="failed"):
        assert _native.load() is None
    assert not fresh_cache.exists() or not any(fresh_cache.iterdir())


def test_env_switch_disables_kernels(fresh_cache, monkeypatch):
    monkeypatch.setenv("MEDMM_NO_NATIVE", "1")
    assert _native.load() is None


@needs_cc
@pytest.mark.slow
def test_meteor_equals_python_with_the_full_paraphrase_table(monkeypatch):
    """1,000 IU X-ray pairs, 2 references, METEOR's real 5.3 M-pair table: identical statistics."""
    pytest.importorskip("pycocoevalcap")
    from medmm.metrics.nlg.meteor import meteor_scores
    from medmm.metrics.nlg.tokenize import tokenize_corpus

    hyps, refs = iu_pairs(1000, 2)
    gts = tokenize_corpus(refs)
    out = tokenize_corpus({k: [v] for k, v in hyps.items()})
    h, r = [out[k][0] for k in hyps], [gts[k] for k in hyps]
    fast = meteor_scores(h, r, return_stats=True)
    slow = meteor_scores(h, r, return_stats=True, native=False)
    assert fast == slow
    assert sum(st[4][3] for st in fast[2]) > 100  # paraphrase matches were used
