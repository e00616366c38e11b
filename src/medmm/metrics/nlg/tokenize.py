"""Java-free re-implementation of the tokenisation pycocoevalcap applies before scoring.

pycocoevalcap runs Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` (a JFlex
lexer, in Java) on every caption, then drops the tokens in :data:`PUNCTUATIONS`. This module
reproduces that lexer's behaviour in Python for the kinds of text medmm scores (radiology reports,
figure captions): a longest-match scanner over the lexer's token classes, ties going to the rule
listed first, with the same normalisations (``(`` -> ``-LRB-``, ``[`` -> ``-LSB-``, ``&amp;`` -> ``&``,
3-4 hyphens -> ``--``, ``...``/``. . .`` -> ``...``, ``½`` -> ``1/2``, fractions ``5 7/8`` kept as one
token joined by a no-break space, abbreviation periods kept or doubled as the lexer does).

Quirk kept on purpose: lowercasing happens after bracket normalisation, so ``-LRB-`` becomes
``-lrb-`` and is *not* removed by pycocoevalcap's punctuation filter (which lists ``-LRB-``).
Scores therefore count bracket tokens exactly as pycocoevalcap does.

Speed: most of a report is plain words, commas, brackets and sentence-final periods, whose tokens
need no rule scan; ``_scan`` takes such stretches in one regex call and runs the rules only for the
rest. ``_scan(..., fast=False)`` is the rules-only reference the tests compare the fast paths with.

Measured agreement with the Java tokenizer: see docs/metrics-nlg.md (tests/test_nlg_tokenize.py
compares both on real reports when Java is installed).
"""

from __future__ import annotations

import re
from functools import lru_cache

import regex

__all__ = ["PUNCTUATIONS", "ptb_tokenize", "coco_tokenize", "tokenize_corpus"]

# Exactly pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

_L = r"[^\W\d_]"  # JFlex [:letter:]
_D = r"\d"  # JFlex [:digit:]
_SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
_NEWLINE = r"(?:\r|\r?\n|\u2028|\u2029|\u000B|\u000C|\u0085)"
_SPACENL = rf"(?:{_SPACE}|{_NEWLINE})"
_SGML = r"<\/?[A-Za-z!][^>]*>"
_SENTEND = rf"{_SPACENL}(?:{_SPACENL}|[A-Z]|{_SGML})"
_APOS = r"(?:['\u0092\u2019]|&apos;)"
_APOSETC = rf"(?:{_APOS}|[\u0091\u2018\u201B])"
_SPLET = r"&[aeiouAEIOU](?:acute|grave|uml);"
_LETTER = rf"(?:{_L}|{_SPLET}|[\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF\u0300-\u036F])"
# Letters then letters/digits; "limits.The" stays one token in 3.4.1 (internal . ! ? before a letter).
_WORD = rf"{_LETTER}(?:{_LETTER}|{_D})*(?:[.!?]{_LETTER}(?:{_LETTER}|{_D})*)*"
_REDAUX = rf"{_APOS}(?:[msdMSD]|re|ve|ll|RE|VE|LL)"
_SWORD = r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"
_SREDAUX = rf"[nN]{_APOSETC}[tT]"
_HYPHEN = r"[-_\u058A\u2010\u2011]"
_ALNUM = rf"(?:{_L}|{_D})"
_THINGPART = rf"(?:[dDoOlL]{_APOSETC}{_ALNUM})?{_ALNUM}+"
_THING = rf"{_THINGPART}(?:{_HYPHEN}{_THINGPART})*"
_THINGA = r"[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+"
_THING3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?\/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
_ACRO = r"(?:[A-Za-z](?:\.[A-Za-z])*|(?i:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|U\.S\.S\.R))"
_ACRO2 = r"(?:[A-Za-z](?:\.[A-Za-z])+|(?i:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|U\.S\.S\.R))"
_HTHING = rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|{_ACRO2}\.))+"
_DATE = rf"{_D}{{1,2}}[\-\/]{_D}{{1,2}}[\-\/]{_D}{{2,4}}"
_NUM = rf"(?:{_D}*(?:[.:,\u00AD\u066B\u066C]{_D}+)+|{_D}+)"
_NUMBER = rf"[\-+]?{_NUM}"
_FRAC = rf"(?:{_D}{{1,4}}[- \u00A0])?{_D}{{1,4}}(?:\\?\/|\u2044){_D}{{1,4}}"
_ABMONTH = r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
_ABDAYS = r"Mon|Tue|Tues|Wed|Thu|Thurs|Fri"
# (?-i:X) = a JFlex character class inside the caseless scanner: that letter is case-sensitive.
_ABSTATE = (r"Ala|Ariz|(?-i:A)z|(?-i:A)rk|Calif|Colo|Conn|Ct|Dak|(?-i:D)el|Fla|Ga|(?-i:I)ll|Ind|Kans?|Ky|(?-i:L)a|"
            r"(?-i:M)ass|Md|Mich|Minn|(?-i:M)iss|Mo|Mont|Neb|Nev|Okla|(?-i:O)re|(?-i:P)a|Penn|Tenn|(?-i:T)ex|Va|Vt|"
            r"(?-i:W)ash|Wisc?|Wyo")
