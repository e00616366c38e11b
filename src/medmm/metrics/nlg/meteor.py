"""METEOR 1.5 (English, ``rank`` task) in Python, as pycocoevalcap runs it (``-l en -norm``).

Re-implements METEOR 1.5's pipeline: its normaliser, the four matchers (exact, Snowball stem,
WordNet synonym, paraphrase table), the beam-search aligner (beam 40, aligner weights 1/0.5/0.5/0.5,
ordering by weighted matches, then chunks, then distance) and the scorer (alpha 0.85, beta 0.2,
gamma 0.6, delta 0.75, module weights 1.0 0.6 0.8 0.6 -- the jar's defaults for ``-l en``).
Corpus METEOR sums the per-caption sufficient statistics (as METEOR's EVAL command does), and
for several references each caption keeps the statistics of its best-scoring reference.

Quirks of the Java code kept on purpose because they change scores: the search's weighted match
counts are Java ``int`` fields (``int += double`` truncates, so a one-word stem/synonym match adds
nothing to the ordering) and a candidate's distance is added to the *parent* path. Checked against
the jar's bytecode (``javap``), which differs in places from METEOR's published source.

:class:`MeteorScorer` is the readable reference. :func:`meteor_scores` runs the same matchers,
search and statistics for a whole corpus in compiled code (``_meteor_native.py``) when a C compiler
is available, and falls back to :class:`MeteorScorer` otherwise; tests check both agree exactly.
"""

from __future__ import annotations

import math
import re
from operator import itemgetter

from medmm.metrics.nlg import _meteor_native
from medmm.metrics.nlg.meteor_data import MeteorResources, java_tokens, load_resources, normalize_line

__all__ = ["ALPHA", "BETA", "GAMMA", "DELTA", "MODULE_WEIGHTS", "MeteorScorer", "meteor_from_stats", "meteor_scores"]

ALPHA, BETA, GAMMA, DELTA = 0.85, 0.20, 0.60, 0.75
MODULE_WEIGHTS = (1.0, 0.6, 0.8, 0.6)  # exact, stem, synonym, paraphrase (scoring)
_ALIGN_WEIGHTS = (1.0, 0.5, 0.5, 0.5)  # what MeteorScorer hands the aligner for the search
BEAM = 40
_EXACT, _STEM, _SYN, _PARA = 0, 1, 2, 3


def _jdiv(a: float, b: float) -> float:
    """Java double division (x/0 -> +-Infinity, 0/0 -> NaN) instead of ZeroDivisionError."""
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


class _Trie:
    """METEOR's ParaphraseTransducer restricted to the pairs a corpus can use."""

    __slots__ = ("root", "para")

    def __init__(self, pairs):
        self.root: list = [{}, []]  # [transitions, emitted pair ids]
        self.para: dict[int, tuple[str, ...]] = {}
        for e, ref, par in pairs:
            node = self.root
            for w in ref:
                nxt = node[0].get(w)
                if nxt is None:
                    nxt = node[0][w] = [{}, []]
                node = nxt
            node[1].append(e)
            self.para[e] = par

    def paths(self, words: list[str], start: int) -> list[tuple[int, tuple[str, ...]]]:
        out = []
        node = self.root
        for i in range(len(words) - start):
            node = node[0].get(words[start + i])
            if node is None:
                break
            for e in node[1]:
                out.append((i + 1, self.para[e]))
        return out


