"""Language resources of METEOR 1.5 (English), read as data from pycocoevalcap's files: no Java runs.

* ``meteor-1.5.jar`` (a zip): ``function/english.words`` (function words), ``synonym/english.synsets``
  and ``synonym/english.exceptions`` (WordNet 3.0 synsets and irregular forms),
  ``nonbreaking/english.prefixes`` (the normaliser's non-breaking prefixes).
* ``data/paraphrase-en.gz`` beside it: 5.3 M English paraphrase pairs. Parsing it takes ~30 s, so the
  first use converts it once (streamed, ``ensure_paraphrase_index``) into a compact integer index
  (numpy ``.npy`` files, ~0.2 GB) under the
  cache folder (``$MEDMM_CACHE`` or ``~/.cache/medmm``); later runs memory-map that index and keep
  only the pairs whose words all occur in the texts being scored (which cannot change any alignment).

Paths can be overridden with ``$MEDMM_METEOR_JAR`` and ``$MEDMM_METEOR_PARAPHRASE``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from medmm.errors import BadInputError, MissingDependencyError
from medmm.fileio import atomic_dir

__all__ = ["MeteorResources", "ParaphraseTable", "ensure_paraphrase_index", "load_resources", "normalize_line", "resource_paths"]


def resource_paths() -> tuple[Path, Path]:
    """(meteor-1.5.jar, paraphrase-en.gz) from the environment or the installed pycocoevalcap."""
    jar = os.environ.get("MEDMM_METEOR_JAR")
    para = os.environ.get("MEDMM_METEOR_PARAPHRASE")
    if jar is None or para is None:
        spec = importlib.util.find_spec("pycocoevalcap")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError("pycocoevalcap", "test", "METEOR's language data (meteor-1.5.jar, read as data)")
        base = Path(next(iter(spec.submodule_search_locations))) / "meteor"
        jar = jar or str(base / "meteor-1.5.jar")
        para = para or str(base / "data" / "paraphrase-en.gz")
    jar_p, para_p = Path(jar), Path(para)
    if not jar_p.is_file():
        raise BadInputError(jar_p, "METEOR 1.5 jar not found (install pycocoevalcap or set MEDMM_METEOR_JAR)")
    if not para_p.is_file():
        raise BadInputError(para_p, "METEOR paraphrase table not found (set MEDMM_METEOR_PARAPHRASE)")
    return jar_p, para_p


# --------------------------------------------------------------------------------------------------
# Normaliser: METEOR's ``-norm`` (Normalizer.normalizeLine, English, punctuation kept).
# --------------------------------------------------------------------------------------------------
_ALPHA = "A-Za-z\u0160\u017d\u0161\u017e\u0178\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e"
_ALNUM = "0-9" + _ALPHA
_R_SEP_OTHER = re.compile(f"([^{_ALNUM}\\s.'`,\\-\u2018\u2019])")
_R_MULTI_DOT = re.compile(r"\.([.]+)")
_R_MULTI_DOT2 = re.compile(r"DOTMULTI\.([^.])")
_R_COMMA = re.compile(r"([^0-9])[,]([^0-9])")
_R_COMMA2 = re.compile(r"([0-9])[,]([^0-9])")
_R_COMMA3 = re.compile(r"([^0-9])[,]([0-9])")
_R_QUOTE = re.compile("([`\u2018\u2019])")
_R_QUOTE2 = re.compile("([\u201c\u201d]|'')")
_R_RM_DASH = re.compile(f"([{_ALNUM}.])[\\-]([{_ALNUM}])")
_R_CONT1 = re.compile(f"([^{_ALPHA}])[']([^{_ALPHA}])")
_R_CONT2 = re.compile(f"([^{_ALPHA}0-9])[']([{_ALPHA}])")
_R_CONT3 = re.compile(f"([{_ALPHA}])[']([^{_ALPHA}])")
_R_CONT4 = re.compile(f"([{_ALPHA}])[']([{_ALPHA}])")
_R_CONT5 = re.compile(r"([0-9])[']([s])")
_R_NBP1 = re.compile(f"[{_ALPHA}]")
_R_NBP2 = re.compile(r"^[a-z]")
_R_NBP3 = re.compile(r"^[0-9]+")
_R_WHITE = re.compile(r" +")
# Java's \s and StringTokenizer only know ASCII whitespace (a no-break space stays inside a word).
_R_JAVA_SPLIT = re.compile(r"[ \t\n\r\f]+")
_R_JAVA_SPACE = re.compile(r"[ \t\n\x0b\f\r]")


def java_tokens(line: str) -> list[str]:
    """``java.util.StringTokenizer`` on its default delimiters."""
    return [t for t in _R_JAVA_SPLIT.split(line) if t]


def _java_trim(s: str) -> str:
    # String.trim() strips every char <= U+0020.
    i, j = 0, len(s)
    while i < j and s[i] <= " ":
        i += 1
    while j > i and s[j - 1] <= " ":
        j -= 1
    return s[i:j]


def _sep_other(line: str) -> str:
    # [^...\s...] in Java means "not ASCII whitespace"; Python's \s is wider, so test it by hand.
    return _R_SEP_OTHER.sub(lambda m: m.group(1) if _R_JAVA_SPACE.match(m.group(1)) else f" {m.group(1)} ", line)


def normalize_line(line: str, nbp: dict[str, int]) -> str:
    """METEOR 1.5 ``Normalizer.normalizeLine(line, english, keepPunctuation=True)`` then lowercase."""
    w = " " + line + " "
    w = _sep_other(w)
    w = _R_MULTI_DOT.sub(r" DOTMULTI\1", w)
    while "DOTMULTI." in w:
        w = _R_MULTI_DOT2.sub(r"DOTDOTMULTI \1", w)
        w = w.replace("DOTMULTI.", "DOTDOTMULTI")
    w = _R_COMMA.sub(r"\1 , \2", w)
    w = _R_COMMA2.sub(r"\1 , \2", w)
    w = _R_COMMA3.sub(r"\1 , \2", w)
    w = _R_QUOTE.sub("'", w)
    w = _R_QUOTE2.sub(' " ', w)
    w = w.replace("\u2013", "-").replace("--", "-")
    w = _R_RM_DASH.sub(r"\1 \2", w)
    w = _R_CONT1.sub(r"\1 ' \2", w)
    w = _R_CONT2.sub(r"\1 ' \2", w)
    w = _R_CONT3.sub(r"\1 ' \2", w)
    w = _R_CONT4.sub(r"\1 '\2", w)
    w = _R_CONT5.sub(r"\1 '\2", w)
    words = java_tokens(w)
    out = []
    for i, word in enumerate(words):
        if len(word) > 1 and word.endswith("."):
            pre = word[:-1]
            typ = nbp.get(pre)
            nxt = words[i + 1] if i < len(words) - 1 else None
            if "." in pre and _R_NBP1.search(pre):
                out.append(word.replace(".", ""))  # U.S. -> US
            elif typ == 1 or (nxt is not None and _R_NBP2.search(nxt)):  # noqa: SIM114 (kept apart, as in METEOR)
                out.append(word)
            elif typ == 2 and nxt is not None and _R_NBP3.search(nxt):
                out.append(word)
            else:
                out.append(pre + " .")
        else:
            out.append(word)
        out.append(" ")
    w = "".join(out)
    while "DOTDOTMULTI" in w:
        w = w.replace("DOTDOTMULTI", "DOTMULTI.")
    w = w.replace("DOTMULTI", ".")
    w = _java_trim(_R_WHITE.sub(" ", w))
    return w.lower()


# --------------------------------------------------------------------------------------------------
# Synonyms (WordNet 3.0 via the jar) and WordNet's morphology fallback, as SynonymDictionary does.
# --------------------------------------------------------------------------------------------------
_SUFX = ["s", "ses", "xes", "zes", "ches", "shes", "men", "ies", "s", "ies", "es", "es", "ed", "ed", "ing", "ing",
         "er", "est", "er", "est"]
_ADDR = ["", "s", "x", "z", "ch", "sh", "man", "y", "", "y", "e", "", "e", "", "e", "", "", "", "e", "e"]


class SynonymDictionary:
    """WordNet synset ids per word (``english.synsets``) plus irregular base forms (``english.exceptions``)."""

    def __init__(self, synsets_text: str, exceptions_text: str):
        lines = synsets_text.split("\n")
        # Parsed lazily: most of the 150k words never occur in a corpus.
        self._raw: dict[str, str] = dict(zip(lines[0::2], lines[1::2], strict=False))
        self._parsed: dict[str, frozenset] = {}
        self._all: dict[str, frozenset] = {}
        self._bases: dict[str, list[str]] = {}
        ex = exceptions_text.split("\n")
        for i in range(0, len(ex) - 1, 2):
            base = ex[i]
            for form in java_tokens(ex[i + 1]):
                self._bases.setdefault(form, []).append(base)

    def synsets(self, word: str) -> frozenset:
        """Synset ids of ``word`` (empty when unknown)."""
        got = self._parsed.get(word)
        if got is None:
            raw = self._raw.get(word)
            got = frozenset(int(t) for t in java_tokens(raw)) if raw is not None else frozenset()
            self._parsed[word] = got
        return got

    def _morph(self, word: str) -> str:
        end = "ful" if word.endswith("ful") else ""
        if word.endswith("ss") or len(word) <= 2:
            return word
        for sx, ad in zip(_SUFX, _ADDR, strict=True):
            if word.endswith(sx):
                cand = word[: len(word) - len(sx)] + ad
                if cand in self._raw:
                    return cand + end
        return ""

    def stem_synsets(self, word: str) -> frozenset:
        """Synsets of the word's base forms (exception list, else WordNet suffix rules)."""
        bases = self._bases.get(word)
        if bases is not None:
            out: set = set()
            for b in bases:
                out |= self.synsets(b)
            return frozenset(out)
        return self.synsets(self._morph(word))

    def all_synsets(self, word: str) -> frozenset:
        """What SynonymMatcher compares: own synsets plus base-form synsets."""
        got = self._all.get(word)
        if got is None:
            got = self._all[word] = self.synsets(word) | self.stem_synsets(word)
        return got