_ABCOMP = r"Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys"
_ABCOMP2 = r"Invt|Elec|Natl|M[ft]g|Dept"
_ABNUM = r"tel|est|ext|sq"
_ABPTIT = r"Jr|Sr|Bros|(?:Ed|Ph)\.D|Blvd|Rd|Esq"
_ABTITLE = (r"Mr|Mrs|Ms|(?-i:M)iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|"
            r"Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|"
            r"Msgr|Sfc")
_ABBREV1 = rf"(?:(?i:{_ABMONTH}|{_ABDAYS}|{_ABSTATE}|{_ABCOMP}|{_ABNUM}|{_ABPTIT}|etc|al|seq|Bldg))\."
# Abbreviations kept with their period only before a number ("fig. 5", "no. 3").
_ABBREV3 = r"(?i:ca|figs?|prop|nos?|arts?|pp|op)\."
_ABBREV4 = rf"(?:[A-Za-z]|(?i:{_ABTITLE}|vs|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Ph)|{_ACRO}|(?i:{_ABCOMP2}))"
_ABBREV2 = rf"{_ABBREV4}\."
_ACRONYM = rf"{_ACRO}\."
_SENTWORDS = (r"[A](?i:bout|ccording|dditionally|fter|n|s|t)|[A]|[B](?i:ut)|[E](?i:arlier)|[H](?i:e|er|ere|owever)|"
              r"[I](?i:f|n|t)|[L](?i:ast)|[M](?i:any|ore|r\.|s\.)|[N](?i:ow)|[O](?i:nce|ne|ther|ur)|"
              r"[S](?i:he|ince|o|ome|uch)|[T](?i:hat|he|hen|here|hese|hey|his)|[W](?i:e|hen|hile|hat)|[Y](?i:et|ou)")
_PHONE = r"(?:\([0-9]{3}\)[ \u00A0]?|[0-9]{3}[\- \u00A0.])[0-9]{3}[\- \u00A0.][0-9]{4}"
_LDOTS = r"(?:\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026])"
_QUOTES = rf"(?:{_APOS}|''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{{1,2}})"
_INSENTP = r"[,;:]"
_MISC = (r"[\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00B3\u00B4-\u00BA\u00D7\u00F7\u0387\u2020-\u2023"
         r"\u2016\u2017\u2024\u2025\u2030-\u2038\u203B\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF"
         r"\u2460-\u24FF\u25A0-\u25FF\u2600-\u26FF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65]")
_FRAC2 = {"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3", "\u2154": "2/3"}

