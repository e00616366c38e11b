"""Regular expressions of the PHI categories that have a shape (dates, ages, numbers, contacts,
addresses, institutions, device serials). Names are found in names.py; detect.py runs these.

Speed: Python's `re` scans quickly only for patterns that begin with a literal or a character
class, and only without re.IGNORECASE. So no pattern here starts with `\\b`, a look-behind, an
optional group or `\\d{n}` (written `[0-9]\\d...`), and case variants are spelled out; the word
boundary before a match is checked in detect.py (`starts_word`). That is what makes >= 1,000
reports/s on one core possible.
"""

from __future__ import annotations

import re
from importlib import resources


class Keyed:
    """A pattern tried only where one of its lower-case keywords starts a word.

    For patterns that begin with common lower-case letters (labels such as "Medical record",
    "discussed with"), `str.find` of the keywords is far faster than letting `re` try every letter.
    """

    def __init__(self, keywords: str, pattern: str, flags: int = re.IGNORECASE):
        self.keywords = tuple(keywords.split("|"))
        self.pattern = re.compile(pattern, flags)

    def finditer(self, text: str, low: str):
        """Matches at word starts where a keyword occurs (`low` is text.lower())."""
        starts = set()
        for kw in self.keywords:
            i = low.find(kw)
            while i != -1:
                if i == 0 or not text[i - 1].isalnum():
                    starts.add(i)
                i = low.find(kw, i + 1)
        end = -1
        for i in sorted(starts):
            if i < end:
                continue
            m = self.pattern.match(text, i)
            if m:
                end = m.end()
                yield m


MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9,
    "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}
# Capitalised month names only: "may" and "march" are verbs in lower case.
_MON = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|"
        r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\.?")
_ORD = r"(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d\d"

# Every date pattern has named groups m (number or month name), y and d (each optional), so the
# surrogate step can shift the date and write it back in the same format.
DATE_PATTERNS = [
    re.compile(r"(?P<m>[0-9]\d?)(?P<sep>[/.-])(?P<d>\d\d?)(?P=sep)(?P<y>\d{4}|\d\d)\b(?![/.-]\d)"),
    re.compile(rf"(?P<y>{_YEAR})(?P<sep>[/.-])(?P<m>\d\d?)(?P=sep)(?P<d>\d\d?)\b"),
    re.compile(rf"(?P<m>{_MON})[ \t]+(?P<d>\d\d?){_ORD},?[ \t]+(?P<y>{_YEAR})\b"),
    re.compile(rf"(?P<d>[0-9]\d?){_ORD}(?:[ \t]+of)?[ \t-]+(?P<m>{_MON}),?[ \t-]+(?P<y>{_YEAR})\b"),
    re.compile(rf"(?P<m>{_MON}),?[ \t]+(?P<y>{_YEAR})\b"),
    re.compile(rf"(?P<m>{_MON})[ \t]+(?P<d>\d\d?){_ORD}\b(?![ \t]*(?:mm|cm|%|mg|ml|x\b|[0-9]))"),
    re.compile(rf"(?P<m>[0-9]\d?)/(?P<y>{_YEAR})\b"),
]

# Ages 90-139 only (HIPAA Safe Harbor keeps younger ages): the number starts with 9 or 1.
_AGE_NUM = r"(?P<age>(?:9|1[0-3])\d)(?!\d)"
_Y = r"[Yy]"
AGE_PATTERNS = [
    re.compile(rf"{_AGE_NUM}(?:[ \t-]*(?:{_Y}ears?|{_Y}rs?|{_Y})[ \t-]*(?:[Oo]ld|OLD)\b"
               rf"|[ \t-]*(?:{_Y}[Oo]\b|{_Y}/[Oo]\b|{_Y}\.[Oo]\.?|{_Y}rs?\b|{_Y}ears?\b|YEARS?\b|YO\b)"
               rf"|(?:M|F)\b|[ \t-]*(?:male|female|man|woman|gentleman|lady)\b|s\b(?=[ \t]+(?:male|female|man|woman)))"),
]
AGE_LABELLED = Keyed("age", rf"age(?:d|:)?[ \t]*:?[ \t]*{_AGE_NUM}")
AGE_WORDS = Keyed("nonagenarian|centenarian", r"nonagenarian|centenarian")

