"""medmm.metrics.nlg.meteor: METEOR 1.5 pieces against values printed by the Java jar (meteor-1.5.jar).

These tests read the jar's WordNet/function-word data but use a one-pair paraphrase table written
here, so they run in seconds; the full-table comparison on real reports is in test_nlg_parity.py.
"""

from __future__ import annotations

import gzip

import pytest

pytest.importorskip("pycocoevalcap")

from medmm.errors import BadInputError
from medmm.metrics.nlg import meteor_data
from medmm.metrics.nlg.meteor import MeteorScorer, meteor_scores
from medmm.metrics.nlg.meteor_data import load_resources, normalize_line, resource_paths


@pytest.fixture()
def res(tmp_path, monkeypatch):
    """Real jar resources + a paraphrase table holding only 'cardiac' -> 'heart'."""
    monkeypatch.setenv("MEDMM_CACHE", str(tmp_path / "cache"))
    para = tmp_path / "paraphrase-en.gz"
    with gzip.open(para, "wt", encoding="utf-8") as f:
        f.write("0.5\ncardiac\nheart\n")
    jar, _ = resource_paths()
    return load_resources(jar, para)


def test_normaliser_equals_java(res):
    # Printed by `java -cp meteor-1.5.jar edu.cmu.meteor.util.Normalizer en true` (then lowercased).
    line = "Heart-size is normal, e.g. 1,000 cc at U.S. hospitals... no. 5 (stable) it's Dr. Smith's ct. The end."
    want = "Heart size is normal , eg 1,000 cc at US hospitals ... no . 5 ( stable ) it 's Dr. Smith 's ct . The end ."
    assert normalize_line(line, res.nonbreaking) == want.lower()
    assert normalize_line("no. 5 and No. in. xxxx-xxxx 2.5cm", res.nonbreaking) == "no . 5 and no. in. xxxx xxxx 2.5cm"


def test_scores_equal_java_segment_and_corpus(res):
    # Reference, hypothesis -> METEOR 1.5 (`-l en -norm`, SCORE then EVAL) printed by the jar.
    refs = [["lung clear"], ["big heart"], ["heart silhouette"], ["lungs are clear"], ["no effusion"]]
    hyps = ["lungs clear", "large heart", "cardiac silhouette", "lungs are clear", ""]
    corpus, per = meteor_scores(hyps, refs, res)
    assert per == pytest.approx([0.8, 0.8999999999999999, 0.8, 1.0, 0.0], abs=1e-12)
    assert corpus == pytest.approx(0.7746478873239437, abs=1e-12)


def test_stats_of_stem_synonym_and_paraphrase_matches(res):
    sc = MeteorScorer({"lungs", "lung", "clear", "big", "large", "heart", "cardiac", "silhouette"}, res)
    # (test len, ref len, test fn words, ref fn words, content/function matches per module, chunks)
    assert sc.stats(["lungs", "clear"], ["lung", "clear"]) == (2, 2, 0, 0, (1, 1, 0, 0), (1, 1, 0, 0), (0,) * 4, (0,) * 4, 1)
    assert sc.stats(["large", "heart"], ["big", "heart"])[4] == (1, 0, 1, 0)
    assert sc.stats(["cardiac", "silhouette"], ["heart", "silhouette"])[4] == (1, 0, 0, 1)
    # Without the paraphrase pair there is no match for "cardiac": lower score.
    plain = MeteorScorer({"cardiac", "heart", "silhouette"}, res)
    plain._trie = type(plain._trie)([])
    assert plain.score(plain.stats(["cardiac", "silhouette"], ["heart", "silhouette"])) == pytest.approx(0.2)


def test_best_reference_wins_and_empty_hypothesis_is_zero(res):
    corpus, per = meteor_scores(["lungs are clear"], [["no effusion", "lungs are clear"]], res)
    assert per == [1.0] and corpus == 1.0
    corpus, per = meteor_scores([""], [["no effusion"]], res)
    assert per == [0.0] and corpus == 0.0


def test_missing_resource_files_raise_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        load_resources(tmp_path / "nope.jar", tmp_path / "nope.gz")
    bad = tmp_path / "bad.jar"
    bad.write_bytes(b"not a zip")
    para = tmp_path / "p.gz"
    with gzip.open(para, "wt") as f:
        f.write("")
    with pytest.raises(BadInputError, match="bad.jar"):
        meteor_data._load(str(bad), str(para))


def test_plain_line_shortcut_equals_normaliser(res):
    """_prep skips METEOR's normaliser for plain lowercase lines; it must give the same tokens."""
    import random

    from medmm.metrics.nlg.meteor import _is_plain
    from medmm.metrics.nlg.meteor_data import java_tokens

    rng = random.Random(0)
    lines = ["", " ", "3.5 cm", "a.b c", "no. 5", "end.", "x..y", ".5 mm", "a  b", "e.g", "u.s. a"]
    lines += ["".join(rng.choice("ab09. -',") for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    plain = [s for s in lines if _is_plain(s)]
    assert len(plain) > 300  # the shortcut is exercised
    for s in plain:
        assert tuple(s.split()) == tuple(java_tokens(normalize_line(s, res.nonbreaking))), s


def test_index_of_the_previous_format_is_converted(tmp_path, monkeypatch):
    """A v3 cache (.npz) is re-saved as memory-mappable files without re-parsing the table."""
    import numpy as np

    monkeypatch.setenv("MEDMM_CACHE", str(tmp_path / "cache"))
    para = tmp_path / "p.gz"
    with gzip.open(para, "wt", encoding="utf-8") as f:
        f.write("0.5\ncardiac silhouette\nheart\n0.1\nlung\nlungs\n")
    new = meteor_data.ParaphraseTable.load(para)
    (v4,) = (tmp_path / "cache").iterdir()
    old = v4.with_name(v4.name.replace("-v4", "-v3.npz"))
    lengths = np.diff(np.asarray(new.offsets)).astype(np.uint8)
    np.savez(old, ids=np.asarray(new.ids), lengths=lengths, pair_key=np.asarray(new.pair_key),
             vocab=np.frombuffer("\n".join(new.words).encode(), dtype=np.uint8))
    import shutil

    shutil.rmtree(v4)
    monkeypatch.setattr(meteor_data, "_build_paraphrase_index", lambda *a: pytest.fail("re-parsed the table"))
    conv = meteor_data.ParaphraseTable.load(para)
    assert conv.words == new.words and np.array_equal(conv.offsets, new.offsets)
    assert conv.subset({"cardiac", "silhouette", "heart"}) == [(0, ("cardiac", "silhouette"), ("heart",))]


def test_corpus_meteor_from_per_sample_stats(res):
    from medmm.metrics.nlg.meteor import meteor_from_stats

    refs = [["lung clear"], ["big heart"], ["heart silhouette"], ["lungs are clear"], ["no effusion"]]
    hyps = ["lungs clear", "large heart", "cardiac silhouette", "lungs are clear", ""]
    corpus, per, stats = meteor_scores(hyps, refs, res, return_stats=True)
    assert meteor_from_stats(stats) == corpus
    assert meteor_from_stats(stats[:1]) == pytest.approx(per[0])