# --------------------------------------------------------------------------------------------------
# Paraphrase table: compact cached index, filtered per corpus vocabulary.
# --------------------------------------------------------------------------------------------------
def _cache_dir() -> Path:
    return Path(os.environ.get("MEDMM_CACHE") or Path.home() / ".cache" / "medmm")


def _write_index(out: Path, ids: np.ndarray, offsets: np.ndarray, pair_key: np.ndarray, words: list[str]) -> None:
    """Write the index folder atomically; where another process finished first, keep its (identical) index."""
    with atomic_dir(out, keep_existing=True) as tmp:  # parallel builders never share a temp folder
        np.save(tmp / "ids.npy", ids.astype(np.uint16))
        np.save(tmp / "offsets.npy", offsets.astype(np.int64))
        np.save(tmp / "pair_key.npy", pair_key.astype(np.uint16))
        (tmp / "vocab.txt").write_bytes("\n".join(words).encode("utf-8"))


def _pair_keys(ids: np.ndarray, offsets: np.ndarray, n_words: int) -> np.ndarray:
    """Each pair's rarest word: a corpus can only use pairs whose rarest word it contains, so this
    key lets ``subset_arrays`` look at a small candidate set instead of all 5.3 M pairs."""
    ids = ids.astype(np.int64)
    freq = np.bincount(ids, minlength=n_words)
    coded = (freq[ids] << 16) | ids
    return (np.minimum.reduceat(coded, offsets[0:-1:2]) & 0xFFFF).astype(np.uint16)