_ID = r"(?P<v>[A-Z0-9](?:[A-Z0-9]|-(?=[A-Z0-9])){3,24})\b"
_ID_CI = r"(?P<v>[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){3,24})\b"
_SEP = r"[ \t]*(?:#|:|no\.?|number|num)?[ \t]*[:#]?[ \t]*"
# Matched case-insensitively (labels are written every way); the value must hold a digit.
LABELLED = [
    ("MRN", Keyed("mrn|mr|medical|med rec|hospital|unit|patient|pt|chart",
                  r"(?:MRN|MR|Medical[ \t]+Record(?:[ \t]+Number)?|Med[ \t]+Rec|Hospital[ \t]+(?:Number|No)|"
                  r"Unit[ \t]+(?:Number|No)|Patient[ \t]+ID|Pt[ \t]+ID|Patient[ \t]+Number|Chart)" + _SEP + _ID_CI)),
    ("ACCESSION", Keyed("accession|acc|exam|study|order",
                        r"(?:Accession|Acc|Exam[ \t]+ID|Study[ \t]+ID|Order)" + _SEP + _ID_CI)),
    ("SERIAL", Keyed("serial|s/n|sn|device|udi|lot|model|ser",
                     r"(?:Serial|S/N|SN|Device[ \t]+ID|UDI|Lot|Model/Serial|Ser\.?)"
                     r"(?:[ \t]+(?:Number|No\.?|#))?[ \t]*[:#]?[ \t]*" + _ID_CI)),
    ("ID", Keyed("ssn|social|insurance|member|policy|account|licen|npi",
                 r"(?:SSN|Social[ \t]+Security(?:[ \t]+Number)?|Insurance[ \t]+(?:ID|Number)|Member[ \t]+ID|"
                 r"Policy(?:[ \t]+Number)?|Account(?:[ \t]+Number)?|Licen[sc]e(?:[ \t]+Number)?|NPI)" + _SEP + _ID_CI)),
]
SSN = re.compile(r"[0-9]\d\d-\d\d-\d{4}\b")
# Long digit runs are identifiers in a report (measurements are short); letters just before
# ("RAD12345678") are added in detect.py.
LONG_NUMBER = re.compile(r"[0-9]\d{5,}\b(?![.,]\d)")

PHONE_CORE = [
    re.compile(r"\(\d{3}\)[ \t]*\d{3}[ \t.-]\d{4}(?![0-9])"),
    re.compile(r"[0-9]\d\d[ \t.-]\d{3}[ \t.-]\d{4}(?![0-9])"),
    re.compile(r"\+44[ \t]?\d{2,4}[ \t]\d{3,4}[ \t]\d{3,4}\b"),
    re.compile(r"0\d{2,4}[ \t]\d{3,4}[ \t]\d{3,4}\b"),
]
PHONE_LABELLED = Keyed("ext|pager|beeper", r"(?:Ext\.?|Extension|Pager|Beeper)[ \t]*#?[ \t]*(?P<v>[0-9]\d{3,4})\b")
PHONE_PREFIX = re.compile(r"(?:\+?1|00?1)[ \t.-]?$")  # searched just before a phone number
PHONE_EXTENSION = re.compile(r"[ \t]*(?:[Ee]xt\.?|x|X)[ \t]*\d{1,5}\b")  # matched just after one
FAX_CONTEXT = re.compile(r"(?:[Ff]ax|FAX)\b[^\n]{0,12}$")

EMAIL_DOMAIN = re.compile(r"@[\w-]+(?:\.[\w-]+)+\b")  # the local part is found backwards
URL = re.compile(r"(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]")
DOMAIN_TLD = re.compile(r"\.(?:com|org|net|edu|gov|io|info|health|us|uk|ca)\b(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)])?")
DOMAIN_HEAD = re.compile(r"[a-z0-9][a-z0-9.-]*$")


