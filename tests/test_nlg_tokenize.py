"""medmm.metrics.nlg.tokenize: the Java-free PTB tokenisation equals pycocoevalcap's (CoreNLP 3.4.1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_dataset
from medmm.metrics.nlg.tokenize import PUNCTUATIONS, coco_tokenize, ptb_tokenize, tokenize_corpus

# Expected strings are what `PTBTokenizer -preserveLines -lowerCase` (CoreNLP 3.4.1) printed for the
# same lines, one file, in this order (so each line's lexer context is the next line).
LINES = [
    'The heart (size) is normal [stable] {x} "quoted" it\'s don\'t cannot.',
    "Etc. No. 5 and 5 7/8 and 1/2 and 12/03/2004 and T8-T9, XXXX.",
    "Heart size 3.5cm, 4-5 mm; 50% & &amp; x-ray L1-L2 s/p w/o \u00bd e.g. approx. 10 mm.",
    "Lungs are clear.No effusion... . . . ok -- - --- Dr. Smith vs. Mr. Jones",
    "in twin B.",
    "The end.",
    "Caf\u00e9 na\u00efve \u2265 5 mm \u2013 \u201ccurly\u201d \u2018single\u2019 1,000 cc",
]
JAVA = [
    "the heart -lrb- size -rrb- is normal -lsb- stable -rsb- -lcb- x -rcb- `` quoted '' it 's do n't can not .",
    "etc. . no. 5 and 5\xa07/8 and 1/2 and 12/03/2004 and t8-t9 , xxxx .",
    "heart size 3.5 cm , 4-5 mm ; 50 % & & x-ray l1-l2 s/p w/o 1/2 e.g. approx . 10 mm .",
    "lungs are clear.no effusion ... ... ok -- - -- dr. smith vs. mr. jones",
    "in twin b .",
    "the end .",
    "caf\u00e9 na\u00efve \u2265 5 mm -- `` curly '' ` single ' 1,000 cc",
]


@pytest.mark.parametrize("i", range(len(LINES)))
def test_ptb_tokens_equal_corenlp(i):
    nxt = LINES[i + 1] if i + 1 < len(LINES) else None
    assert " ".join(ptb_tokenize(LINES[i], nxt)) == JAVA[i]


def test_sentence_end_rules_see_the_next_caption():
    # "B." before a capitalised sentence word is split, before lowercase it stays one token.
    assert ptb_tokenize("in twin B.", "The end.") == ("in", "twin", "b", ".")
    assert ptb_tokenize("in twin B.", "the end.") == ("in", "twin", "b.")
    assert ptb_tokenize("prior CT.", "The heart") == ("prior", "ct.", ".")
    assert ptb_tokenize("prior CT.", None) == ("prior", "ct.")


def test_coco_tokenize_drops_punctuation_but_keeps_lowercased_brackets():
    assert coco_tokenize("No acute disease.") == "no acute disease"
    # pycocoevalcap lists -LRB-, but the lexer output is lowercased first, so -lrb- survives.
    assert coco_tokenize("Heart (normal).") == "heart -lrb- normal -rrb-"
    assert "-lrb-" not in PUNCTUATIONS and "-LRB-" in PUNCTUATIONS


def test_tokenize_corpus_matches_line_order_and_identity_mode():
    caps = {"a": ["in twin B."], "b": ["The end."]}
    assert tokenize_corpus(caps) == {"a": ["in twin b"], "b": ["the end"]}
    assert tokenize_corpus(caps, tokenize=False) == caps


def test_newlines_inside_a_caption_are_spaces_and_empty_is_empty():
    assert coco_tokenize("Heart\nnormal") == "heart normal"
    assert coco_tokenize("") == ""
    assert coco_tokenize("...") == ""


def _java_tokenize(lines: list[str]) -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    jar = Path(next(iter(spec.submodule_search_locations))) / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines))
    try:
        out = subprocess.run(
            ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", f.name],
            capture_output=True, check=True,
        ).stdout.decode("utf-8")
    finally:
        Path(f.name).unlink()
    return out.split("\n")[: len(lines)]


@pytest.mark.skipif(shutil.which("java") is None, reason="Java not installed (needed only for the reference)")
def test_equals_java_tokenizer_on_real_reports():
    pytest.importorskip("pycocoevalcap")
    path = shared_dataset("iu_xray_reports") / "r2gen_annotation" / "annotation.json"
    ann = json.loads(path.read_text())
    lines = [" ".join(it["report"].split()) for v in ann.values() for it in v][:1500]
    java = _java_tokenize(lines)
    mine = [" ".join(ptb_tokenize(s, lines[i + 1] if i + 1 < len(lines) else None)) for i, s in enumerate(lines)]
    bad = [(s, j, m) for s, j, m in zip(lines, java, mine, strict=False) if j != m]
    assert not bad, bad[:3]


# ---- fast paths: each must give exactly what the lexer rules alone give ------------------------------
def _both_scans(text: str, nxt: str | None) -> tuple[list[str], list[str]]:
    from medmm.metrics.nlg.tokenize import _CONTEXT, _scan

    if nxt is None:
        return _scan(text), _scan(text, fast=False)
    window = text + "\n" + nxt[:_CONTEXT]
    return _scan(window, len(text)), _scan(window, len(text), fast=False)


def test_fast_paths_equal_rule_scan_on_real_texts():
    import random

    ann = json.loads((shared_dataset("iu_xray_reports") / "r2gen_annotation" / "annotation.json").read_text())
    lines = [" ".join(it["report"].split()) for v in ann.values() for it in v]
    roco = shared_dataset("roco_captions_textonly") / "data" / "test" / "radiology" / "captions.txt"
    if roco.is_file():
        lines += [" ".join(ln.split("\t", 1)[-1].split()) for ln in roco.read_text(encoding="utf-8").splitlines()[:3000]]
    rng = random.Random(0)
    for i in sorted(rng.sample(range(len(lines) - 1), 400)):
        fast, slow = _both_scans(lines[i], lines[i + 1])
        assert fast == slow, lines[i]


_PIECES = ["The", "heart", "is", "normal", "cannot", "Dr.", "no.", "5", "7/8", "3.5cm", "(", ")", "[", "]", "x-ray",
           ",", ";", ":", ".", "...", "e.g.", "etc.", "U.S.", "B.", "it's", "'", '"', "&amp;", "5th", "XXXX.", "555-1234",
           "a", "I.", "Fig.", "\u00bd", "\u2013", "caf\u00e9", "1,000", "-", "/", "?", "clear.", "Lungs", "5.", "St.", "In"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from([" ", " ", "", "  ", "\t"])), max_size=20),
       st.sampled_from([None, "", "The end.", "the end", "(x)", "5 mm", ". . .", " Lungs", "x"]))
def test_fast_paths_equal_rule_scan_on_made_up_texts(pieces, nxt):
    text = "".join(a + b for a, b in pieces)
    fast, slow = _both_scans(text, nxt)
    assert fast == slow


def test_period_safe_test_equals_the_lexer_probe():
    import random
    import re

    from medmm.metrics.nlg import tokenize as T

    words = {"cannot", "Cannot", "etc", "al", "Jan", "Mr", "Mrs", "Dr", "fig", "Fig", "no", "No", "vs", "approx",
             "St", "Inc", "Ph", "clear", "normal", "XXXX", "heart", "spine", "Ms", "Miss", "miss", "Mass", "mass"}
    for pat in (T._ABMONTH, T._ABSTATE, T._ABTITLE, T._ABCOMP, T._ABCOMP2, T._ABPTIT, T._ABNUM):
        words.update(w for w in re.findall(r"[A-Za-z]{2,}", pat)[:8])
    rng = random.Random(0)
    words.update("".join(rng.choice("aeiomrstdnMDS") for _ in range(rng.randint(2, 4))) for _ in range(150))
    for w in sorted(words):
        assert T._period_safe(w) == T._period_safe_probe(w), w
