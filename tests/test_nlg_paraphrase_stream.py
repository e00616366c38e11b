"""The streamed paraphrase-index builder gives exactly the arrays of the former in-memory parser
(which held the decoded table and its token strings: ~4 GB at peak on METEOR's 5.3 M pairs)."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from medmm.metrics.nlg import meteor_data
from medmm.metrics.nlg.meteor_data import java_tokens


def _former_arrays(text: str):
    """The previous _build_paraphrase_index, up to the arrays it saved (the reference)."""
    split = java_tokens if re.search(r"[^\S \n]", text) else str.split
    lines = text.split("\n")
    refs, paras = lines[1::3], lines[2::3]
    n = min(len(refs), len(paras))
    phrases = [None] * (2 * n)
    phrases[0::2] = refs[:n]
    phrases[1::2] = paras[:n]
    lengths = np.fromiter((len(split(p)) for p in phrases), dtype=np.int64, count=2 * n)
    tokens = [t for p in phrases for t in split(p)]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(tokens))}
    ids = np.fromiter(map(vocab.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    offsets = np.zeros(2 * n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return ids, offsets, list(vocab)


CASES = {
    "plain": "0.5\ncardiac silhouette\nheart\n0.1\nlung\nlungs\n",
    "no final newline": "0.5\ncardiac silhouette\nheart\n0.1\nlung\nlungs",
    "dangling phrase": "0.5\na b\nc\n0.2\nd e",
    "dangling phrase, final newline": "0.5\na b\nc\n0.2\nd e\n",
    "tab and CR": "0.5\na\tb\r\nc d\n0.2\ne  f\ng\n",
    "no-break space stays in a word": "0.5\nx\u00a0y z\nz\n0.2\nz x\u00a0y\nq\n",
    "empty": "",
    "longer": "".join(f"0.{i}\nphrase {i} of words\nits paraphrase {i % 7}\n" for i in range(200)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_streamed_index_equals_the_former_parser(tmp_path, name):
    text = CASES[name]
    gz = tmp_path / "p.gz"
    with gzip.open(gz, "wb") as f:
        f.write(text.encode("utf-8"))
    seen = []
    # a 7-byte block: lines and triples cross block boundaries
    meteor_data._build_paraphrase_index(gz, tmp_path / "idx", progress=lambda done, total: seen.append((done, total)), block=7)
    ids, offsets, words = _former_arrays(text)
    assert np.array_equal(np.load(tmp_path / "idx" / "ids.npy"), ids)
    assert np.array_equal(np.load(tmp_path / "idx" / "offsets.npy"), offsets)
    assert (tmp_path / "idx" / "vocab.txt").read_bytes().decode("utf-8").split("\n") == (words or [""])
    assert seen and seen[-1][0] == seen[-1][1] == gz.stat().st_size


def test_ensure_builds_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMM_CACHE", str(tmp_path / "cache"))
    gz = tmp_path / "p.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(CASES["plain"])
    assert meteor_data.ensure_paraphrase_index(gz) is True
    assert meteor_data.ensure_paraphrase_index(gz) is False
    table = meteor_data.ParaphraseTable.load(gz)
    assert table.subset({"cardiac", "silhouette", "heart"}) == [(0, ("cardiac", "silhouette"), ("heart",))]
