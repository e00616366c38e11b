"""Rule-based labeller of the 14 CheXpert observations in free-text chest X-ray reports.

Pipeline (written for medmm, after the design of the CheXpert labeller and NegBio):
  1. sections: keep FINDINGS and IMPRESSION when the report has section headers (indication
     and history mention diseases that are not findings), else the whole text;
  2. sentences and clauses: split on sentence ends, then on clause breaks (";", "but",
     "however", "which", ", the", "otherwise", ...) that end a negation's scope;
  3. mentions: the CheXpert mention phrases (bundled, MIT; see resources/), minus spans
     covered by an unmention phrase ("pericardial effusion" is no pleural effusion);
  4. each mention is classified from the words around it in its clause, in the CheXpert
     order: uncertainty that must win over negation ("cannot exclude", "no new"), then
     negation, then uncertainty, else positive. NegBio/CheXpert express these as dependency
     graph patterns; here they are regular expressions over a token window (an approximation:
     no parser, fast, no model download);
  5. aggregation per observation: positive > uncertain > negative (as CheXpert);
     No Finding is positive when no pathology (Support Devices excluded) and no other
     finding phrase is positive or uncertain; otherwise it is left absent.

Departure from CheXpert, on purpose: a generic anatomical mention of the heart or
mediastinum ("the heart", "heart size", "mediastinal contour") counts as Cardiomegaly /
Enlarged Cardiomediastinum only with a word of enlargement in its clause (or when negated or
uncertain); "the heart and lungs have not changed" is not cardiomegaly.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any

from medmm.data.schema import LabelState

# CheXpert label order (the order of its output CSV and of most papers' tables).
OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
# The 5 observations of the CheXpert competition (used by most report-generation papers).
COMPETITION_5 = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# Observations whose presence rules out "No Finding" (CheXpert excludes Support Devices).
PATHOLOGIES = tuple(o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices"))
_OTHER_FINDING = "__other_finding__"  # the no_finding.txt phrases: findings outside the 14
_ANY = "__any__"  # key of the combined regex of every phrase

VERSION = "medmm-chexpert-rules-1"

# Generic anatomical phrases: a mention only with a word of enlargement (see module doc).
_GENERIC = {
    "Cardiomegaly": {"the heart", "heart size", "cardiac size", "cardiac shadow", "cardiac contour",
                     "cardiac silhouette"},
    "Enlarged Cardiomediastinum": {"_mediastinum", "cardiomediastinum", "contour", "mediastinal configuration",
                                   "mediastinal silhouette", "pericardial silhouette",
                                   "cardiac silhouette and vascularity"},
}
_ENLARGED = re.compile(r"\b(enlarg\w*|large|larger|prominen\w*|widen\w*|increas\w*|cardiomegaly|big|dilat\w*|"
                       r"hypertroph\w*|borderline)")
# CheXpert rule: these edema phrases are uncertain mentions by themselves.
_UNCERTAIN_PHRASES = {"Edema": {"vascular congestion", "pulmonary congestion", "indistinctness",
                                "vascular prominence"}}
# Extra unmentions (medmm): "plate-like atelectasis" is no plate (support device).
_EXTRA_UNMENTION = {
    "Support Devices": ["plate-like", "platelike", "plate like", "tubercul"],
    "Pneumonia": ["granulomatous infection", "granulomatous disease"],
}
# Extra mentions (medmm): phrases the CheXpert lists miss, found on Open-i reports.
_EXTRA_MENTION = {
    "Pneumonia": ["pneumonitis"],
    # findings outside the 14 that still rule out "No Finding"
    _OTHER_FINDING: ["spondylosis", "curvature", "tortuo", "ectasia", "ectatic", "calcified nodul",
                     "granulomatous", "hypoinflat", "low lung volume", "aneurysm", "atheroma"],
}

_SECTION = re.compile(
    r"(?im)^[ \t]*(findings|impression|conclusion|indication|history|clinical history|comparison|comparisons|"
    r"technique|examination|exam|reason for (?:exam|examination|this examination)|"
    r"clinical information|clinical indication|notification|addendum|wet read|final report)[ \t]*:")
_KEEP_SECTIONS = {"findings", "impression", "conclusion"}
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n\s*\n|\n(?=\s*(?:\d+[.)]|-|\*)\s)")
_CLAUSE_BREAK = re.compile(
    r";|:|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bwhich\b|\bwhereas\b|\bwhere\b|\bwhile\b|\bexcept\b|\botherwise\b|"
    r"\bapart from\b|\baside from\b|\band (?:there|the|this|it)\b|,\s*(?=(?:there|the|this|it|with|no|a|an)\b)")

_WORD = re.compile(r"[\w'-]+")
# Uncertainty that wins over negation (CheXpert pre_negation_uncertainty.txt, as regexes).
_UNC_FIRST_PRE = re.compile(
    r"\b(cannot|can ?not|could not|not) (be )?(exclude|excluded|rule[sd]? out|ruled out)\b|\bno new\b|"
    r"\bno definite\b|\bno obvious\b|\bno evidence to rule out\b|\bnot (?:well |clearly )?(?:seen|visualized|evaluated)"
    r" (?:well|clearly)\b")
_UNC_FIRST_POST = re.compile(
    r"^[^.]{0,40}?\b(cannot|can ?not|could not|not|difficult to) (be )?(exclude|excluded|rule[sd]? out|ruled out)\b|"
    r"^[^.]{0,30}?\bnot (?:well|clearly|completely|incompletely) (?:seen|visualized|evaluated|assessed)\b|"
    r"^[^.]{0,30}?\b(?:poorly|incompletely) (?:seen|visualized|evaluated|assessed)\b")
# Negation before the mention (within the clause, up to _NEG_WINDOW words away).
_NEG_PRE = re.compile(
    r"\b(no|not|without|negative for|free of|absence of|absent|clear of|clearing of|resolution of|resolved|"
    r"removal of|removed|rather than|never|nor|neither|exclude[sd]?|ruled out|rules out|interval resolution|"
    r"disappearance of|no evidence of|no signs? of|not (?:seen|identified))\b")
_NEG_NORMAL_PRE = re.compile(r"\b(normal|unremarkable|normal-sized|normal sized)\b")
_NEG_WINDOW = 12
_NORMAL_WINDOW = 3
# Negation after the mention, e.g. "heart size is normal", "effusion has resolved".
_NEG_POST = re.compile(
    r"^[^,]{0,45}?\b(not (?:seen|identified|present|evident|visualized|demonstrated|appreciated|noted|enlarged|"
    r"detected|apparent|definitely seen)|absent|resolved|removed|has cleared|have cleared|normal|unremarkable|"
    r"within normal limits|upper limits? (?:of )?normal|negative|no longer|within limits|not significantly enlarged|"
    r"stable and normal|are clear|is clear)\b")
# Uncertainty before / after the mention.
_UNC_PRE = re.compile(
    r"\b(may|might|could|possibl[ey]|probabl[ey]|likely|unlikely|suspicious|suspect(?:ed)?|suggest\w*|concern(?:ing)? for|"
    r"concerning|question(?:able)?|equivocal|versus|vs|differential|worrisome|represent\w*|reflect\w*|indicat\w*|"
    r"favor\w*|presum\w*|cannot exclude|or|and/or|either|borderline|correlat\w*|"
    r"suspicion|uncertain|not certain|difficult|clinical correlation)\b")
_UNC_PRE_WINDOW = 8
# Uncertainty right after the mention, in the raw text: "effusion?", "edema is suspected",
# "effusion may be present", "atelectasis or consolidation"; not "opacity, may reflect X"
# (there the uncertainty is about X).
_UNC_POST = re.compile(
    r"^\s*(?:\?|(?:(?:is|are|was|were|also|again|be|not|more|less)\s+){0,3}(?:possible|possibly|probable|probably|"
    r"likely|suspected|questioned|favored|suggested|not excluded|questionable)\b|(?:\w+\s+){0,2}(?:may|might|could|can)"
    r"\s+(?:also\s+)?(?:be|represent|reflect|have)\b|(?:\w+\s+){0,2}(?:versus|vs|or|and/or)\b)")
_STABLE_GENERIC = re.compile(r"\b(stable|unchanged|similar|not changed|no change|without change)\b")


def _tokens(phrase: str) -> list[str]:
    # '_' marks a word boundary in the CheXpert files (leading '_' is implied: every phrase
    # starts at a word start); a space matches any whitespace; otherwise a prefix match
    # ("atelecta" matches "atelectasis", "atelectatic").
    core = phrase.strip("_")
    toks = [r"\s+" if ch == " " else re.escape(ch) for ch in core]
    if phrase.endswith("_"):
        toks.append(r"\b")
    return toks


def _trie_regex(phrases: Iterable[str]) -> str:
    """One regex for many phrases, as a character trie: matching costs O(phrase length) at
    each word start instead of O(number of phrases) for a flat alternation (the labeller's
    speed depends on it). A phrase that is a prefix of another prefers the longer match."""
    trie: dict[str, Any] = {}
    for phrase in phrases:
        node = trie
        for tok in _tokens(phrase):
            node = node.setdefault(tok, {})
        node[""] = {}  # end of a phrase

    def build(node: dict[str, Any]) -> str:
        ends = "" in node
        alts = [tok + build(child) for tok, child in sorted(node.items()) if tok != ""]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if ends else body

    return r"\b" + build(trie)


def _which_phrase(matched: str, phrases: list[str]) -> str:
    """The (longest) phrase that produced a match."""
    text = " ".join(matched.split())
    for p in phrases:  # sorted longest first
        if text.startswith(p.strip("_")):
            return p
    return phrases[-1]


@lru_cache(maxsize=1)
def _load_rules() -> dict[str, Any]:
    raw = json.loads(resources.files("medmm.metrics").joinpath("resources/chexpert_phrases.json").read_text())
    by_file = {o.lower().replace(" ", "_"): o for o in OBSERVATIONS}
    rules: dict[str, Any] = {}
    for stem, phrases in raw["mention"].items():
        obs = _OTHER_FINDING if stem == "no_finding" else by_file[stem]
        phrases = list(phrases) + _EXTRA_MENTION.get(obs, [])
        unm = list(raw["unmention"].get(stem, [])) + _EXTRA_UNMENTION.get(obs, [])
        # longest phrase first so that the reported phrase of a match is the most specific
        ordered = sorted(phrases, key=lambda p: len(p.strip("_")), reverse=True)
        rules[obs] = {
            "mention": re.compile(_trie_regex(ordered)),
            "phrases": ordered,
            "unmention": re.compile(_trie_regex(unm)) if unm else None,
        }
    all_phrases = {p for r in rules.values() for p in r["phrases"]}
    # lookahead: a zero-width match at each word start where some phrase begins
    rules[_ANY] = re.compile(r"(?=" + _trie_regex(all_phrases) + ")")
    return rules


def extract_sections(text: str) -> dict[str, str]:
    """Report sections by lower-case header name; text before the first header is "preamble"."""
    out: dict[str, str] = {}
    matches = list(_SECTION.finditer(text))
    if not matches:
        return {"preamble": text}
    if matches[0].start() > 0:
        out["preamble"] = text[: matches[0].start()]
    for m, nxt in zip(matches, matches[1:] + [None], strict=True):
        body = text[m.end(): nxt.start() if nxt else len(text)]
        name = m.group(1).lower()
        out[name] = (out[name] + "\n" + body) if name in out else body
    return out


def labelled_text(text: str) -> str:
    """The part of a report that is labelled: findings + impression, else the whole text."""
    sections = extract_sections(text)
    kept = [v for k, v in sections.items() if k in _KEEP_SECTIONS]
    if kept:
        return "\n\n".join(kept)
    if set(sections) == {"preamble"}:
        return text
    # headers but neither findings nor impression: drop indication/history/comparison
    return "\n\n".join(v for k, v in sections.items() if k in ("preamble", "examination", "exam", "addendum"))


def _boundaries(text: str) -> list[int]:
    cuts = {0, len(text)}
    for m in _SENTENCE_END.finditer(text):
        cuts.add(m.end())
    for m in _CLAUSE_BREAK.finditer(text):
        cuts.add(m.start())
        cuts.add(m.end())
    return sorted(cuts)


def _last_words(text: str, n: int) -> str:
    words = _WORD.findall(text)
    return " ".join(words[-n:])


def _classify(obs: str, phrase: str, pre: str, post: str, clause: str) -> LabelState | None:
    """State of one mention from its clause context; None = not a mention after all."""
    pre_near = _last_words(pre, _NEG_WINDOW)
    post_norm = " ".join(_WORD.findall(post))
    if _UNC_FIRST_PRE.search(pre_near) or _UNC_FIRST_POST.search(post_norm) or post.lstrip().startswith("?"):
        return LabelState.UNCERTAIN
    if _NEG_PRE.search(pre_near) or _NEG_NORMAL_PRE.search(_last_words(pre, _NORMAL_WINDOW)):
        return LabelState.NEGATIVE
    if _NEG_POST.search(post_norm):
        return LabelState.NEGATIVE
    generic = phrase in _GENERIC.get(obs, ())
    if generic and _STABLE_GENERIC.search(clause):
        return LabelState.UNCERTAIN
    if phrase in _UNCERTAIN_PHRASES.get(obs, ()):
        return LabelState.UNCERTAIN
    if _UNC_PRE.search(_last_words(pre, _UNC_PRE_WINDOW)) or _UNC_POST.search(post):
        return LabelState.UNCERTAIN
    if generic and not _ENLARGED.search(clause):
        return None
    return LabelState.POSITIVE


def find_mentions(text: str) -> list[dict[str, Any]]:
    """Every mention in ``text`` (already section-selected): observation, phrase, span, state."""
    low = text.lower()
    rules = _load_rules()
    # one scan for the word starts where any phrase begins, then an anchored match per
    # observation there (phrases of different observations may overlap, e.g. "cardiac
    # silhouette" and "cardiac silhouette and vascularity")
    starts = [m.start() for m in rules[_ANY].finditer(low)]
    if not starts:
        return []
    cuts = _boundaries(low)
    found = []
    blocked_cache: dict[str, list[tuple[int, int]]] = {}
    for obs, rule in rules.items():
        if obs == _ANY:
            continue
        for pos in starts:
            m = rule["mention"].match(low, pos)
            if m is None:
                continue
            start, end = m.span()
            if rule["unmention"] is not None:
                if obs not in blocked_cache:
                    blocked_cache[obs] = [u.span() for u in rule["unmention"].finditer(low)]
                if any(s < end and start < e for s, e in blocked_cache[obs]):
                    continue
            phrase = _which_phrase(m.group(0), rule["phrases"])
            i = bisect.bisect_right(cuts, start) - 1
            cs = cuts[i]
            ce = cuts[bisect.bisect_left(cuts, end)] if end <= cuts[-1] else len(low)
            state = _classify(obs, phrase, low[cs:start], low[end:ce], low[cs:ce])
            if state is not None:
                found.append({"observation": obs, "phrase": phrase, "start": start, "end": end,
                              "state": state})
    return found


def aggregate(mentions: Iterable[dict[str, Any]]) -> dict[str, LabelState]:
    """Per-observation state: positive > uncertain > negative; then the No Finding rule."""
    rank = {LabelState.POSITIVE: 2, LabelState.UNCERTAIN: 1, LabelState.NEGATIVE: 0}
    best: dict[str, LabelState] = {}
    for m in mentions:
        obs, state = m["observation"], m["state"]
        if obs not in best or rank[state] > rank[best[obs]]:
            best[obs] = state
    other = best.pop(_OTHER_FINDING, None)
    best.pop("No Finding", None)
    abnormal = other in (LabelState.POSITIVE, LabelState.UNCERTAIN) or any(
        best.get(o) in (LabelState.POSITIVE, LabelState.UNCERTAIN) for o in PATHOLOGIES)
    if not abnormal:
        best["No Finding"] = LabelState.POSITIVE
    return {o: best[o] for o in OBSERVATIONS if o in best}


def label_report(text: str, *, select_sections: bool = True) -> dict[str, LabelState]:
    """CheXpert observation states of one report; an observation not mentioned is absent.

    An empty report is labelled ``{}`` (nothing mentioned; No Finding is not asserted).
    """
    if text is None or not str(text).strip():
        return {}
    body = labelled_text(str(text)) if select_sections else str(text)
    if not body.strip():
        return {}
    return aggregate(find_mentions(body))


def label_reports(texts: Iterable[str], *, select_sections: bool = True) -> list[dict[str, LabelState]]:
    """:func:`label_report` for many reports."""
    return [label_report(t, select_sections=select_sections) for t in texts]
