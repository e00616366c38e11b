"""Replacements: a category tag (mask mode) or a realistic surrogate (surrogate mode).

Surrogates are keyed by a secret (per run, or derived from an explicit seed) so that the same
original gets the same surrogate within a run and nothing can be recomputed without the secret.
Dates move by one offset per patient, so intervals between a patient's dates survive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from medmm.deid import lists
from medmm.deid.patterns import DATE_PATTERNS, month_number

MAX_SHIFT_DAYS = 730
_MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December"]


def make_secret(seed: int | None = None) -> bytes:
    """A fresh random key, or one derived from `seed` (reproducible runs, e.g. benchmarks)."""
    if seed is None:
        return secrets.token_bytes(32)
    return hashlib.sha256(f"medmm-deid-seed:{seed}".encode()).digest()


class Surrogates:
    """Keyed surrogate values; one instance per run."""

    def __init__(self, secret: bytes):
        self.secret = secret

    def _int(self, *parts: str) -> int:
        msg = "\x1f".join(parts).encode()
        return int.from_bytes(hmac.new(self.secret, msg, hashlib.sha256).digest()[:8], "big")

    def date_shift_days(self, patient_id: str) -> int:
        """Days (1..MAX_SHIFT_DAYS) every date of this patient moves back."""
        return 1 + self._int("shift", patient_id) % MAX_SHIFT_DAYS

    def shift_date(self, original: str, patient_id: str) -> str:
        """The date written the same way, `date_shift_days` earlier; a tag when it cannot be parsed."""
        for pat in DATE_PATTERNS:
            m = pat.fullmatch(original)
            if m is None:
                continue
            g = m.groupdict()
            month = month_number(g["m"])
            has_year, has_day = g.get("y") is not None, g.get("d") is not None
            year = int(g["y"]) if has_year else 2001
            if has_year and len(g["y"]) == 2:
                year += 2000 if year <= 50 else 1900
            try:
                day0 = dt.date(year, month, int(g["d"]) if has_day else 1)
            except (ValueError, TypeError):
                continue
            new = day0 - dt.timedelta(days=self.date_shift_days(patient_id))
            return _rewrite(m, new)
        return "[DATE]"

    def value(self, category: str, original: str, patient_id: str) -> str:
        """A surrogate of `original` of the given category."""
        if category == "DATE":
            return self.shift_date(original, patient_id)
        if category == "AGE":
            return "90+" if original[:1].isdigit() else "elderly"
        k = self._int(category, original)
        if category == "NAME":
            return self._name(original, k)
        if category == "EMAIL":
            return f"user{k % 100000:05d}@example.org"
        if category == "URL":
            return f"https://example.org/{k % 100000:05d}"
        if category == "INSTITUTION":
            return f"{lists.surrogate_surnames()[k % len(lists.surrogate_surnames())].title()} General Hospital"
        if category == "ADDRESS":
            if original[:1].isdigit():
                return f"{1 + k % 999} {lists.surrogate_surnames()[k % 1000].title()} Street"
            cities = lists.surrogate_cities()
            return cities[k % len(cities)]
        return self._same_shape(original, k)

    def _name(self, original: str, k: int) -> str:
        first, last = lists.surrogate_first_names(), lists.surrogate_surnames()
        words = original.replace(",", " ").split()
        surname = last[k % len(last)].title()
        if len(words) <= 1:
            return surname
        given = first[(k >> 20) % len(first)].title()
        return f"{surname}, {given}" if "," in original else f"{given} {surname}"

    def _same_shape(self, original: str, k: int) -> str:
        """Digits -> keyed digits, letters -> keyed letters; punctuation and length kept."""
        out = []
        for i, ch in enumerate(original):
            r = self._int("c", str(k), str(i))
            if ch.isdigit():
                out.append(str(r % 10))
            elif ch.isalpha():
                base = "A" if ch.isupper() else "a"
                out.append(chr(ord(base) + r % 26))
            else:
                out.append(ch)
        return "".join(out)


def _rewrite(m: re.Match, new: dt.date) -> str:
    """Write `new` in the format of the matched date."""
    g = m.groupdict()
    text = m.group(0)
    pieces = []  # (start, end, replacement) inside the match
    base = m.start()
    if g.get("y") is not None:
        y = str(new.year) if len(g["y"]) == 4 else f"{new.year % 100:02d}"
        pieces.append((m.start("y") - base, m.end("y") - base, y))
    mon = g["m"]
    if mon.rstrip(".").isdigit():
        new_m = f"{new.month:02d}" if len(mon) == 2 else str(new.month)
    else:
        name = _MONTH_NAMES[new.month - 1]
        core = mon.rstrip(".")
        new_m = name if len(core) > 3 else name[:3]
        new_m = new_m.upper() if core.isupper() else new_m
        new_m += "." if mon.endswith(".") and len(core) <= 4 else ""
    pieces.append((m.start("m") - base, m.end("m") - base, new_m))
    if g.get("d") is not None:
        d = f"{new.day:02d}" if len(g["d"]) == 2 else str(new.day)
        pieces.append((m.start("d") - base, m.end("d") - base, d))
    for s, e, rep in sorted(pieces, reverse=True):
        text = text[:s] + rep + text[e:]
    return text