# Actions: how the matched text becomes the token(s).
(_KEEP, _DASH, _AMP, _FRACSP, _FRACCHR, _DOUBLE, _CANNOT, _HYPHENS, _ELLIPSIS, _MAP, _SKIP, _PHONE_A, _ACRONYM_A,
 _QLEFT, _QRIGHT, _LTGT) = range(16)
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}


def _rule(pattern: str, action: int = _KEEP, trail: str | None = None):
    # JFlex picks the LONGEST match of each rule; Python's re takes the first alternative that fits,
    # so compile with regex's POSIX (leftmost-longest) mode.
    return (regex.compile(pattern, regex.POSIX), regex.compile(trail) if trail else None, action)


# Order = tie-break priority (JFlex: earliest rule wins among equally long matches).
_RULES = [
    _rule(r"(?i:cannot)", _CANNOT),
    _rule(_SGML),
    _rule(r"&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", _DASH),
    _rule(r"&amp;", _AMP),
    _rule(r"&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);"),
    _rule(_WORD, trail=_REDAUX),
    _rule(_SWORD, trail=_SREDAUX),
    _rule(_WORD),
    _rule(rf"{_APOS}[nN]{_APOS}?|[lLdDjJ]{_APOS}|{_APOS}(?i:em|cause|till?)|{_APOS}[2-9]0[sS]|"
          rf"[A-HJ-XZn]{_APOSETC}{_L}{{2}}{_L}*|{_L}{_L}*[aeiouyAEIOUY]{_APOSETC}[aeiouA-Z]{_L}*"),
    _rule(r"[yY]" + _APOS, trail=_L),
    _rule(r"https?:\/\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]"),
    _rule(r"(?:(?:www\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},\-_$]+\.)+"
          r"(?:com|net|org|edu)))(?:\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"),
    _rule(r"[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0]*@(?:[^ \t\n\f\r\"<>|().\u00A0]+\.)+[a-zA-Z]{2,4}"),
    _rule(_REDAUX, _QRIGHT, trail=r"[^A-Za-z]|$"),
    _rule(_SREDAUX, _QRIGHT),
    _rule(_DATE),
    _rule(_NUMBER),
    _rule(r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)"),
    _rule(_FRAC, _FRACSP),
    _rule(r"[\u00BC\u00BD\u00BE\u2153-\u215E]", _FRACCHR),
    _rule(rf"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|(?i:pro|anti)-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls|Cap{_APOS}n|c{_APOS}est", _AMP),
    _rule(_THING3),
    _rule(r"[A-Z]*\$|#"),
    _rule(r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]"),
    _rule(_ACRONYM, _ACRONYM_A, trail=rf"{_SPACENL}+(?:{_SENTWORDS}){_SPACE}"),
    _rule(_ABBREV1, _DOUBLE, trail=_SENTEND),
    _rule(_ABBREV1),
    _rule(_ABBREV2),
    _rule(_ABBREV3, trail=rf"{_SPACE}*[0-9]"),
    _rule(_ABBREV4, trail=_SPACE),
    _rule(_ACRO, trail=_SPACENL),
    _rule(rf"{_APOS}[0-9][0-9]", trail=_SPACENL),
    _rule(rf"{_WORD}\.", trail=_INSENTP),
    _rule(_PHONE, _PHONE_A),
    _rule(r"\"|&quot;", _QLEFT, trail=r"[A-Za-z0-9$]"),
    _rule(r"\"|&quot;", _QRIGHT),
    _rule(r"[+%&\u2030\u2031~^|\\]"),
    _rule(r"<<|>>"),
    _rule(r"[<>]|&lt;|&gt;", _LTGT),
    _rule(rf"#{_WORD}|@[a-zA-Z_][a-zA-Z_0-9]*"),
    _rule(r"[\[\]{}()]", _MAP),
    _rule(r"-+", _HYPHENS),
    _rule(_LDOTS, _ELLIPSIS),
    _rule(r"@+|#+|_+"),
    _rule(r"\*+"),
    _rule(_INSENTP),
    _rule(r"[?!]+"),
    _rule(r"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA]"),
    _rule(r"="),
    _rule(r"\/"),
    _rule(rf"{_HTHING}\.", trail=_INSENTP),
    _rule(_HTHING),
    _rule(rf"{_THING}\.", trail=_INSENTP),
    _rule(_THING),
    _rule(rf"{_THINGA}\.", _AMP, trail=_INSENTP),
    _rule(_THINGA, _AMP),
    _rule(r"'", _QLEFT, trail=r"[A-Za-z][^ \t\n\r\u00A0]"),
    _rule(_REDAUX, _QRIGHT),
    _rule(_QUOTES, _QRIGHT),
    _rule(_MISC),
    _rule(rf"(?:{_SPACE}|{_NEWLINE}|[\u0000\u200B\u200E\u200F\uFEFF])+|&nbsp;", _SKIP),
]

