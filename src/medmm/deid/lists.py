"""The bundled name and place lists (see NOTICE and benchmarks/deid_make_lists.py for their source),
and the words that must never be taken for a name on their own."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources


def _lines(name: str) -> list[str]:
    text = resources.files("medmm.deid").joinpath("resources", name).read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@cache
def _labeller_words() -> frozenset[str]:
    """Every word of the report labeller's CheXpert phrases (lower case)."""
    phrases = resources.files("medmm.metrics").joinpath("resources", "chexpert_phrases.json")
    data = json.loads(phrases.read_text(encoding="utf-8"))
    words: set[str] = set()
    for key in ("mention", "unmention"):
        for phrase_list in data[key].values():
            for phrase in phrase_list:
                words.update(phrase.lower().replace("_", " ").split())
    return frozenset(words)


def _safe_surrogates(names: frozenset[str]) -> tuple[str, ...]:
    """Names that no labeller phrase starts (the labeller matches stems: "scar" in "Scarberry",
    "mass" in "Masson"), so a surrogate never adds a finding."""
    stems = re.compile("|".join(re.escape(w) for w in sorted(_labeller_words(), key=len, reverse=True) if len(w) >= 3))
    return tuple(sorted(n for n in names if not stems.match(n.lower())))


@cache
def not_names() -> frozenset[str]:
    """Lower-cased words that are names in the lists but ordinary or clinical words in a report:
    the hand-written list (eponyms such as Bell, Hill, Sachs, Graves; words such as Mass, May, Will)
    plus every word of the report labeller's CheXpert phrases."""
    return frozenset({w.lower() for w in _lines("not_names.txt")} | _labeller_words())


@cache
def first_names() -> frozenset[str]:
    """1990 U.S. Census first names, title-cased, minus `not_names()`."""
    return frozenset(n for n in _lines("first_names.txt") if n.lower() not in not_names())


@cache
def surnames() -> frozenset[str]:
    """The 20,000 most frequent 1990 U.S. Census surnames, title-cased, minus `not_names()`."""
    return frozenset(n for n in _lines("surnames.txt") if n.lower() not in not_names())


@cache
def raw_surnames() -> frozenset[str]:
    """Every bundled surname, report words included."""
    return frozenset(_lines("surnames.txt"))


@cache
def raw_first_names() -> frozenset[str]:
    """Every bundled first name, report words included."""
    return frozenset(_lines("first_names.txt"))


@cache
def surrogate_surnames() -> tuple[str, ...]:
    """Surnames for surrogates: none that is also a report word (a surrogate "Mass" or "Hill"
    would put a finding into the report)."""
    return _safe_surrogates(surnames())


@cache
def surrogate_first_names() -> tuple[str, ...]:
    """First names for surrogates, report words left out."""
    return _safe_surrogates(first_names())


@cache
def cities() -> frozenset[str]:
    """GeoNames city names (US >= 5,000 people; GB/CA/AU/IE/NZ >= 15,000), minus `not_names()`."""
    return frozenset(c for c in _lines("cities.txt") if c.lower() not in not_names())


@cache
def surrogate_cities() -> tuple[str, ...]:
    """Towns for surrogates (none a labeller phrase starts)."""
    return _safe_surrogates(cities())


@cache
def us_states() -> dict[str, str]:
    """Postal code -> state name."""
    return dict(ln.split("\t") for ln in _lines("us_states.txt"))