class MeteorScorer:
    """METEOR 1.5 for one corpus: resources, stem/synonym caches and the corpus paraphrase trie."""

    def __init__(self, vocabulary: set[str], resources: MeteorResources | None = None):
        import snowballstemmer

        self.res = resources or load_resources()
        self._stemmer = snowballstemmer.stemmer("english")
        self._trie = _Trie(self.res.paraphrases.subset(vocabulary))
        self._stem_cache: dict[str, str] = {}
        self._line_cache: dict[tuple[str, ...], tuple] = {}

    def _stem(self, w: str) -> str:
        s = self._stem_cache.get(w)
        if s is None:
            s = self._stem_cache[w] = self._stemmer.stemWord(w)
        return s

    def _line(self, words: tuple[str, ...]):
        """Per-line data reused whenever the line is aligned again: word positions, stems,
        stem positions, synsets, synset positions, paraphrase paths from every position."""
        got = self._line_cache.get(words)
        if got is None:
            pos: dict[str, list[int]] = {}
            spos: dict[str, list[int]] = {}
            synpos: dict[int, set] = {}
            stems = [self._stem(w) for w in words]
            syn = self.res.synonyms.all_synsets
            syns = [syn(w) for w in words]
            for i, w in enumerate(words):
                pos.setdefault(w, []).append(i)
                spos.setdefault(stems[i], []).append(i)
                for sid in syns[i]:
                    synpos.setdefault(sid, set()).add(i)
            wl = list(words)
            paths = [self._trie.paths(wl, i) for i in range(len(words))]
            got = self._line_cache[words] = (pos, stems, spos, syns, synpos, paths)
        return got

    # ---- alignment -------------------------------------------------------------------------------
    def align(self, w1: list[str], w2: list[str]) -> dict[int, tuple]:
        """Best alignment of test words ``w1`` to reference words ``w2`` as {line-2 start: match}.

        A match is (module, start, length, matchStart, matchLength), start/length in line 2.
        Candidate lists are built in the same order as METEOR's nested loops (line-2 position,
        then line-1 position), using position indexes instead of all-pairs comparisons.
        """
        n1, n2 = len(w1), len(w2)
        matches: list[list[tuple]] = [[] for _ in range(n2)]
        cov1, cov2 = [0] * n1, [0] * n2
        info1, info2 = self._line(tuple(w1)), self._line(tuple(w2))
        pos1 = info1[0]
        for j, w in enumerate(w2):
            for i in pos1.get(w, ()):
                matches[j].append((_EXACT, j, 1, i, 1))
                cov1[i] += 1
                cov2[j] += 1
        if w1 != w2:  # identical lines: METEOR uses the exact module only
            spos = info1[2]
            st2 = info2[1]
            for j, w in enumerate(w2):
                for i in spos.get(st2[j], ()):
                    if w1[i] != w:
                        matches[j].append((_STEM, j, 1, i, 1))
                        cov1[i] += 1
                        cov2[j] += 1
            synpos = info1[4]
            sy2 = info2[3]
            for j, w in enumerate(w2):
                hit: set = set()
                for sid in sy2[j]:
                    got = synpos.get(sid)
                    if got:
                        hit |= got
                for i in sorted(hit):
                    if w1[i] != w:
                        matches[j].append((_SYN, j, 1, i, 1))
                        cov1[i] += 1
                        cov2[j] += 1
            pos2, paths2, paths1 = info2[0], info2[5], info1[5]
            for j in range(n2):
                for ln, par in paths2[j]:
                    lp = len(par)
                    for i in pos1.get(par[0], ()):
                        if i + lp <= n1 and (lp == 1 or tuple(w1[i:i + lp]) == par):
                            matches[j].append((_PARA, j, ln, i, lp))
                            for k in range(lp):
                                cov1[i + k] += 1
                            for k in range(ln):
                                cov2[j + k] += 1
            for i in range(n1):
                for ln, par in paths1[i]:
                    lp = len(par)
                    for j in pos2.get(par[0], ()):
                        if j + lp <= n2 and (lp == 1 or tuple(w2[j:j + lp]) == par):
                            matches[j].append((_PARA, j, lp, i, ln))
                            for k in range(ln):
                                cov1[i + k] += 1
                            for k in range(lp):
                                cov2[j + k] += 1
        return self._resolve(matches, cov1, cov2, n1, n2)

    @staticmethod
    def _resolve(matches, cov1, cov2, n1, n2) -> dict[int, tuple]:
        # One-to-one matches whose words no other match touches are fixed before the search.
        used1 = used2 = 0
        fixed: dict[int, tuple] = {}
        ambiguous = False
        for j in range(n2):
            cand = matches[j]
            if len(cand) == 1:
                _, s, ln, ms, ml = m = cand[0]
                if all(cov2[s + k] == 1 for k in range(ln)) and all(cov1[ms + k] == 1 for k in range(ml)):
                    fixed[j] = m
                    used2 |= ((1 << ln) - 1) << s
                    used1 |= ((1 << ml) - 1) << ms
                    continue
            if cand:
                ambiguous = True
        if not ambiguous:
            return fixed
        w = _ALIGN_WEIGHTS
        key = itemgetter(9, 5, 8)
        # Per candidate: masks, weighted-count increments (int(a + x) == a + int(x) for int a, x >= 0,
        # which is Java's truncating int += double), ends and distance -- computed once, not per path.
        prepared = [
            [(m, ((1 << m[4]) - 1) << m[3], ((1 << m[2]) - 1) << m[1], int(m[4] * w[m[0]]), int(m[2] * w[m[0]]),
              m[3], m[1] + m[2], m[3] + m[4], abs(m[1] - m[3])) for m in cand]
            for cand in matches
        ]
        # Path = [used1, used2, chosen (linked: (match, parent)), matches1, matches2, chunks, idx,
        #         lastMatchEnd, distance, -(matches1 + matches2)] -- PartialAlignment's fields.
        next_paths = [[used1, used2, None, 0, 0, 0, 0, -1, 0, 0]]
        for cur in range(n2 + 1):
            paths = next_paths
            next_paths = []
            paths.sort(key=key)
            if len(paths) > BEAM:
                del paths[BEAM:]
            if cur == n2:
                for path in paths:
                    if path[7] != -1:
                        path[5] += 1
                next_paths = paths
                continue
            bit = 1 << cur
            cand = prepared[cur]
            for path in paths:
                if path[1] & bit:
                    if cur < path[6]:
                        next_paths.append(path)
                    else:
                        m = fixed.get(path[6])
                        if m is not None:
                            mod, s, ln, ms, ml = m
                            path[3] = int(path[3] + ml * w[mod])
                            path[4] = int(path[4] + ln * w[mod])
                            path[9] = -(path[3] + path[4])
                            if path[7] != -1 and ms != path[7]:
                                path[5] += 1
                            path[6] = s + ln
                            path[7] = ms + ml
                            path[8] += abs(s - ms)
                            next_paths.append(path)
                    continue
                for m, mask1, mask2, d1, d2, ms, end2, end1, dist in cand:
                    if path[1] & mask2 or path[0] & mask1:
                        continue
                    m1 = path[3] + d1
                    m2 = path[4] + d2
                    last = path[7]
                    chunks = path[5] + 1 if last != -1 and ms != last else path[5]
                    next_paths.append([path[0] | mask1, path[1] | mask2, (m, path[2]), m1, m2, chunks, end2,
                                       end1, path[8], -(m1 + m2)])
                    path[8] += dist  # sic: METEOR adds the distance to the parent path
                if path[7] != -1:
                    path[5] += 1
                    path[7] = -1
                path[6] += 1
                next_paths.append(path)
            if not next_paths:  # as METEOR: keep the best path and go on
                next_paths.append(paths[0])
        next_paths.sort(key=key)
        out = dict(fixed)
        link = next_paths[0][2]
        while link is not None:
            m, link = link
            out[m[1]] = m
        return out

    # ---- statistics --------------------------------------------------------------------------------
    def stats(self, test: list[str], ref: list[str]) -> tuple:
        """Sufficient statistics of one (normalised, tokenised) test/reference pair."""
        chosen = self.align(test, ref)
        fw = self.res.function_words
        f1 = [w.lower() in fw for w in test]
        f2 = [w.lower() in fw for w in ref]
        tc, tf, rc, rf = [0] * 4, [0] * 4, [0] * 4, [0] * 4
        # Walk the final alignment as Aligner.getCountAndChunks does.
        chunks, idx, last = 0, 0, -1
        n2 = len(ref)
        while idx < n2:
            m = chosen.get(idx)
            if m is None:
                if last != -1:
                    chunks += 1
                    last = -1
                idx += 1
                continue
            mod, s, ln, ms, ml = m
            for k in range(ml):
                if f1[ms + k]:
                    tf[mod] += 1
                else:
                    tc[mod] += 1
            for k in range(ln):
                if f2[s + k]:
                    rf[mod] += 1
                else:
                    rc[mod] += 1
            if last != -1 and ms != last:
                chunks += 1
            idx = s + ln
            last = ms + ml
        if last != -1:
            chunks += 1
        return (len(test), len(ref), sum(f1), sum(f2), tuple(tc), tuple(rc), tuple(tf), tuple(rf), chunks)

    @staticmethod
    def score(st: tuple) -> float:
        """MeteorScorer.computeMetrics on sufficient statistics (NaN -> 0, negatives -> 0)."""
        tl, rl, tfw, rfw, tc, rc, tf, rf, chunks = st
        t_total = sum(tc) + sum(tf)
        r_total = sum(rc) + sum(rf)
        t_len_w = DELTA * (tl - tfw) + (1.0 - DELTA) * tfw
        r_len_w = DELTA * (rl - rfw) + (1.0 - DELTA) * rfw
        t_match_w = r_match_w = 0.0
        for i in range(4):
            t_match_w += tc[i] * MODULE_WEIGHTS[i] * DELTA
        for i in range(4):
            r_match_w += rc[i] * MODULE_WEIGHTS[i] * DELTA
        for i in range(4):
            t_match_w += tf[i] * MODULE_WEIGHTS[i] * (1.0 - DELTA)
        for i in range(4):
            r_match_w += rf[i] * MODULE_WEIGHTS[i] * (1.0 - DELTA)
        p = _jdiv(t_match_w, t_len_w)
        r = _jdiv(r_match_w, r_len_w)
        with_nan = math.isnan(p) or math.isnan(r)
        if with_nan:
            return 0.0
        f_mean = _jdiv(1.0, _jdiv(1.0 - ALPHA, p) + _jdiv(ALPHA, r))
        if t_total == tl and r_total == rl and chunks == 1:
            frag = 0.0
        else:
            frag = _jdiv(float(chunks), (t_total + r_total) / 2)
        if math.isnan(frag) or math.isnan(f_mean):
            return 0.0
        pen = GAMMA * math.pow(frag, BETA) if not math.isinf(frag) else math.inf
        s = f_mean * (1.0 - pen)
        if math.isnan(s):
            return 0.0
        return max(s, 0.0)

    @staticmethod
    def aggregate(all_stats: list[tuple]) -> tuple:
        """MeteorStats.addStats over captions (a perfect caption's single chunk is not counted)."""
        tl = rl = tfw = rfw = chunks = 0
        tc, rc, tf, rf = [0] * 4, [0] * 4, [0] * 4, [0] * 4
        for st in all_stats:
            a, b, c, d, stc, src, stf, srf, ch = st
            tl += a
            rl += b
            tfw += c
            rfw += d
            for i in range(4):
                tc[i] += stc[i]
                rc[i] += src[i]
                tf[i] += stf[i]
                rf[i] += srf[i]
            if not (sum(stc) + sum(stf) == a and sum(src) + sum(srf) == b and ch == 1):
                chunks += ch
        return (tl, rl, tfw, rfw, tuple(tc), tuple(rc), tuple(tf), tuple(rf), chunks)