# A plain run of ASCII letters or digits followed by a space, a comma-like mark, a bracket or the end:
# no rule can produce anything but the run itself, so skip the rule scan (most tokens of a report).
_FAST = re.compile(r"(?:[A-Za-z]+|[0-9]+)(?=[,;:)\]]?(?:[ \t]|$))")
_FAST_SPACES = re.compile(r"[ \t]+")
# A stretch of text made only of tokens whose lexer result is known without the rule scan, matched in
# one regex call: spaces; the _FAST words (not "cannot"; digit runs not starting a fraction, phone
# number or decimal); ", ; :" before a space or the end (a number needs a digit after them);
# "(" before a letter (a phone number needs a digit); ")" (no other rule starts with it); "]" before a
# space or the end (a URL could start with it); and "word." closing a sentence (its word must pass
# _period_safe, checked after the match). Each piece is what the per-token scan would produce there.
_RUN = re.compile(
    r"(?:[ \t]+"
    r"|(?!(?i:cannot)(?![A-Za-z]))[A-Za-z]+(?=[,;:)\]]?(?:[ \t]|$))"
    r"|[0-9]+(?=[,;:)\]]?(?:[ \t]|$))(?![ \u00A0\-.,:/]?[0-9])"
    r"|[,;:](?=[ \t]|$)"
    r"|\((?=[A-Za-z])"
    r"|\)"
    r"|\](?=[ \t]|$)"
    r"|[A-Za-z]{2,}\.(?=[ \t][^.\s]|[ \t]*$|\n(?:[^.\s]|$))"
    r")+"
)
_RUN_TOKENS = re.compile(r"[A-Za-z]+|[0-9]+|[,;:.()\]]")
_RUN_PERIOD_WORDS = re.compile(r"([A-Za-z]+)\.")
_RUN_MAP = {"(": "-LRB-", ")": "-RRB-", "]": "-RSB-"}


def _run_tokens(text: str, pos: int, end: int) -> tuple[list[str], int]:
    """Tokens of the _RUN match text[pos:end] and where they end: before the first "word." that is
    not period-safe (an abbreviation the rule scan must handle), else at ``end``."""
    seg = text[pos:end]
    if "." in seg and not all(map(_period_safe, _RUN_PERIOD_WORDS.findall(seg))):
        cut = next(m.start() for m in _RUN_PERIOD_WORDS.finditer(seg) if not _period_safe(m.group(1)))
        seg, end = seg[:cut], pos + cut
    toks = _RUN_TOKENS.findall(seg)
    if "(" in seg or ")" in seg or "]" in seg:
        toks = [_RUN_MAP.get(t, t) for t in toks]
    return toks, end