_R_OTHER_SPACE = re.compile(r"[^\S \n]")  # whitespace other than " " and "\n"


def _build_paraphrase_index(gz_path: Path, out: Path, progress: Callable[[int, int], None] | None = None,
                            block: int = 16 << 20) -> None:
    """Parse paraphrase-en.gz (prob / phrase / paraphrase line triples) into integer arrays.

    Streams the file in blocks of whole line triples into compact arrays (uint16 word ids, uint8
    phrase lengths): the peak memory is a few hundred MB instead of the ~4 GB that holding the
    whole decoded text and its token strings took, for the same CPU time. Tokens are METEOR's
    (java.util.StringTokenizer: " ", tab, CR, LF, FF); where a block holds no other whitespace,
    str.split gives the same tokens faster. `progress(bytes_read, bytes_total)` follows the .gz.
    """
    vocab: dict[str, int] = {}
    id_parts: list[np.ndarray] = []
    len_parts: list[np.ndarray] = []

    def add(lines: list[bytes]) -> None:
        """Whole triples only: phrase = lines[1::3], paraphrase = lines[2::3]."""
        phrases = [None] * (2 * (len(lines) // 3))
        phrases[0::2] = lines[1::3]
        phrases[1::2] = lines[2::3]
        text = [p.decode("utf-8") for p in phrases]
        split = java_tokens if any(_R_OTHER_SPACE.search(t) for t in text) else str.split
        lengths = np.fromiter((len(split(t)) for t in text), dtype=np.int64, count=len(text))
        tokens = split(" ".join(text)) if split is str.split else [w for t in text for w in split(t)]
        for w in dict.fromkeys(tokens):
            if w not in vocab:
                vocab[w] = len(vocab)
        if len(vocab) >= 2**16 or (lengths.size and lengths.max() >= 2**8):
            raise BadInputError(gz_path, "paraphrase table too large for the compact index (uint16 words, uint8 lengths)")
        id_parts.append(np.fromiter(map(vocab.__getitem__, tokens), dtype=np.uint16, count=len(tokens)))
        len_parts.append(lengths.astype(np.uint8))

    total = gz_path.stat().st_size
    carry: list[bytes] = []  # complete lines not yet forming whole triples
    tail = b""  # an unfinished line
    with open(gz_path, "rb") as fh, gzip.GzipFile(fileobj=fh) as f:
        while chunk := f.read(block):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            lines = carry + lines
            cut = len(lines) - len(lines) % 3
            add(lines[:cut])
            carry = lines[cut:]
            if progress is not None:
                progress(fh.tell(), total)
    # what is left is text.split("\n")'s last pieces (the final "" when the file ends with "\n")
    # (a phrase without its paraphrase line is dropped, as the former parser's min(len) did)
    lines = carry + [tail]
    add(lines[: len(lines) - len(lines) % 3])
    if progress is not None:
        progress(total, total)
    lengths = np.concatenate(len_parts) if len_parts else np.zeros(0, np.uint8)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(id_parts) if id_parts else np.zeros(0, np.uint16)
    _write_index(out, ids, offsets, _pair_keys(ids, offsets, len(vocab)), list(vocab))


def ensure_paraphrase_index(gz_path: Path | None = None, progress: Callable[[int, int], None] | None = None) -> bool:
    """Build the cached paraphrase index now if it is missing (a one-time step of ~30 s on 2 CPU
    cores); returns True when it was built. Lets a command show progress before scoring starts."""
    if gz_path is None:
        gz_path = resource_paths()[1]
    cache = _index_dir(gz_path)
    if cache.is_dir() or _v3_path(gz_path).is_file():
        return False
    _build_paraphrase_index(gz_path, cache, progress)
    return True


def _index_dir(gz_path: Path) -> Path:
    return _cache_dir() / f"meteor15-paraphrase-en-{_index_key(gz_path)}-v4"


def _v3_path(gz_path: Path) -> Path:
    return _cache_dir() / f"meteor15-paraphrase-en-{_index_key(gz_path)}-v3.npz"


def _index_key(gz_path: Path) -> str:
    st = gz_path.stat()
    return hashlib.sha1(f"{gz_path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]


def _convert_v3(npz: Path, out: Path) -> None:
    """Re-save an index of the previous format (one .npz, read whole) as memory-mappable files."""
    data = np.load(npz)
    lengths = data["lengths"]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths.astype(np.int64), out=offsets[1:])
    words = bytes(data["vocab"]).decode("utf-8").split("\n")
    _write_index(out, data["ids"], offsets, data["pair_key"], words)


@dataclass
class ParaphraseTable:
    """All paraphrase pairs as integer phrases: pair e is phrase 2e (reference side) -> 2e+1.

    The arrays are memory-mapped from the cache folder: loading is instant and only the pages a
    corpus touches are read.
    """

    ids: np.ndarray
    offsets: np.ndarray
    pair_key: np.ndarray
    vocab: dict[str, int]
    words: list[str]

    def __post_init__(self):
        self._words_arr = np.array(self.words, dtype=object)

    @classmethod
    def load(cls, gz_path: Path) -> ParaphraseTable:
        cache = _index_dir(gz_path)
        if not cache.is_dir():
            old = _v3_path(gz_path)
            if old.is_file():
                _convert_v3(old, cache)
            else:
                _build_paraphrase_index(gz_path, cache)
        words = (cache / "vocab.txt").read_bytes().decode("utf-8").split("\n")
        ids, offsets, pair_key = (np.load(cache / f"{name}.npy", mmap_mode="r") for name in ("ids", "offsets", "pair_key"))
        return cls(ids, offsets, pair_key, dict(zip(words, range(len(words)), strict=True)), words)

    def _kept_pairs(self, present: np.ndarray) -> np.ndarray:
        """Indexes of the pairs whose tokens are all ``present`` (compiled loop, else numpy)."""
        from medmm.metrics.nlg import _native

        lib = _native.load()
        n_pairs = len(self.pair_key)
        if lib is not None:
            out = np.empty(n_pairs, dtype=np.int64)
            pk, off, ids = (np.ascontiguousarray(a) for a in (self.pair_key, self.offsets, self.ids))
            n = lib.para_subset(n_pairs, pk.ctypes.data, off.ctypes.data, ids.ctypes.data,
                                present.ctypes.data, out.ctypes.data)
            return out[:n].copy()
        cand = np.nonzero(present[self.pair_key])[0]
        starts = self.offsets[2 * cand]
        lens = self.offsets[2 * cand + 2] - starts
        seg = np.concatenate(([0], np.cumsum(lens)))
        toks = self.ids[np.arange(int(seg[-1])) + np.repeat(starts - seg[:-1], lens)]
        missing = np.concatenate(([0], np.cumsum(present[toks] == 0)))
        return cand[(missing[seg[1:]] - missing[seg[:-1]]) == 0]

    def subset_arrays(self, corpus_words) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pairs whose words all occur in ``corpus_words``, as integer arrays (table word ids).

        Returns (pair indexes in file order, reference-side lengths, paraphrase lengths,
        reference-side tokens, paraphrase tokens); the token arrays are the phrases concatenated.
        """
        present = np.zeros(len(self.words), dtype=np.uint8)
        idx = [i for i in map(self.vocab.get, corpus_words) if i is not None]
        present[idx] = 1
        pairs = self._kept_pairs(present) if idx else np.zeros(0, dtype=np.int64)
        off = self.offsets
        a0, a1, a2 = (np.asarray(off[2 * pairs + d], dtype=np.int64) for d in (0, 1, 2))
        la, lb = a1 - a0, a2 - a1
        return pairs, la, lb, self._gather(a0, la), self._gather(a1, lb)

    def _gather(self, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Tokens of the phrases [starts, starts + lens), concatenated."""
        seg = np.concatenate(([0], np.cumsum(lens)))
        return np.asarray(self.ids[np.arange(int(seg[-1])) + np.repeat(starts - seg[:-1], lens)], dtype=np.int64)

    def subset(self, corpus_words: set[str]) -> list[tuple[int, tuple[str, ...], tuple[str, ...]]]:
        """Pairs (file index, phrase, paraphrase) whose words all occur in ``corpus_words``."""
        pairs, la, lb, ta, tb = self.subset_arrays(corpus_words)
        wa = self._words_arr[ta].tolist()
        wb = self._words_arr[tb].tolist()
        out, pa, pb = [], 0, 0
        for e, na, nb in zip(pairs.tolist(), la.tolist(), lb.tolist(), strict=True):
            out.append((e, tuple(wa[pa:pa + na]), tuple(wb[pb:pb + nb])))
            pa += na
            pb += nb
        return out


@dataclass
class MeteorResources:
    """Everything METEOR 1.5 English needs besides the stemmer."""

    function_words: frozenset
    nonbreaking: dict[str, int]
    synonyms: SynonymDictionary
    paraphrases: ParaphraseTable


def _read_nbp(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.split("\n"):
        toks = java_tokens(line)
        if not toks or toks[0].startswith("#"):
            continue
        out[toks[0]] = 2 if len(toks) > 1 and toks[1] == "#NUMERIC_ONLY#" else 1
    return out


def load_resources(jar: str | Path | None = None, paraphrase: str | Path | None = None) -> MeteorResources:
    """METEOR's English resources (read once per process and path pair).

    Defaults: the jar and paraphrase table of the installed pycocoevalcap (or the environment
    overrides). A small custom paraphrase .gz in the same format can be passed for tests.
    """
    if jar is None or paraphrase is None:
        dj, dp = resource_paths()
        jar, paraphrase = jar or dj, paraphrase or dp
    return _load(str(jar), str(paraphrase))


@lru_cache(maxsize=4)
def _load(jar_s: str, para_s: str) -> MeteorResources:
    jar, para = Path(jar_s), Path(para_s)
    for path in (jar, para):
        if not path.is_file():
            raise BadInputError(path, "METEOR resource file not found")
    try:
        with zipfile.ZipFile(jar) as z:
            fw = z.read("function/english.words").decode("utf-8")
            nbp = z.read("nonbreaking/english.prefixes").decode("utf-8")
            syn = z.read("synonym/english.synsets").decode("utf-8")
            exc = z.read("synonym/english.exceptions").decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as exc_:
        raise BadInputError(jar, f"not a METEOR 1.5 jar with English resources ({exc_})") from exc_
    # BufferedReader.readLine keeps every line, including an empty last one only if present.
    function_words = frozenset(fw.split("\n")[:-1] if fw.endswith("\n") else fw.split("\n"))
    try:
        table = ParaphraseTable.load(para)
    except (OSError, EOFError, UnicodeDecodeError) as exc_:
        raise BadInputError(para, f"unreadable METEOR paraphrase table ({exc_})") from exc_
    return MeteorResources(function_words, _read_nbp(nbp), SynonymDictionary(syn, exc), table)
