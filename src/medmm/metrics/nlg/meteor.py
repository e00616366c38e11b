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
"""

from __future__ import annotations

import math
from functools import lru_cache

from medmm.metrics.nlg.meteor_data import MeteorResources, java_tokens, load_resources, normalize_line

__all__ = ["ALPHA", "BETA", "GAMMA", "DELTA", "MODULE_WEIGHTS", "MeteorScorer", "meteor_scores"]

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

    def _stem(self, w: str) -> str:
        s = self._stem_cache.get(w)
        if s is None:
            s = self._stem_cache[w] = self._stemmer.stemWord(w)
        return s

    # ---- alignment -------------------------------------------------------------------------------
    def align(self, w1: list[str], w2: list[str]):
        """Best alignment of test words ``w1`` to reference words ``w2``: (matches by line-2 start, chunks)."""
        n1, n2 = len(w1), len(w2)
        matches: list[list[tuple]] = [[] for _ in range(n2)]
        cov1, cov2 = [0] * n1, [0] * n2

        def add(m):
            # Coverage counts every word a match spans (decides which matches are unambiguous).
            matches[m[1]].append(m)
            for k in range(m[4]):
                cov1[m[3] + k] += 1
            for k in range(m[2]):
                cov2[m[1] + k] += 1

        identical = w1 == w2
        # Match = (module, start, length, matchStart, matchLength): start/length in line 2.
        for j in range(n2):
            for i in range(n1):
                if w1[i] == w2[j]:
                    add((_EXACT, j, 1, i, 1))
        if not identical:
            st1 = [self._stem(w) for w in w1]
            st2 = [self._stem(w) for w in w2]
            for j in range(n2):
                for i in range(n1):
                    if st1[i] == st2[j] and w1[i] != w2[j]:
                        add((_STEM, j, 1, i, 1))
            syn = self.res.synonyms
            s1 = [syn.all_synsets(w) for w in w1]
            s2 = [syn.all_synsets(w) for w in w2]
            for j in range(n2):
                if not s2[j]:
                    continue
                for i in range(n1):
                    if w1[i] != w2[j] and not s1[i].isdisjoint(s2[j]):
                        add((_SYN, j, 1, i, 1))
            trie = self._trie
            for j in range(n2):
                for ln, par in trie.paths(w2, j):
                    lp = len(par)
                    for i in range(n1):
                        if tuple(w1[i:i + lp]) == par:
                            add((_PARA, j, ln, i, lp))
            for i in range(n1):
                for ln, par in trie.paths(w1, i):
                    lp = len(par)
                    for j in range(n2):
                        if tuple(w2[j:j + lp]) == par:
                            add((_PARA, j, lp, i, ln))
        return self._resolve(matches, cov1, cov2, n1, n2)

    def _resolve(self, matches, cov1, cov2, n1, n2):
        # Path = [used1 bitmask, used2 bitmask, fixed/chosen matches dict, matches1, matches2,
        #         chunks, idx, lastMatchEnd, distance]; one-to-one unambiguous matches are fixed first.
        used1 = used2 = 0
        chosen: dict[int, tuple] = {}
        for j in range(n2):
            if len(matches[j]) == 1:
                m = matches[j][0]
                _, s, ln, ms, ml = m
                if all(cov2[s + k] == 1 for k in range(ln)) and all(cov1[ms + k] == 1 for k in range(ml)):
                    chosen[j] = m
                    for k in range(ln):
                        used2 |= 1 << (s + k)
                    for k in range(ml):
                        used1 |= 1 << (ms + k)
        w = _ALIGN_WEIGHTS
        next_paths = [[used1, used2, chosen, 0, 0, 0, 0, -1, 0]]
        for cur in range(n2 + 1):
            paths = next_paths
            next_paths = []
            paths.sort(key=lambda p: (-(p[3] + p[4]), p[5], p[8]))
            for path in paths[:BEAM]:
                if cur == n2:
                    if path[7] != -1:
                        path[5] += 1
                    next_paths.append(path)
                    continue
                if path[1] >> cur & 1:
                    if cur < path[6]:
                        next_paths.append(path)
                    else:
                        m = path[2].get(path[6])
                        if m is not None:
                            mod, s, ln, ms, ml = m
                            path[3] = int(path[3] + ml * w[mod])
                            path[4] = int(path[4] + ln * w[mod])
                            if path[7] != -1 and ms != path[7]:
                                path[5] += 1
                            path[6] = s + ln
                            path[7] = ms + ml
                            path[8] += abs(s - ms)
                            next_paths.append(path)
                    continue
                for m in matches[cur]:
                    mod, s, ln, ms, ml = m
                    mask2 = ((1 << ln) - 1) << s
                    mask1 = ((1 << ml) - 1) << ms
                    if path[1] & mask2 or path[0] & mask1:
                        continue
                    ch = dict(path[2])
                    ch[cur] = m
                    np_ = [path[0] | mask1, path[1] | mask2, ch, int(path[3] + ml * w[mod]),
                           int(path[4] + ln * w[mod]), path[5], s + ln, ms + ml, path[8]]
                    if path[7] != -1 and ms != path[7]:
                        np_[5] += 1
                    path[8] += abs(s - ms)  # sic: METEOR adds the distance to the parent path
                    next_paths.append(np_)
                if path[7] != -1:
                    path[5] += 1
                    path[7] = -1
                path[6] += 1
                next_paths.append(path)
            if not next_paths:  # as METEOR: keep the best path and go on
                next_paths.append(paths[0])
        next_paths.sort(key=lambda p: (-(p[3] + p[4]), p[5], p[8]))
        return next_paths[0][2]

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


@lru_cache(maxsize=100_000)
def _norm(text: str, nbp_key: int) -> tuple[str, ...]:
    return tuple(java_tokens(normalize_line(text, load_resources().nonbreaking)))


def _prep(text: str) -> tuple[str, ...]:
    # pycocoevalcap strips '|||' and doubles spaces from the hypothesis; METEOR trims each field.
    return _norm(text, 0)


def meteor_scores(hypotheses: list[str], references: list[list[str]]) -> tuple[float, list[float]]:
    """(corpus METEOR, per-caption METEOR) of tokenised hypotheses against tokenised references."""
    hyps = [_prep(h.replace("|||", "").replace("  ", " ")) for h in hypotheses]
    refs = [[_prep(r) for r in rs] for rs in references]
    vocab: set[str] = set()
    for h in hyps:
        vocab.update(h)
    for rs in refs:
        for r in rs:
            vocab.update(r)
    scorer = MeteorScorer(vocab)
    best_stats = []
    per = []
    for h, rs in zip(hyps, refs):
        best, best_score = None, -1.0
        for r in rs:
            st = scorer.stats(list(h), list(r))
            sc = scorer.score(st)
            if sc > best_score:
                best, best_score = st, sc
        best_stats.append(best)
        per.append(best_score)
    return scorer.score(scorer.aggregate(best_stats)), per