def _scan(text: str, limit: int | None = None, fast: bool = True) -> list[str]:
    """Tokens starting before ``limit``; text past it is lookahead only (the next line of the file).

    ``fast=False`` runs the lexer rules alone at every token (the reference the fast paths must equal).
    """
    out: list[str] = []
    pos, n = 0, len(text) if limit is None else limit
    while pos < n:
        if fast:
            m = _RUN.match(text, pos)
            # A run never crosses the line end (the "\n" before the next line's context stops it).
            if m and m.end() <= n:
                toks, end = _run_tokens(text, pos, m.end())
                if end > pos:
                    out.extend(toks)
                    pos = end
                    continue
            m = _FAST_SPACES.match(text, pos)
            if m:
                pos = m.end()
                continue
            m = _FAST.match(text, pos)
            if m:
                word = m.group()
                # "cannot" splits; digit runs may start a fraction ("5 7/8") or a phone number.
                if m.end() <= n and word.lower() != "cannot" and not (word[0].isdigit() and _needs_scan_after_digits(text, m.end())):
                    out.append(word)
                    pos = m.end()
                    continue
            m = _FAST_PERIOD.match(text, pos)
            if m and m.end() + 1 <= n and _period_safe(m.group()):
                # "word." closing a sentence: the word, then the period (checked once per word type).
                out.append(m.group())
                out.append(".")
                pos = m.end() + 1
                continue
        best_len, best, best_m = 0, None, None
        for rx, trail, action in _RULES:
            mm = rx.match(text, pos)
            if mm is None or mm.end() == pos:
                continue
            length = mm.end() - pos
            if trail is not None:
                tm = trail.match(text, mm.end())
                if tm is None:
                    continue
                length += tm.end() - mm.end()
            if length > best_len:
                best_len, best, best_m = length, action, mm
        if best_m is None:  # untokenizable character: the lexer deletes it
            pos += 1
            continue
        tok, end = best_m.group(), best_m.end()
        if best == _SKIP:
            pass
        elif best == _CANNOT:
            out.append(tok[:3])
            end = pos + 3
        elif best == _DOUBLE:
            out.append(tok)
            end -= 1  # the period is returned again as its own token
        elif best == _ACRONYM_A:
            if len(tok) == 2:  # "I." before a sentence word: the letter, then the period
                out.append(tok[0])
            else:
                out.append(tok)
            end -= 1
        elif best in (_QLEFT, _QRIGHT):
            out.append(_latex_quotes(tok, best == _QLEFT))
        elif best == _LTGT:
            out.append({"&lt;": "<", "&gt;": ">"}.get(tok, tok))
        elif best == _DASH:
            out.append("--")
        elif best == _AMP:
            out.append(re.sub(r"(?i:&amp;)", "&", tok))
        elif best == _FRACSP:
            out.append(tok.replace(" ", "\u00A0"))
        elif best == _FRACCHR:
            out.append(_FRAC2.get(tok, tok))
        elif best == _HYPHENS:
            out.append("--" if 3 <= len(tok) <= 4 else tok)
        elif best == _ELLIPSIS:
            out.append("...")
        elif best == _MAP:
            out.append(_BRACKETS[tok])
        elif best == _PHONE_A:
            out.append(tok.replace(" ", "\u00A0").replace("(", "-LRB-").replace(")", "-RRB-"))
        else:
            out.append(tok.replace("\u00AD", "") if len(tok) > 1 else tok)
        pos = end
    return out


_Q_LEFT_SUBS = [(re.compile(r"&apos;|'"), "`"), (re.compile(r'"|&quot;'), "``")]
_Q_RIGHT_SUBS = [(re.compile(r"&apos;|'"), "'"), (re.compile(r'"|&quot;'), "''")]
_Q_COMMON = [(re.compile("[\u0091\u2018\u201B\u2039]"), "`"), (re.compile("[\u0092\u2019\u203A]"), "'"),
             (re.compile("[\u0093\u201C\u00AB]"), "``"), (re.compile("[\u0094\u201D\u00BB]"), "''")]


def _latex_quotes(tok: str, left: bool) -> str:
    """PTBLexer's latexQuotes: ASCII and curly quotes become ` `` ' '' (all dropped later as punctuation)."""
    for rx, rep in (_Q_LEFT_SUBS if left else _Q_RIGHT_SUBS) + _Q_COMMON:
        tok = rx.sub(rep, tok)
    return tok


