"""Run the rules of patterns.py and names.py over a text: PHI spans, unmerged."""

from __future__ import annotations

from medmm.deid import lists
from medmm.deid import patterns as P
from medmm.deid.names import iter_names, starts_word
from medmm.deid.spans import Span

_LOCAL_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# "Jones, MD" and "Roe, PA" are credentials, not Maryland and Pennsylvania, unless a ZIP follows.
_CREDENTIAL_STATES = frozenset({"MD", "PA", "DO"})
# Territories, freely associated states and military "states" of US postal addresses.
_TERRITORIES = frozenset({"DC", "PR", "GU", "VI", "AS", "MP", "FM", "MH", "PW", "AA", "AE", "AP"})


def _dates(text: str, add) -> None:
    for pat in P.DATE_PATTERNS:
        for m in pat.finditer(text):
            s = m.start()
            if s and (text[s - 1].isalnum() or (text[s - 1] in "/.-" and text[s - 2:s - 1].isdigit())):
                continue
            month = P.month_number(m.group("m"))
            d = m.groupdict().get("d")
            if month is None or not 1 <= month <= 12 or not 1 <= (int(d) if d else 1) <= 31:
                continue
            add((s, m.end(), "DATE"))


def _ages(text: str, low: str, add) -> None:
    for pat in P.AGE_PATTERNS:
        for m in pat.finditer(text):
            if starts_word(text, m.start()):
                add((m.start("age"), m.end("age"), "AGE"))
    for m in P.AGE_LABELLED.finditer(text, low):
        add((m.start("age"), m.end("age"), "AGE"))
    for m in P.AGE_WORDS.finditer(text, low):
        add((m.start(), m.end(), "AGE"))  # "nonagenarian", "centenarian"


def _numbers(text: str, low: str, add) -> None:
    for cat, pat in P.LABELLED:
        for m in pat.finditer(text, low):
            if any(ch.isdigit() for ch in m.group("v")):
                add((m.start("v"), m.end("v"), cat))
    for m in P.SSN.finditer(text):
        if starts_word(text, m.start()):
            add((m.start(), m.end(), "ID"))
    for m in P.LONG_NUMBER.finditer(text):
        s = m.start()
        if s and text[s - 1] in ".,/":
            continue
        while s and (text[s - 1].isupper() or (text[s - 1] == "-" and s > 1 and text[s - 2].isupper())):
            s -= 1  # letters of "RAD12345678", "MRN-1234567"
        if starts_word(text, s):
            add((s, m.end(), "ID"))


def _phones(text: str, low: str, add) -> None:
    for m in P.PHONE_LABELLED.finditer(text, low):
        add((m.start("v"), m.end("v"), "PHONE"))
    for pat in P.PHONE_CORE:
        for m in pat.finditer(text):
            s, e = m.start(), m.end()
            pre = P.PHONE_PREFIX.search(text, max(0, s - 5), s)
            if s and ((text[s - 1].isalnum() and text[s - 1] != "x") or (text[s - 1] == "-" and not pre)):
                continue
            if pre and (starts_word(text, pre.start()) or text[pre.start() - 1:pre.start()] == "+"):
                s = pre.start() - (1 if text[pre.start() - 1:pre.start()] == "+" else 0)
            ext = P.PHONE_EXTENSION.match(text, e)
            if ext:
                e = ext.end()
            fax = P.FAX_CONTEXT.search(text, max(0, s - 20), s)
            add((s, e, "FAX" if fax else "PHONE"))


def _contacts(text: str, add) -> None:
    if "@" in text:
        for m in P.EMAIL_DOMAIN.finditer(text):
            s = m.start()
            while s and text[s - 1] in _LOCAL_PART:
                s -= 1
            if s < m.start():
                add((s, m.end(), "EMAIL"))
    for m in P.URL.finditer(text):
        if starts_word(text, m.start()):
            add((m.start(), m.end(), "URL"))
    for m in P.DOMAIN_TLD.finditer(text):
        head = P.DOMAIN_HEAD.search(text, max(0, m.start() - 60), m.start())
        if head and text[head.start() - 1:head.start()] not in ("@", "/") and starts_word(text, head.start()):
            add((head.start(), m.end(), "URL"))


def _places(text: str, low: str, add) -> None:
    for pat in (P.STREET, P.PO_BOX):
        for m in pat.finditer(text):
            if starts_word(text, m.start()):
                add((m.start(), m.end(), "ADDRESS"))
    states, cities = lists.us_states(), lists.cities()
    for m in P.STATE_ZIP.finditer(text):
        st, zipcode = m.group("state"), m.group("zip")
        if (st not in states and st not in _TERRITORIES) or (st in _CREDENTIAL_STATES and not zipcode):
            continue
        town = P.TOWN_BEFORE.search(text, max(0, m.start() - 60), m.start())
        # The whole capitalised run between the previous comma and the state is the town ("Lake
        # Tyler", not the listed "Tyler"). Without a ZIP code, ", CT" and ", MR" are more often
        # modalities than states: the town must then be a listed one.
        if town and (zipcode or town.group() in cities):
            add((town.start(), m.start(), "ADDRESS"))
        if zipcode:
            add((m.start("zip"), m.end("zip"), "POSTCODE"))
    for m in P.ZIP_LABELLED.finditer(text, low):
        add((m.start("zip"), m.end("zip"), "POSTCODE"))
    for m in P.UK_POSTCODE.finditer(text):
        if starts_word(text, m.start()):
            add((m.start(), m.end(), "POSTCODE"))
    # Towns after place words: any capitalised run after strong ones, listed towns after weak ones.
    for kw, strong in P.PLACE_WORDS:
        i = low.find(kw)
        while i != -1:
            j = i + len(kw)
            if starts_word(text, i) and text[j:j + 1].isupper():
                run = P.PLACE_RUN.match(text, j)
                if run and strong:
                    add((j, run.end(), "ADDRESS"))
                elif run:
                    parts = run.group().split(" ")
                    for n in range(len(parts), 0, -1):  # longest listed town: "San Diego" before "San"
                        town = " ".join(parts[:n])
                        if town in cities:
                            add((j, j + len(town), "ADDRESS"))
                            break
            i = low.find(kw, j)


def _institutions(text: str, add) -> None:
    for m in P.INSTITUTION_SUFFIX.finditer(text):
        head = P.INSTITUTION_HEAD.search(text, max(0, m.start() - 80), m.start())
        if head is None:
            continue
        start = head.start()
        while True:  # drop sentence words caught by the capitalised run ("Outside", "Comparison")
            word = text[start:m.start()].split(" ", 1)[0]
            if word in P.INSTITUTION_LEADS and " " in text[start:m.start()].strip():
                start += len(word) + 1
            else:
                break
        end = m.end() - (1 if text[m.end() - 1] == " " else 0)
        add((start, end, "INSTITUTION"))
    for pat in (P.UNIVERSITY, P.VA_CENTER):
        for m in pat.finditer(text):
            if starts_word(text, m.start()):
                add((m.start(), m.end() - (1 if text[m.end() - 1] == " " else 0), "INSTITUTION"))


def detect_rules(text: str) -> list[Span]:
    """Every PHI span the rules and dictionaries find (unmerged)."""
    found: list[tuple[int, int, str]] = []
    add = found.append
    low = text.lower()
    _dates(text, add)
    _ages(text, low, add)
    _numbers(text, low, add)
    _phones(text, low, add)
    _contacts(text, add)
    _places(text, low, add)
    _institutions(text, add)
    for s, e in iter_names(text, low):
        add((s, e, "NAME"))
    return [Span(s, e, c) for s, e, c in found]