_NORM_CACHE: dict[tuple[int, str], tuple[str, ...]] = {}
# Lowercase ASCII words and digits (single inner dots allowed) separated by spaces: METEOR's
# normaliser changes nothing there but the spacing (checked against normalize_line in tests).
_PLAIN = re.compile(r"[a-z0-9 .]*")


def _is_plain(text: str) -> bool:
    return _PLAIN.fullmatch(text) is not None and ".." not in text and ". " not in text and not text.endswith(".")


def _prep(text: str, res: MeteorResources) -> tuple[str, ...]:
    """METEOR's -norm tokens of one line (cached: references recur across a corpus)."""
    key = (id(res), text)
    got = _NORM_CACHE.get(key)
    if got is None:
        if len(_NORM_CACHE) > 200_000:
            _NORM_CACHE.clear()
        if _is_plain(text):
            got = tuple(text.split())
        else:
            got = tuple(java_tokens(normalize_line(text, res.nonbreaking)))
        _NORM_CACHE[key] = got
    return got


def meteor_from_stats(stats: list[tuple]) -> float:
    """Corpus METEOR of any subset of per-caption statistics (e.g. a bootstrap resample)."""
    return MeteorScorer.score(MeteorScorer.aggregate(stats))


def _python_pair_stats(hyps: list[tuple[str, ...]], refs: list[list[tuple[str, ...]]],
                       res: MeteorResources) -> list[list[tuple]]:
    """The pure-Python reference: statistics of each hypothesis against each of its references."""
    vocab: set[str] = set()
    for h in hyps:
        vocab.update(h)
    for rs in refs:
        for r in rs:
            vocab.update(r)
    scorer = MeteorScorer(vocab, res)
    return [[scorer.stats(list(h), list(r)) for r in rs] for h, rs in zip(hyps, refs, strict=False)]