_FAST_PERIOD = re.compile(r"[A-Za-z]{2,}(?=\.(?:[ \t][^.\s]|[ \t]*$))")
_PERIOD_SAFE: dict[str, bool] = {}
# For a word of ASCII letters followed by "." and a space or line end, the only rules that can make
# the lexer return anything but [word, "."] are the abbreviation rules (which take the period into
# the token, or double it) and "cannot" (split in two): every other rule needs a character that is
# not a letter inside the word ("-", "'", "@", "/", digits...). So this test is exact for such words;
# tests/test_nlg_tokenize.py checks it against _period_safe_probe on real and made-up words.
_ABBREV_DOT = regex.compile(rf"(?:{_ABBREV1}|{_ABBREV2}|{_ABBREV3}|{_ACRONYM})", regex.POSIX)
# What may follow a sentence-final "word." on the fast paths: a space or the line end, then a word,
# a capitalised sentence start, a digit or a bracket.
_PERIOD_TAILS = (".", ". x", ". X", ". 5", ". The", ". The ", ". (", ".\nx", ".\nX", ".\n5", ".\nThe ", ".\n(", ".\n")


def _period_safe(word: str) -> bool:
    """True when "word." (``word``: 2+ ASCII letters) tokenises as [word, "."] whatever follows."""
    got = _PERIOD_SAFE.get(word)
    if got is None:
        got = _PERIOD_SAFE[word] = word.lower() != "cannot" and _ABBREV_DOT.fullmatch(word + ".") is None
    return got


def _period_safe_probe(word: str) -> bool:
    """The reference for :func:`_period_safe`: run the lexer rules on "word." before each tail."""
    return all(_scan(word + tail, fast=False)[:2] == [word, "."] for tail in _PERIOD_TAILS)


_DIGIT_CONT = re.compile(r"[ \u00A0\-.,:/]?[0-9]")


def _needs_scan_after_digits(text: str, end: int) -> bool:
    return _DIGIT_CONT.match(text, end) is not None


_CONTEXT = 64  # characters of the next caption the lexer may look at (sentence-end rules)


@lru_cache(maxsize=200_000)
def ptb_tokenize(text: str, next_text: str | None = None) -> tuple[str, ...]:
    """Tokens of one caption as CoreNLP 3.4.1 ``PTBTokenizer -preserveLines -lowerCase`` gives them.

    pycocoevalcap tokenises all captions as lines of one file, so the lexer's sentence-end rules can
    see the start of the next caption (``"... CT."`` then ``"The ..."`` gives ``ct.`` ``.``). Pass that
    caption as ``next_text`` to reproduce it exactly; ``None`` means end of file.
    """
    text = text.replace("\n", " ")
    if next_text is None:
        return tuple(map(str.lower, _scan(text)))
    window = text + "\n" + next_text[:_CONTEXT].replace("\n", " ")
    return tuple(map(str.lower, _scan(window, len(text))))


@lru_cache(maxsize=200_000)
def coco_tokenize(text: str, next_text: str | None = None) -> str:
    """pycocoevalcap's tokenised form of one caption: PTB tokens minus punctuation, space-joined."""
    return " ".join([t for t in ptb_tokenize(text, next_text) if t not in PUNCTUATIONS])


def tokenize_corpus(captions: dict, tokenize: bool = True) -> dict:
    """Tokenise ``{id: [str, ...]}`` exactly as ``PTBTokenizer().tokenize`` does (same line order and
    cross-line context); the identity (copied lists) when ``tokenize`` is false."""
    if not tokenize:
        return {k: list(v) for k, v in captions.items()}
    flat = [c for v in captions.values() for c in v]
    out: dict = {}
    i = 0
    for k, v in captions.items():
        toks = []
        for c in v:
            nxt = flat[i + 1] if i + 1 < len(flat) else None
            toks.append(coco_tokenize(c, nxt))
            i += 1
        out[k] = toks
    return out
