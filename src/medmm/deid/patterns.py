"""Regular-expression detectors of the PHI categories that have a shape (dates, ages, numbers,
contacts, addresses, institutions, device serials). Names are found in names.py.

Each detector yields (start, end, category) of the PHI itself, not of its context words: in
"MRN: 12345678" only the number is PHI, so the context stays readable after masking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9,
    "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}
# Capitalised month names only: "may" and "march" are verbs in lower case.
_MON = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|"
        r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\.?")
_ORD = r"(?:st|nd|rd|th)?"

# Every date pattern has named groups y, m (number or month name) and d (optional), so the
# surrogate step can shift it and write it back in the same format.
DATE_PATTERNS = [
    re.compile(r"\b(?P<m>\d{1,2})(?P<sep>[/.-])(?P<d>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})\b(?![/.-]\d)"),
    re.compile(r"\b(?P<y>(?:19|20)\d{2})(?P<sep>[/.-])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})\b"),
    re.compile(rf"\b(?P<m>{_MON})\s+(?P<d>\d{{1,2}}){_ORD},?\s+(?P<y>(?:19|20)\d{{2}})\b"),
    re.compile(rf"\b(?P<d>\d{{1,2}}){_ORD}(?:\s+of)?[\s-]+(?P<m>{_MON}),?[\s-]+(?P<y>(?:19|20)\d{{2}})\b"),
    re.compile(rf"\b(?P<m>{_MON}),?\s+(?P<y>(?:19|20)\d{{2}})\b"),
    re.compile(rf"\b(?P<m>{_MON})\s+(?P<d>\d{{1,2}}){_ORD}\b(?!\s*(?:mm|cm|%|mg|ml|x\b))"),
    re.compile(r"\b(?P<m>\d{1,2})/(?P<y>(?:19|20)\d{2})\b"),
]

_AGE_NUM = r"(?P<age>\d{2,3})"
AGE_PATTERNS = [
    re.compile(rf"\b{_AGE_NUM}(?:\s*|-)(?:years?|yrs?|y)(?:\s*|-)old\b", re.IGNORECASE),
    re.compile(rf"\b{_AGE_NUM}\s*(?:yo|y/o|y\.o\.?|yrs?\b|years?\b|year-old|yr-old)", re.IGNORECASE),
    re.compile(rf"\b(?:age|aged|age:)\s*{_AGE_NUM}\b", re.IGNORECASE),
    re.compile(rf"\b{_AGE_NUM}(?:M|F|\s*-?\s*(?:male|female|man|woman|gentleman|lady))\b"),
    re.compile(rf"\bnonagenarian|centenarian|{_AGE_NUM}s\b(?=\s+(?:male|female|man|woman))", re.IGNORECASE),
]

_ID = r"(?P<v>[A-Z0-9](?:[A-Z0-9]|-(?=[A-Z0-9])){3,24})\b"
_LABEL_SEP = r"\s*(?:#|:|no\.?|number|num)?\s*[:#]?\s*"
LABELLED = [
    ("MRN", re.compile(r"\b(?:MRN|MR|Medical\s+Record(?:\s+Number)?|Med\s+Rec|Hospital\s+(?:Number|No)|"
                       r"Unit\s+(?:Number|No)|Patient\s+ID|Pt\s+ID|Patient\s+Number|Chart)" + _LABEL_SEP + _ID,
                       re.IGNORECASE)),
    ("ACCESSION", re.compile(r"\b(?:Accession|Acc|Exam\s+ID|Study\s+ID|Order)" + _LABEL_SEP + _ID, re.IGNORECASE)),
    ("SERIAL", re.compile(r"\b(?:serial|S/N|SN|device\s+ID|UDI|lot|model/serial|Ser\.?)"
                          r"(?:\s+(?:number|no\.?|#))?\s*[:#]?\s*" + _ID, re.IGNORECASE)),
    ("ID", re.compile(r"\b(?:SSN|social\s+security(?:\s+number)?|insurance\s+(?:ID|number)|member\s+ID|"
                      r"policy(?:\s+number)?|account(?:\s+number)?|license(?:\s+number)?|NPI)" + _LABEL_SEP + _ID,
                      re.IGNORECASE)),
]
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
# Long digit runs and letter-prefixed numbers are identifiers in a report (measurements are short).
BARE_ID = re.compile(r"(?<![\d.,/-])\b(?:[A-Z]{1,4}-?)?\d{6,}\b(?![.,]\d)")

PHONE = re.compile(
    r"(?<![\d-])(?:\+?1[\s.-]?|\b00?1[\s.-])?(?:\(\d{3}\)\s*|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:\s*(?:ext\.?|x)\s*\d{1,5})?\b"
    r"|(?:\+44\s?\d{2,4}|\b0\d{2,4})\s\d{3,4}\s\d{3,4}\b"
    r"|\b(?:ext\.?|extension|pager|beeper|x)\s*#?\s*\d{4,5}\b",
    re.IGNORECASE,
)
FAX_CONTEXT = re.compile(r"\bfax\b[^\n]{0,12}$", re.IGNORECASE)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
URL = re.compile(
    r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|info|health|us|uk|ca)(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)])?\b",
    re.IGNORECASE,
)

def _street_suffixes() -> str:
    from importlib import resources

    text = resources.files("medmm.deid").joinpath("resources", "street_suffixes.txt").read_text(encoding="utf-8")
    words = sorted({w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")}, key=len,
                   reverse=True)
    return "(?:" + "|".join(re.escape(w) for w in words) + ")"


_STREET_SUFFIX = _street_suffixes()
STREET = re.compile(
    r"\b\d{1,6}[A-Z]?\s+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?\s+)?"
    r"(?:[A-Z][A-Za-z'-]+\.?\s+|\d{1,3}(?:st|nd|rd|th)\s+){1,3}" + _STREET_SUFFIX + r"\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|#)\.?\s*#?\s*[A-Z0-9-]+\b)?"
    r"|\bP\.?\s?O\.?\s+Box\s+\d+\b",
)
# "Springfield, IL 62704": the town (and the ZIP code) are PHI; the state may stay (HIPAA Safe Harbor).
CITY_STATE = re.compile(
    r"\b(?P<city>(?:[A-Z][a-z'.-]+\s+){0,2}[A-Z][a-z'.-]+),\s+(?P<state>[A-Z]{2})\b(?:\s+(?P<zip>\d{5}(?:-\d{4})?)\b)?"
)
ZIP_LABELLED = re.compile(r"\b(?:ZIP|zip\s+code|postcode|postal\s+code)\s*:?\s*(?P<zip>\d{5}(?:-\d{4})?|"
                          r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2})\b", re.IGNORECASE)
UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s\d[ABD-HJLNP-UW-Z]{2}\b")
# After these words any capitalised run is a place, listed or not.
STRONG_PLACE = re.compile(
    r"\b(?:transferred\s+from|resident\s+of|lives\s+in|born\s+in|home\s+in|moved\s+from|visiting\s+from)\s+"
    r"(?P<place>(?:[A-Z][a-z'.-]+[ \t]){0,2}[A-Z][a-z'.-]+)"
)
CITY_CONTEXT = re.compile(
    r"\b(?:from|in|at|of|near|to|resident of|lives in|transferred from|born in)\s+"
    r"(?P<city>[A-Z][a-z'.-]+(?:\s+[A-Z][a-z'.-]+){0,2})"
)

_INST_SUFFIX = (r"(?:Hospital|Medical\s+Cent(?:er|re)|Health\s+(?:Cent(?:er|re)|System|Sciences?\s+Cent(?:er|re))|"
                r"Healthcare|Health\s+Care|Clinic|Infirmary|Medical\s+Group|Imaging(?:\s+Cent(?:er|re))?|"
                r"Radiology(?:\s+(?:Associates|Group|Partners))|Cancer\s+(?:Cent(?:er|re)|Institute)|"
                r"Children's|Memorial|Hospice|Nursing\s+Home|Rehabilitation\s+(?:Cent(?:er|re)|Hospital)|"
                r"Surgical\s+Cent(?:er|re)|Surgery\s+Cent(?:er|re)|Urgent\s+Care|Health)")
_CAPWORD = r"(?:St\.|Saint|[A-Z][A-Za-z'&.-]*)"
# Separate patterns, not one alternation: finditer would let the first hide an overlapping second.
INSTITUTIONS = [
    re.compile(rf"\b(?:{_CAPWORD}[ \t]+){{1,5}}{_INST_SUFFIX}\b(?:[ \t]+(?:of|at)[ \t]+(?:[A-Z][A-Za-z'.-]+\b[ \t]?){{1,3}})?"),
    re.compile(r"\bUniversity[ \t]+of[ \t]+(?:[A-Z][A-Za-z'.-]+\b[ \t]?){1,3}"),
    re.compile(r"\b(?:VA|Veterans\s+Affairs)\s+Medical\s+Cent(?:er|re)\b"),
]
# Words that start many sentences and would be swallowed by INSTITUTION's capitalised run.
INSTITUTION_LEADS = frozenset(
    "The A An At In From To Of Outside Prior Previous Comparison Compared Seen Performed Obtained Images "
    "Study Studies Exam Transferred Referred Patient Films This Our Per With And Local Report By".split()
)


AGE_GATE = re.compile(r"(?:9\d|1[0-3]\d)(?!\d)|[Nn]onagenarian|[Cc]entenarian")


def month_number(token: str) -> int | None:
    """'Sept.' -> 9; a number string -> its value; None when neither."""
    t = token.rstrip(".").lower()
    if t.isdigit():
        return int(t)
    return MONTHS.get(t)


def iter_dates(text: str) -> Iterator[re.Match]:
    """Dates of a valid month and day, longest first where patterns overlap (merged later)."""
    for pat in DATE_PATTERNS:
        for m in pat.finditer(text):
            month = month_number(m.group("m"))
            day = int(m.group("d")) if "d" in m.groupdict() and m.group("d") else 1
            if month is None or not 1 <= month <= 12 or not 1 <= day <= 31:
                continue
            yield m


def iter_ages_over_89(text: str) -> Iterator[tuple[int, int]]:
    """Offsets of age numbers 90 and above (HIPAA Safe Harbor keeps younger ages)."""
    for pat in AGE_PATTERNS:
        for m in pat.finditer(text):
            if m.groupdict().get("age") is None:
                yield m.start(), m.end()  # "nonagenarian", "centenarian"
            elif 90 <= int(m.group("age")) <= 130:
                yield m.start("age"), m.end("age")