def meteor_scores(
    hypotheses: list[str], references: list[list[str]], resources: MeteorResources | None = None,
    return_stats: bool = False, native: bool = True,
):
    """(corpus METEOR, per-caption METEOR) of tokenised hypotheses against tokenised references.

    Per caption the best-scoring reference counts (its statistics go into the corpus sums), as in
    METEOR's multi-reference mode that pycocoevalcap uses. ``return_stats=True`` adds the
    per-caption sufficient statistics (third item) for :func:`meteor_from_stats`. ``native=False``
    forces the pure-Python reference instead of the compiled kernel (same results).
    """
    res = resources or load_resources()
    # pycocoevalcap drops '|||' and collapses double spaces in the hypothesis only.
    hyps = [_prep(h.replace("|||", "").replace("  ", " "), res) for h in hypotheses]
    refs = [[_prep(r, res) for r in rs] for rs in references]
    all_stats = _meteor_native.pair_stats(hyps, refs, res, BEAM) if native else None
    if all_stats is None:
        all_stats = _python_pair_stats(hyps, refs, res)
    score = MeteorScorer.score
    best_stats = []
    per = []
    for sts in all_stats:
        best, best_score = None, -1.0
        for st in sts:
            sc = score(st)
            if sc > best_score:
                best, best_score = st, sc
        best_stats.append(best)
        per.append(best_score)
    corpus = score(MeteorScorer.aggregate(best_stats))
    return (corpus, per, best_stats) if return_stats else (corpus, per)
