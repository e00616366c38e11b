"""Person names: by context (titles, credentials, labels, verbs of communication) and by the
bundled census lists (a first name followed by a surname). A single listed word with no context is
not taken: too many surnames are report words (Bell, Hill, Mass, Brown)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from medmm.deid import lists

_NAME_TOKEN = r"(?:[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)*|[A-Z]\.|[A-Z]{2,}(?![a-z]))"
_NAME_RUN = rf"{_NAME_TOKEN}(?:[ \t]+{_NAME_TOKEN}){{0,3}}"
TITLE = re.compile(rf"\b(?:Dr|Drs|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Nurse)\.?[ \t]+(?P<n>{_NAME_RUN})")
# "MD" may follow a name directly; the shorter credentials (PA, RN, DO, ...) need the comma, or
# "Chest PA" and "Main PA filling defect" would be names.
CREDENTIAL = re.compile(
    rf"(?P<n>{_NAME_TOKEN}(?:[ \t]+{_NAME_TOKEN}){{0,3}}|[A-Z][a-z]+,[ \t]+[A-Z][a-z]+(?:[ \t]+[A-Z]\.)?)"
    r"(?:,?[ \t]+M\.?D\.?|,[ \t]*(?:D\.?O\.?|R\.?N\.?|N\.?P\.?|P\.?A\.?(?:-C)?|Ph\.?D\.?|MBBS|FRCR|FRCS|"
    r"RT\(R\)|RT|RRA|CNP|DNP))\b"
)
LABEL = re.compile(
    r"\b(?:Patient(?:\s+Name)?|Pt(?:\s+Name)?|Name|Attending|Radiologist|Resident|Fellow|Technologist|Tech|"
    r"Referring(?:\s+(?:Physician|Provider|Doctor|MD))?|Ordering(?:\s+(?:Physician|Provider|MD))?|Physician|"
    r"Provider|PCP|Surgeon|Clinician|Interpreted\s+by|Dictated\s+by|Transcribed\s+by|Signed\s+by|Read\s+by|"
    r"Reviewed\s+by|Verified\s+by|Approved\s+by|Electronically\s+signed\s+by|Performed\s+by|Requested\s+by|cc|"
    r"CC|Copy\s+to|Discussed\s+with|discussed\s+with|called\s+to|communicated\s+to|notified|spoke\s+with|"
    r"reported\s+to|paged|relayed\s+to|conveyed\s+to|d/w|Mother|Father|Wife|Husband|Daughter|Son|"
    r"Emergency\s+contact|Contact|Guardian|Next\s+of\s+kin)\s*:?\s+"
    r"(?!(?:Dr|Drs|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Nurse|The|A|An|Our|His|Her|This)\b)"
    rf"(?P<n>[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)*,[ \t]+{_NAME_TOKEN}(?:[ \t]+{_NAME_TOKEN})?|{_NAME_RUN})"
)
CAP_WORD = re.compile(r"\b[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)*\b|\b[A-Z]{2,}\b")
# A capitalised word a context rule would swallow after a name ("Dr. Roe Impression", "Smith MD").
_STOP_AFTER = frozenset(
    "Impression Findings Comparison History Indication Technique Exam Report Date Time MRN Accession "
    "Phone Fax Email Department Radiology Hospital Center Clinic The And On At By In Of To For From With "
    "Signed Dictated Electronically Reviewed Attending Resident Page Tel MD DO RN PA NP PhD".split()
)


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Cut a matched name run at the first word that is a report word, not a name."""
    words = list(re.finditer(r"\S+", text[start:end]))
    keep_end = start
    for w in words:
        token = w.group().rstrip(",;:")
        core = token.rstrip(".")
        if core.isupper() and len(core) > 1 and core.title() not in lists.raw_first_names() \
                and core.title() not in lists.raw_surnames():
            break  # "Pt POD 6", "SN RN-123": upper-case words are names only when listed
        listed = token.title() in lists.raw_surnames() or token.title() in lists.raw_first_names()
        if token in _STOP_AFTER or (token.lower() in lists.not_names() and not listed and keep_end > start):
            break
        keep_end = start + w.start() + len(token)
    return (start, keep_end) if keep_end > start else None


def iter_names(text: str) -> Iterator[tuple[int, int]]:
    """Offsets of person names."""
    for pat in (TITLE, CREDENTIAL, LABEL):
        for m in pat.finditer(text):
            span = _trim(text, m.start("n"), m.end("n"))
            if span is None:
                continue
            found = text[span[0]:span[1]]
            if set(found) <= {"X", " "}:
                continue  # "Dr. XXXX XXXX": already masked by the data's own de-identification
            if pat is not TITLE and all(w.lower().strip(".,") in lists.not_names() for w in found.split()):
                continue  # "Chest, MD"-like runs of report words, unless a title vouches for them
            yield span
    first, last = lists.first_names(), lists.surnames()
    words = list(CAP_WORD.finditer(text))
    for i, w in enumerate(words):
        token = w.group()
        title = token.title()
        nxt = words[i + 1] if i + 1 < len(words) else None
        # The next word must follow with only a space or a middle initial between.
        gap = text[w.end():nxt.start()] if nxt else ""
        if nxt is None or not re.fullmatch(r"\s+(?:[A-Z]\.\s+)?", gap):
            continue
        nxt_title = nxt.group().title()
        if title in first and nxt_title in last:
            yield w.start(), nxt.end()  # "Jane Roe", "Jane Q. Roe"
        elif title in last and gap.strip() == "" and text[w.end():w.end() + 1] == "," and nxt_title in first:
            yield w.start(), nxt.end()  # "Roe, Jane"
    for m in re.finditer(r"\b(?P<l>[A-Z][a-z]+),\s+(?P<f>[A-Z][a-z]+)\b", text):
        if m.group("l") in last and m.group("f") in first:
            yield m.start(), m.end()