def _street_suffixes() -> str:
    text = resources.files("medmm.deid").joinpath("resources", "street_suffixes.txt").read_text(encoding="utf-8")
    words = sorted({w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")}, key=len,
                   reverse=True)
    return "(?:" + "|".join(re.escape(w) for w in words) + ")"


STREET = re.compile(
    r"[0-9]\d{0,5}[A-Z]?[ \t]+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?[ \t]+)?"
    r"(?:[A-Z][A-Za-z'-]+\.?[ \t]+|\d{1,3}(?:st|nd|rd|th)[ \t]+){1,3}" + _street_suffixes() + r"\b\.?"
    r"(?:,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|#)\.?[ \t]*#?[ \t]*[A-Z0-9-]+\b)?"
)
PO_BOX = re.compile(r"P\.?[ \t]?O\.?[ \t]+(?:Box|BOX)[ \t]+\d+\b")
# ", IL 62704": the state may stay (HIPAA Safe Harbor); the town before it and the ZIP code go.
STATE_ZIP = re.compile(r", (?P<state>[A-Z]{2})\b(?:[ \t]+(?P<zip>[0-9]\d{4}(?:-\d{4})?)\b)?")
TOWN_BEFORE = re.compile(r"(?:[A-ZÀ-Þ][\w'‘’.-]*[ \t]+(?:(?:upon|du|de|la|le|des|sur|del|da|di|von|van|y)[ \t]+)?){0,2}"
                         r"[A-ZÀ-Þ][\w'‘’.-]*$")
ZIP_LABELLED = Keyed("zip|postcode|postal", r"(?:ZIP(?:[ \t]+Code)?|Postcode|Postal[ \t]+Code)[ \t]*:?[ \t]*"
                                            r"(?P<zip>\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2})\b")
UK_POSTCODE = re.compile(r"[A-Z][A-Z]?\d[A-Z\d]?[ \t]\d[ABD-HJLNP-UW-Z]{2}\b")

# Words after which a capitalised run is a place: any run after the strong ones, listed towns
# after the weak ones.
PLACE_WORDS = [(w + " ", True) for w in ("transferred from", "resident of", "lives in", "born in", "home in",
                                          "moved from", "visiting from")]
PLACE_WORDS += [(w + " ", False) for w in ("from", "in", "at", "of", "near", "to")]
# A town word has a lower-case letter ("XXXX" is not one) and may hold capitals, accents,
# apostrophes and hyphens (McComb, DeLand, Orléans, Hawai‘i, O'Shanter-Sullivan); a few lower-case
# particles may join two words (Kingston upon Hull, Prairie du Chien).
_PLACE_WORD = r"[A-ZÀ-Þ](?=[\w'‘’-]*[a-zß-ÿ])[\w'‘’]*(?:-[\w'‘’]+)*"
_PARTICLE = r"(?:[ \t](?:upon|du|de|la|le|des|sur|del|da|di|von|van|y)(?=[ \t][A-Z]))?"
PLACE_RUN = re.compile(rf"(?:St\. |Saint |Ft\. )?{_PLACE_WORD}(?:{_PARTICLE}[ \t]{_PLACE_WORD}){{0,2}}")

_INST_SUFFIX = (r"(?:Hospital|HOSPITAL|Medical[ \t]+Cent(?:er|re)|MEDICAL CENTER|Health[ \t]+(?:Cent(?:er|re)|System|"
                r"Sciences?[ \t]+Cent(?:er|re))|Healthcare|Health[ \t]+Care|Clinic|CLINIC|Infirmary|Medical[ \t]+Group|"
                r"Imaging(?:[ \t]+Cent(?:er|re))?|Radiology[ \t]+(?:Associates|Group|Partners)|"
                r"Cancer[ \t]+(?:Cent(?:er|re)|Institute)|Children's|Memorial|Hospice|Nursing[ \t]+Home|"
                r"Rehabilitation[ \t]+(?:Cent(?:er|re)|Hospital)|Surg(?:ical|ery)[ \t]+Cent(?:er|re)|Urgent[ \t]+Care)")
INSTITUTION_SUFFIX = re.compile(_INST_SUFFIX + r"\b(?:[ \t]+(?:of|at)[ \t]+(?:[A-Z][A-Za-z'.-]+\b[ \t]?){1,3})?")
INSTITUTION_HEAD = re.compile(r"(?:(?:St\.|Saint|[A-Z][A-Za-z'&.-]*)[ \t]+){1,5}$")
UNIVERSITY = re.compile(r"University[ \t]+of[ \t]+(?:[A-Z][A-Za-z'.-]+\b[ \t]?){1,3}")
VA_CENTER = re.compile(r"(?:VA|Veterans[ \t]+Affairs)[ \t]+Medical[ \t]+Cent(?:er|re)\b")
# Words that start many sentences and would be swallowed by an institution's capitalised run.
INSTITUTION_LEADS = frozenset(
    "The A An At In From To Of Outside Prior Previous Comparison Compared Seen Performed Obtained Images "
    "Study Studies Exam Transferred Referred Patient Films This Our Per With And Local Report By".split()
)


def month_number(token: str) -> int | None:
    """'Sept.' -> 9; a number string -> its value; None when neither."""
    t = token.rstrip(".").lower()
    if t.isdigit():
        return int(t)
    return MONTHS.get(t)
