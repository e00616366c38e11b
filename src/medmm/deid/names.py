"""Person names: by context (titles, credentials, labels, verbs of communication) and by the
bundled census lists (a listed first name followed by a listed surname). A single listed word with
no context is not taken: too many surnames are report words (Bell, Hill, Mass, Brown).

Like patterns.py, every pattern begins with a literal or a character class (fast scanning); word
boundaries are checked in code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from medmm.deid import lists
from medmm.deid.patterns import Keyed

_TOKEN = r"(?:[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)*|[A-Z]\.|[A-Z]{2,}(?![a-z]))"
_RUN = rf"{_TOKEN}(?:[ \t]+{_TOKEN}){{0,3}}"
_LAST_FIRST = rf"[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)*,[ \t]+{_TOKEN}(?:[ \t]+{_TOKEN})?"
_TITLES = "Dr|Drs|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Nurse"
TITLE = re.compile(rf"(?:{_TITLES})\.?[ \t]+(?P<n>{_RUN})")
# "MD" may follow a name directly; shorter credentials (PA, RN, DO, ...) need the comma, or
# "Chest PA" and "Main PA filling defect" would be names.
CREDENTIAL = re.compile(r"(?:M\.?D\.?|D\.?O\.?|R\.?N\.?|N\.?P\.?|P\.?A\.?(?:-C)?|Ph\.?D\.?|MBBS|FRCR|FRCS|RT\(R\)|RT|"
                        r"RRA|CNP|DNP)(?![A-Za-z])")
NAME_BEFORE = re.compile(rf"(?:{_LAST_FIRST}|{_RUN})$")
_LABELS = ("patient|patient name|pt|pt name|name|attending|radiologist|resident|fellow|technologist|tech|referring|"
           "referring physician|referring provider|referring doctor|referring md|ordering|ordering physician|"
           "ordering provider|ordering md|physician|provider|pcp|surgeon|clinician|interpreted by|dictated by|"
           "transcribed by|signed by|read by|reviewed by|verified by|approved by|electronically signed by|"
           "performed by|requested by|cc|copy to|discussed with|called to|communicated to|notified|spoke with|"
           "reported to|paged|relayed to|conveyed to|d/w|mother|father|wife|husband|daughter|son|"
           "emergency contact|contact|guardian|next of kin")
# The label is matched without regard to case; the name after it must be capitalised.
LABEL = Keyed(
    "|".join(sorted({w.split()[0] for w in _LABELS.split("|")})),
    "(?i:" + "|".join(sorted((re.escape(w).replace(r"\ ", r"[ \t]+") for w in _LABELS.split("|")), key=len,
                             reverse=True)) + ")"
    + rf"[ \t]*:?[ \t]+(?!(?:{_TITLES}|The|A|An|Our|His|Her|This)\b)(?P<n>{_LAST_FIRST}|{_RUN})",
    flags=0,
)
_CAP = r"[A-Z](?:[a-z]+(?:['-][A-Z]?[a-z]+)*|[A-Z]+)\b"
# Two capitalised words with a space, a middle initial or a comma between; the second is in a
# look-ahead so that "Jane Roe Smith" yields both pairs.
PAIR = re.compile(rf"({_CAP})(?=(,?)[ \t]+(?:[A-Z]\.[ \t]+)?({_CAP}))")
# A capitalised word a context rule would swallow after a name ("Dr. Roe Impression", "Smith MD").
_STOP_AFTER = frozenset(
    "Impression Findings Comparison History Indication Technique Exam Report Date Time MRN Accession "
    "Phone Fax Email Department Radiology Hospital Center Clinic The And On At By In Of To For From With "
    "Signed Dictated Electronically Reviewed Attending Resident Tel MD DO RN PA NP PhD".split()
)

# Endings of medical terms; an unlisted capitalised run after a label with one of them is a
# diagnosis, not a person.
_MEDICAL_ENDINGS = ("oma", "itis", "osis", "ic", "al", "ia", "ectomy", "otomy", "pathy", "plasia", "emia", "cele",
                    "ism", "ous", "ary", "ine", "ase")


def starts_word(text: str, i: int) -> bool:
    """No letter or digit just before position i."""
    return i == 0 or not text[i - 1].isalnum()


def _listed(word: str) -> bool:
    t = word.title()
    return t in lists.raw_surnames() or t in lists.raw_first_names()


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Cut a matched name run at the first word that is a report word, not a name."""
    keep_end = start
    for w in re.finditer(r"\S+", text[start:end]):
        token = w.group().rstrip(",;:")
        core = token.rstrip(".")
        if core.isupper() and len(core) > 1 and not _listed(core):
            break  # "Pt POD 6", "SN RN-123": upper-case words are names only when listed
        if token in _STOP_AFTER or (token.lower() in lists.not_names() and not _listed(token) and keep_end > start):
            break
        keep_end = start + w.start() + len(token)
    return (start, keep_end) if keep_end > start else None


def _context_names(text: str, low: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, vouched): vouched when a title stands before the name."""
    for m in TITLE.finditer(text):
        if starts_word(text, m.start()):
            yield m.start("n"), m.end("n"), True
    for m in LABEL.finditer(text, low):
        yield m.start("n"), m.end("n"), False
    for m in CREDENTIAL.finditer(text):
        s = m.start()
        if not starts_word(text, s):
            continue
        before = text[max(0, s - 3):s]
        comma = before.rstrip(" \t").endswith(",")
        if not comma and not (m.group().startswith("M") and before[-1:] in " \t"):
            continue
        sep = len(before) - len(before.rstrip(" \t,"))
        end = s - sep
        n = NAME_BEFORE.search(text, max(0, end - 60), end)
        if n and starts_word(text, n.start()):
            yield n.start(), n.end(), False


def iter_names(text: str, low: str | None = None) -> Iterator[tuple[int, int]]:
    """Offsets of person names; `low` is text.lower() when the caller has it."""
    not_names = lists.not_names()
    for start, end, vouched in _context_names(text, text.lower() if low is None else low):
        span = _trim(text, start, end)
        if span is None:
            continue
        found = text[span[0]:span[1]]
        if set(found) <= {"X", " "}:
            continue  # "Dr. XXXX XXXX": already masked by the data's own de-identification
        tokens = [w.strip(".,") for w in found.split()]
        if not vouched and not any(_listed(t) for t in tokens) and (
                len(tokens) == 1 or all(t.lower() in not_names for t in tokens)
                or any(t.lower().endswith(_MEDICAL_ENDINGS) for t in tokens)):
            # "Patient Currently smokes", "Neoplasm Name: Pilocytic Astrocytoma": no listed name
            # word, no title, and a single word or a word shaped like a medical term
            continue
        yield span
    first, last = lists.first_names(), lists.surnames()
    # Only capitalised words followed by another one can start a "First Last" or "Last, First".
    for m in PAIR.finditer(text):
        one, two = m.group(1), m.group(3)
        if not starts_word(text, m.start()):
            continue
        if m.group(2) == "," and one in last and two in first:
            yield m.start(), m.end(3)  # "Roe, Jane"
        elif m.group(2) != "," and one.title() in first and two.title() in last:
            yield m.start(), m.end(3)  # "Jane Roe", "Jane Q. Roe", "JANE ROE"
