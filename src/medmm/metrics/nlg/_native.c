/* C source of medmm's optional NLG kernels (compiled at first use by _native.py).
 *
 * Two entry points, both working on integer token ids prepared in Python:
 *
 * * nlg_ngram: BLEU statistics (clipped 1..4-gram matches, closest reference length), CIDEr-D
 *   and ROUGE-L per sample, as bleu.py / cider.py / rouge.py compute them.
 * * meteor_corpus: METEOR 1.5 for every (hypothesis, reference) pair of a corpus: the four
 *   matchers in METEOR's candidate order, the beam search with its tie-breaking, and the sufficient
 *   statistics, as meteor.py's pure-Python reference does.
 *
 * Floating-point work is written in the same order as the Python code; compile with
 * -ffp-contract=off so no fused multiply-add changes a rounding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define E_CONST 2.718281828459045235360287 /* Python's math.e */

/* Grow a realloc'ed array to hold at least `need` items (doubling); jumps to `oom` on failure. */
#define GROW(ptr, cap, need) do {                                        \
        if ((size_t)(need) > (cap)) {                                    \
            size_t nc_ = (cap) ? (cap) : 64;                             \
            while (nc_ < (size_t)(need)) nc_ *= 2;                       \
            void *np_ = realloc((ptr), nc_ * sizeof(*(ptr)));            \
            if (!np_) goto oom;                                          \
            (ptr) = np_;                                                 \
            (cap) = nc_;                                                 \
        }                                                                \
    } while (0)

static uint64_t mix64(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL; h ^= h >> 33;
    return h;
}

/* ================================================================================================
 * n-gram metrics: BLEU statistics, CIDEr-D, ROUGE-L
 * ============================================================================================== */

/* Open-addressing table: n-gram (up to 4 word ids, -1 padded) -> dense id. */
typedef struct { int32_t *keys; int32_t *vals; size_t cap; int32_t n; } NgTab;

static int ng_init(NgTab *t, size_t expect) {
    size_t cap = 1024;
    while (cap < 2 * expect + 16) cap *= 2;
    t->keys = malloc(sizeof(int32_t) * 4 * cap);
    t->vals = malloc(sizeof(int32_t) * cap);
    if (!t->keys || !t->vals) return -1;
    for (size_t i = 0; i < cap; i++) t->vals[i] = -1;
    t->cap = cap; t->n = 0;
    return 0;
}

static int32_t ng_get(NgTab *t, const int32_t *w, int k) {
    int32_t g[4] = {-1, -1, -1, -1};
    for (int i = 0; i < k; i++) g[i] = w[i];
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 4; i++) h = mix64(h ^ (uint32_t)g[i]);
    size_t m = t->cap - 1, s = (size_t)h & m;
    for (;;) {
        if (t->vals[s] < 0) {
            memcpy(t->keys + 4 * s, g, sizeof(g));
            t->vals[s] = t->n++;
            return t->vals[s];
        }
        if (memcmp(t->keys + 4 * s, g, sizeof(g)) == 0) return t->vals[s];
        s = (s + 1) & m;
    }
}

static int lcs_len(const int32_t *a, int na, const int32_t *b, int nb, int *row) {
    /* row: nb + 1 ints of scratch */
    if (na == 0 || nb == 0) return 0;
    for (int j = 0; j <= nb; j++) row[j] = 0;
    for (int i = 0; i < na; i++) {
        int diag = 0;
        for (int j = 1; j <= nb; j++) {
            int up = row[j];
            if (a[i] == b[j - 1]) row[j] = diag + 1;
            else if (row[j - 1] > up) row[j] = row[j - 1];
            diag = up;
        }
    }
    return row[nb];
}

/* lines: CSR (line_off[n_lines + 1], toks) of whitespace-split tokens; rlines: the same lines split on
 * single spaces (ROUGE-L's tokens). Per sample s: hypothesis line hyp_line[s], references
 * ref_line[ref_off[s] .. ref_off[s + 1]).
 * bleu_out: 10 ints per sample (testlen, reflen, guess[4], correct[4]); cider_out, rouge_out: 1 double.
 * Any output pointer may be NULL (that metric is skipped). Returns 0, or -1 when out of memory. */
int nlg_ngram(int n_lines, const int32_t *line_off, const int32_t *toks,
              const int32_t *rline_off, const int32_t *rtoks,
              int n_samples, const int32_t *hyp_line, const int32_t *ref_off, const int32_t *ref_line,
              double sigma, int32_t *bleu_out, double *cider_out, double *rouge_out) {
    int rc = -1;
    NgTab tab = {0};
    int32_t *lg_off = NULL, *lg_gid = NULL, *lg_cnt = NULL, *seq = NULL, *stamp = NULL, *where = NULL;
    int32_t *df = NULL, *maxc = NULL, *mstamp = NULL;
    double *idf = NULL, *wref = NULL, *vecw = NULL, *norm = NULL;
    int *row = NULL;
    int32_t *lg_k = NULL;
    size_t n_occ = (size_t)line_off[n_lines] * 4 + 4;

    if (bleu_out || cider_out) {
        if (ng_init(&tab, n_occ) != 0) goto oom;
        lg_off = malloc(sizeof(int32_t) * (n_lines + 1));
        seq = malloc(sizeof(int32_t) * n_occ); /* at most 4 n-grams per token */
        if (!lg_off || !seq) goto oom;
        /* pass 1: every n-gram occurrence of every line as a dense id (grouped by n, then position) */
        size_t total = 0;
        for (int l = 0; l < n_lines; l++) {
            const int32_t *w = toks + line_off[l];
            int m = line_off[l + 1] - line_off[l];
            for (int k = 1; k <= 4; k++) {
                for (int i = 0; i + k <= m; i++) {
                    seq[total++] = ng_get(&tab, w + i, k); /* table sized for every occurrence: never full */
                }
            }
        }
        int32_t G = tab.n;
        stamp = malloc(sizeof(int32_t) * (G + 1));
        where = malloc(sizeof(int32_t) * (G + 1));
        lg_gid = malloc(sizeof(int32_t) * (total + 1));
        lg_cnt = malloc(sizeof(int32_t) * (total + 1));
        lg_k = malloc(sizeof(int32_t) * (total + 1));
        if (!stamp || !where || !lg_gid || !lg_cnt || !lg_k) goto oom;
        for (int32_t g = 0; g < G; g++) stamp[g] = -1;
        /* pass 2: per line, distinct n-grams in first-occurrence order (per n) with counts */
        size_t pos = 0, nd = 0;
        for (int l = 0; l < n_lines; l++) {
            int m = line_off[l + 1] - line_off[l];
            lg_off[l] = (int32_t)nd;
            for (int k = 0; k < 4; k++) {
                for (int i = 0; i + k + 1 <= m; i++) {
                    int32_t g = seq[pos++];
                    if (stamp[g] != l) {
                        stamp[g] = l;
                        where[g] = (int32_t)nd;
                        lg_gid[nd] = g; lg_cnt[nd] = 0; lg_k[nd] = k;
                        nd++;
                    }
                    lg_cnt[where[g]]++;
                }
            }
        }
        lg_off[n_lines] = (int32_t)nd;
        free(seq); seq = NULL;

        if (bleu_out) {
            maxc = calloc(G + 1, sizeof(int32_t));
            mstamp = malloc(sizeof(int32_t) * (G + 1));
            if (!maxc || !mstamp) goto oom;
            for (int32_t g = 0; g < G; g++) mstamp[g] = -1;
            for (int s = 0; s < n_samples; s++) {
                int h = hyp_line[s];
                int testlen = line_off[h + 1] - line_off[h];
                int best_d = -1, reflen = 0;
                for (int r = ref_off[s]; r < ref_off[s + 1]; r++) {
                    int l = ref_line[r], len = line_off[l + 1] - line_off[l];
                    int d = abs(len - testlen);
                    if (best_d < 0 || d < best_d || (d == best_d && len < reflen)) { best_d = d; reflen = len; }
                    for (int32_t x = lg_off[l]; x < lg_off[l + 1]; x++) {
                        int32_t g = lg_gid[x];
                        if (mstamp[g] != s) { mstamp[g] = s; maxc[g] = 0; }
                        if (lg_cnt[x] > maxc[g]) maxc[g] = lg_cnt[x];
                    }
                }
                int32_t *o = bleu_out + 10 * (size_t)s;
                o[0] = testlen; o[1] = reflen;
                for (int k = 0; k < 4; k++) { o[2 + k] = testlen - k > 0 ? testlen - k : 0; o[6 + k] = 0; }
                for (int32_t x = lg_off[h]; x < lg_off[h + 1]; x++) {
                    int32_t g = lg_gid[x];
                    if (mstamp[g] == s && maxc[g] > 0) o[6 + lg_k[x]] += lg_cnt[x] < maxc[g] ? lg_cnt[x] : maxc[g];
                }
            }
        }

        if (cider_out) {
            /* document frequency: one count per sample whose references contain the n-gram */
            df = calloc(G + 1, sizeof(int32_t));
            idf = malloc(sizeof(double) * (G + 1));
            wref = calloc(G + 1, sizeof(double));
            vecw = malloc(sizeof(double) * (nd + 1));
            norm = malloc(sizeof(double) * 4 * (n_lines + 1));
            if (!df || !idf || !wref || !vecw || !norm) goto oom;
            for (int32_t g = 0; g < G; g++) stamp[g] = -1;
            for (int s = 0; s < n_samples; s++) {
                for (int r = ref_off[s]; r < ref_off[s + 1]; r++) {
                    int l = ref_line[r];
                    for (int32_t x = lg_off[l]; x < lg_off[l + 1]; x++) {
                        int32_t g = lg_gid[x];
                        if (stamp[g] != s) { stamp[g] = s; df[g]++; }
                    }
                }
            }
            double log_n = log((double)n_samples);
            for (int32_t g = 0; g < G; g++) idf[g] = log_n - log(fmax(1.0, (double)df[g]));
            /* tf-idf vector and per-n norm of every line (same for every sample using it) */
            for (int l = 0; l < n_lines; l++) {
                double nr[4] = {0.0, 0.0, 0.0, 0.0};
                for (int32_t x = lg_off[l]; x < lg_off[l + 1]; x++) {
                    double w = (double)lg_cnt[x] * idf[lg_gid[x]];
                    vecw[x] = w;
                    nr[lg_k[x]] += w * w;
                }
                for (int k = 0; k < 4; k++) norm[4 * (size_t)l + k] = sqrt(nr[k]);
            }
            double two_s2 = 2 * (sigma * sigma);
            for (int s = 0; s < n_samples; s++) {
                int h = hyp_line[s];
                int mh = line_off[h + 1] - line_off[h];
                int lh = mh > 1 ? mh - 1 : 0; /* pycocoevalcap's "length": the number of bigrams */
                double total[4] = {0.0, 0.0, 0.0, 0.0};
                int nref = ref_off[s + 1] - ref_off[s];
                for (int r = ref_off[s]; r < ref_off[s + 1]; r++) {
                    int l = ref_line[r];
                    int mr = line_off[l + 1] - line_off[l];
                    int lr = mr > 1 ? mr - 1 : 0;
                    for (int32_t x = lg_off[l]; x < lg_off[l + 1]; x++) wref[lg_gid[x]] = vecw[x];
                    double dl = (double)(lh - lr);
                    double pen = pow(E_CONST, -(dl * dl) / two_s2);
                    double val[4] = {0.0, 0.0, 0.0, 0.0};
                    for (int32_t x = lg_off[h]; x < lg_off[h + 1]; x++) {
                        double rw = wref[lg_gid[x]];
                        if (rw != 0.0) { double hw = vecw[x]; val[lg_k[x]] += (hw < rw ? hw : rw) * rw; }
                    }
                    for (int k = 0; k < 4; k++) {
                        double nh = norm[4 * (size_t)h + k], nrr = norm[4 * (size_t)l + k];
                        if (nh != 0 && nrr != 0) val[k] /= nh * nrr;
                        total[k] += val[k] * pen;
                    }
                    for (int32_t x = lg_off[l]; x < lg_off[l + 1]; x++) wref[lg_gid[x]] = 0.0;
                }
                double sum = total[0];
                sum += total[1]; sum += total[2]; sum += total[3];
                cider_out[s] = sum / 4 / nref * 10.0;
            }
        }
    }

    if (rouge_out) {
        int maxlen = 1;
        for (int l = 0; l < n_lines; l++)
            if (rline_off[l + 1] - rline_off[l] > maxlen) maxlen = rline_off[l + 1] - rline_off[l];
        row = malloc(sizeof(int) * (maxlen + 1));
        if (!row) goto oom;
        const double b2 = 1.2 * 1.2;
        for (int s = 0; s < n_samples; s++) {
            int h = hyp_line[s];
            const int32_t *c = rtoks + rline_off[h];
            int nc = rline_off[h + 1] - rline_off[h];
            double pmax = 0.0, rmax = 0.0;
            for (int r = ref_off[s]; r < ref_off[s + 1]; r++) {
                int l = ref_line[r];
                int nr = rline_off[l + 1] - rline_off[l];
                int lcs = lcs_len(c, nc, rtoks + rline_off[l], nr, row);
                double p = (double)lcs / (double)nc, q = (double)lcs / (double)nr;
                if (p > pmax) pmax = p;
                if (q > rmax) rmax = q;
            }
            rouge_out[s] = (pmax == 0 || rmax == 0) ? 0.0 : ((1 + b2) * pmax * rmax) / (rmax + b2 * pmax);
        }
    }
    rc = 0;
oom:
    free(tab.keys); free(tab.vals); free(lg_off); free(lg_gid); free(lg_cnt); free(lg_k); free(seq); free(stamp);
    free(where); free(df); free(maxc); free(mstamp); free(idf); free(wref); free(vecw); free(norm); free(row);
    return rc;
}

/* ================================================================================================
 * METEOR 1.5: candidate matching, beam search, sufficient statistics
 * ============================================================================================== */

enum { EXACT = 0, STEM = 1, SYN = 2, PARA = 3 };

typedef struct { int mod, s, ln, ms, ml; } Cand; /* s/ln: line 2 (reference), ms/ml: line 1 (test) */

typedef struct { int m1, m2, chunks, idx, last, dist, choice; } BPath;

/* A path's place in the beam: METEOR's order (more weighted matches, fewer chunks, less distance),
 * ties broken by insertion order as Python's stable sort does, packed into two integers. */
typedef struct { uint64_t k1, k2; int32_t slot; } BKey;

/* Paraphrase trie over word ids: (node, word) -> child in an open-addressing table; each node keeps
 * the pairs whose reference-side phrase ends there, in table order (a linked list). */
typedef struct {
    uint64_t *keys; int32_t *vals; size_t cap;
    int32_t *emit_head, *emit_tail, *emit_next;
    int32_t n_nodes;
} Trie;

static int32_t trie_child(const Trie *t, int32_t node, int32_t word) {
    uint64_t key = ((uint64_t)(uint32_t)node << 32) | (uint32_t)word;
    size_t m = t->cap - 1, s = (size_t)mix64(key + 1) & m;
    for (;;) {
        if (t->vals[s] < 0) return -1;
        if (t->keys[s] == key) return t->vals[s];
        s = (s + 1) & m;
    }
}

static int trie_build(Trie *t, int n_pairs, const int32_t *pr_off, const int32_t *pr_toks) {
    size_t ntok = (size_t)pr_off[n_pairs];
    size_t cap = 1024;
    while (cap < 2 * ntok + 16) cap *= 2;
    t->cap = cap;
    t->keys = malloc(sizeof(uint64_t) * cap);
    t->vals = malloc(sizeof(int32_t) * cap);
    t->emit_head = malloc(sizeof(int32_t) * (ntok + 1));
    t->emit_tail = malloc(sizeof(int32_t) * (ntok + 1));
    t->emit_next = malloc(sizeof(int32_t) * (n_pairs + 1));
    if (!t->keys || !t->vals || !t->emit_head || !t->emit_tail || !t->emit_next) return -1;
    for (size_t i = 0; i < cap; i++) t->vals[i] = -1;
    t->n_nodes = 1;
    t->emit_head[0] = t->emit_tail[0] = -1;
    for (int e = 0; e < n_pairs; e++) {
        int32_t node = 0;
        for (int32_t x = pr_off[e]; x < pr_off[e + 1]; x++) {
            uint64_t key = ((uint64_t)(uint32_t)node << 32) | (uint32_t)pr_toks[x];
            size_t m = cap - 1, s = (size_t)mix64(key + 1) & m;
            for (;;) {
                if (t->vals[s] < 0) {
                    t->keys[s] = key;
                    t->vals[s] = t->n_nodes;
                    t->emit_head[t->n_nodes] = t->emit_tail[t->n_nodes] = -1;
                    t->n_nodes++;
                    break;
                }
                if (t->keys[s] == key) break;
                s = (s + 1) & m;
            }
            node = t->vals[s];
        }
        t->emit_next[e] = -1;
        if (t->emit_tail[node] < 0) t->emit_head[node] = e; else t->emit_next[t->emit_tail[node]] = e;
        t->emit_tail[node] = e;
    }
    return 0;
}

/* Per-call scratch, grown as needed and reused for every pair of the corpus. */
typedef struct {
    Cand *cand; size_t cand_cap;
    Cand *candb; size_t candb_cap;
    int32_t *cnt, *cntb, *off, *fixed, *cov1, *cov2, *nxt1, *nxt2, *snxt1, *hit, *chosen; size_t line_cap;
    int32_t *ye_pos, *ye_next; size_t ye_cap;
    BPath *pa, *pb; BKey *ka, *kb; uint64_t *ba, *bb; size_t bits_cap;
    int32_t *cn_cand, *cn_parent; size_t cn_cap;
    int32_t *w_head1, *w_stamp1, *w_head2, *w_stamp2, *s_head1, *s_stamp1, *y_head1, *y_stamp1;
} WS;

static int key_less(const BKey *a, const BKey *b) {
    return a->k1 < b->k1 || (a->k1 == b->k1 && a->k2 < b->k2);
}

static BKey path_key(const BPath *p, uint32_t seq) {
    BKey k;
    k.k1 = ((uint64_t)(uint32_t)(INT32_MAX - (p->m1 + p->m2)) << 32) | (uint32_t)p->chunks;
    k.k2 = ((uint64_t)(uint32_t)p->dist << 32) | seq;
    k.slot = -1;
    return k;
}

static int bits_any(const uint64_t *b, int start, int len) {
    for (int k = start; k < start + len; k++) if (b[k >> 6] >> (k & 63) & 1) return 1;
    return 0;
}

static void bits_set(uint64_t *b, int start, int len) {
    for (int k = start; k < start + len; k++) b[k >> 6] |= (uint64_t)1 << (k & 63);
}

#define D1(c) ((c).mod == EXACT ? (c).ml : (c).ml / 2) /* Java: int += ml * 0.5 truncates */
#define D2(c) ((c).mod == EXACT ? (c).ln : (c).ln / 2)

/* The next beam, kept sorted while paths are pushed: METEOR sorts all new paths and keeps the
 * best `beam`; keeping only the best `beam` as they come gives the same paths in the same order. */
typedef struct { BPath *p; BKey *k; uint64_t *bits; int W, beam, n, used; uint32_t seq; } Beam;

/* Offer a path; returns its slot (bits copied from src, to be completed by the caller) or -1. */
static int beam_push(Beam *bm, const BPath *path, const uint64_t *src) {
    BKey key = path_key(path, bm->seq++);
    int pos;
    if (bm->n == bm->beam) {
        if (!key_less(&key, &bm->k[bm->n - 1])) return -1;
        key.slot = bm->k[bm->n - 1].slot; /* evict the worst */
        pos = bm->n - 1;
    } else {
        key.slot = bm->used++;
        pos = bm->n++;
    }
    while (pos > 0 && key_less(&key, &bm->k[pos - 1])) { bm->k[pos] = bm->k[pos - 1]; pos--; }
    bm->k[pos] = key;
    bm->p[key.slot] = *path;
    memcpy(bm->bits + (size_t)key.slot * bm->W, src, sizeof(uint64_t) * bm->W);
    return key.slot;
}

/* METEOR's beam search over the candidates of one pair; chosen[j] = candidate index or -1. */
static int beam_search(WS *ws, int beam, int n1, int n2, const Cand *cand, const int32_t *off,
                       const int32_t *fixed, int32_t *chosen) {
    int W1 = (n1 + 63) / 64, W2 = (n2 + 63) / 64, W = W1 + W2;
    size_t slots = (size_t)beam + 1;
    if (!ws->pa) {
        ws->pa = malloc(sizeof(BPath) * slots); ws->pb = malloc(sizeof(BPath) * slots);
        ws->ka = malloc(sizeof(BKey) * slots); ws->kb = malloc(sizeof(BKey) * slots);
        if (!ws->pa || !ws->pb || !ws->ka || !ws->kb) return -1;
    }
    if (slots * (size_t)W > ws->bits_cap) {
        size_t need = slots * (size_t)W;
        uint64_t *x = realloc(ws->ba, sizeof(uint64_t) * need); if (!x) return -1; ws->ba = x;
        x = realloc(ws->bb, sizeof(uint64_t) * need); if (!x) return -1; ws->bb = x;
        ws->bits_cap = need;
    }
    Beam cur_b = {ws->pa, ws->ka, ws->ba, W, beam, 0, 0, 0};
    Beam nxt_b = {ws->pb, ws->kb, ws->bb, W, beam, 0, 0, 0};
    size_t ncn = 0;
    {
        BPath start = {0, 0, 0, 0, -1, 0, -1};
        uint64_t *b0 = cur_b.bits;
        memset(b0, 0, sizeof(uint64_t) * W);
        for (int j = 0; j < n2; j++) if (fixed[j] >= 0) {
            const Cand *c = &cand[fixed[j]];
            bits_set(b0, c->ms, c->ml);
            bits_set(b0 + W1, c->s, c->ln);
        }
        cur_b.p[0] = start;
        cur_b.k[0] = path_key(&start, 0);
        cur_b.k[0].slot = 0;
        cur_b.n = cur_b.used = 1;
    }
    for (int cur = 0; cur < n2; cur++) {
        nxt_b.n = nxt_b.used = 0; nxt_b.seq = 0;
        for (int r = 0; r < cur_b.n; r++) {
            int slot = cur_b.k[r].slot;
            BPath p = cur_b.p[slot];
            const uint64_t *bits = cur_b.bits + (size_t)slot * W;
            const uint64_t *u1 = bits, *u2 = bits + W1;
            if (u2[cur >> 6] >> (cur & 63) & 1) {
                if (cur < p.idx) { beam_push(&nxt_b, &p, bits); }
                else {
                    int f = p.idx < n2 ? fixed[p.idx] : -1;
                    if (f >= 0) {
                        Cand c = cand[f];
                        p.m1 += D1(c); p.m2 += D2(c);
                        if (p.last != -1 && c.ms != p.last) p.chunks++;
                        p.idx = c.s + c.ln; p.last = c.ms + c.ml; p.dist += abs(c.s - c.ms);
                        beam_push(&nxt_b, &p, bits);
                    }
                }
                continue;
            }
            for (int ci = off[cur]; ci < off[cur + 1]; ci++) {
                Cand c = cand[ci];
                if (bits_any(u2, c.s, c.ln) || bits_any(u1, c.ms, c.ml)) continue;
                BPath q = p;
                q.m1 = p.m1 + D1(c); q.m2 = p.m2 + D2(c);
                q.chunks = (p.last != -1 && c.ms != p.last) ? p.chunks + 1 : p.chunks;
                q.idx = c.s + c.ln; q.last = c.ms + c.ml;
                int ns = beam_push(&nxt_b, &q, bits);
                if (ns >= 0) {
                    if (ncn + 1 > ws->cn_cap) {
                        size_t nc2 = ws->cn_cap ? 2 * ws->cn_cap : 1024;
                        int32_t *x = realloc(ws->cn_cand, sizeof(int32_t) * nc2); if (!x) return -1; ws->cn_cand = x;
                        x = realloc(ws->cn_parent, sizeof(int32_t) * nc2); if (!x) return -1; ws->cn_parent = x;
                        ws->cn_cap = nc2;
                    }
                    ws->cn_cand[ncn] = ci; ws->cn_parent[ncn] = p.choice;
                    nxt_b.p[ns].choice = (int32_t)ncn++;
                    uint64_t *nbits = nxt_b.bits + (size_t)ns * W;
                    bits_set(nbits, c.ms, c.ml);
                    bits_set(nbits + W1, c.s, c.ln);
                }
                p.dist += abs(c.s - c.ms); /* sic: METEOR adds the distance to the parent path */
            }
            if (p.last != -1) { p.chunks++; p.last = -1; }
            p.idx++;
            beam_push(&nxt_b, &p, bits);
        }
        if (nxt_b.seq == 0) { /* nothing survived: METEOR keeps the best path and goes on */
            int slot = cur_b.k[0].slot;
            beam_push(&nxt_b, &cur_b.p[slot], cur_b.bits + (size_t)slot * W);
        }
        Beam t = cur_b; cur_b = nxt_b; nxt_b = t;
    }
    /* last step: close open chunks, then the final (stable) sort */
    for (int r = 0; r < cur_b.n; r++) {
        BPath *p = &cur_b.p[cur_b.k[r].slot];
        if (p->last != -1) p->chunks++;
        int slot = cur_b.k[r].slot;
        cur_b.k[r] = path_key(p, (uint32_t)r);
        cur_b.k[r].slot = slot;
    }
    for (int r = 1; r < cur_b.n; r++) {
        BKey key = cur_b.k[r];
        int pos = r;
        while (pos > 0 && key_less(&key, &cur_b.k[pos - 1])) { cur_b.k[pos] = cur_b.k[pos - 1]; pos--; }
        cur_b.k[pos] = key;
    }
    const BPath *best = &cur_b.p[cur_b.k[0].slot];
    for (int j = 0; j < n2; j++) chosen[j] = fixed[j];
    for (int32_t x = best->choice; x >= 0; x = ws->cn_parent[x]) chosen[cand[ws->cn_cand[x]].s] = ws->cn_cand[x];
    return 0;
}

/* Word tables: stem id, function-word flag and synset ids (CSR, dense ids) per word id.
 * lines: CSR of word ids (METEOR-normalised lines). Paraphrase pairs e = 0..n_pairs-1 (table order):
 * reference-side phrase pr (CSR) -> paraphrase pp (CSR), all in word ids.
 * Combination c: test line c_hyp[c] against reference line c_ref[c].
 * out: 21 ints per combination: test len, ref len, test function words, ref function words,
 * test content matches[4], ref content matches[4], test function matches[4], ref function matches[4], chunks.
 * Returns 0, or -1 when out of memory. */
int meteor_corpus(int n_words, const int32_t *stem, const uint8_t *fw, const int32_t *syn_off,
                  const int32_t *syn, int n_stems, int n_syn,
                  int n_lines, const int32_t *line_off, const int32_t *toks,
                  int n_pairs, const int32_t *pr_off, const int32_t *pr_toks, const int32_t *pp_off,
                  const int32_t *pp_toks, int n_combos, const int32_t *c_hyp, const int32_t *c_ref, int beam,
                  int32_t *out) {
    int rc = -1;
    Trie trie = {0};
    WS ws;
    memset(&ws, 0, sizeof(ws));
    (void)n_lines;
    if (beam < 1) beam = 1;
    if (trie_build(&trie, n_pairs, pr_off, pr_toks) != 0) goto done;
    size_t nw = (size_t)n_words + 1, ns = (size_t)n_stems + 1, ny = (size_t)n_syn + 1;
    ws.w_head1 = malloc(sizeof(int32_t) * nw); ws.w_stamp1 = malloc(sizeof(int32_t) * nw);
    ws.w_head2 = malloc(sizeof(int32_t) * nw); ws.w_stamp2 = malloc(sizeof(int32_t) * nw);
    ws.s_head1 = malloc(sizeof(int32_t) * ns); ws.s_stamp1 = malloc(sizeof(int32_t) * ns);
    ws.y_head1 = malloc(sizeof(int32_t) * ny); ws.y_stamp1 = malloc(sizeof(int32_t) * ny);
    if (!ws.w_head1 || !ws.w_stamp1 || !ws.w_head2 || !ws.w_stamp2 || !ws.s_head1 || !ws.s_stamp1 || !ws.y_head1 ||
        !ws.y_stamp1) goto done;
    for (size_t i = 0; i < nw; i++) ws.w_stamp1[i] = ws.w_stamp2[i] = -1;
    for (size_t i = 0; i < ns; i++) ws.s_stamp1[i] = -1;
    for (size_t i = 0; i < ny; i++) ws.y_stamp1[i] = -1;

    for (int ci = 0; ci < n_combos; ci++) {
        const int32_t *w1 = toks + line_off[c_hyp[ci]], *w2 = toks + line_off[c_ref[ci]];
        int n1 = line_off[c_hyp[ci] + 1] - line_off[c_hyp[ci]], n2 = line_off[c_ref[ci] + 1] - line_off[c_ref[ci]];
        size_t nl = (size_t)(n1 > n2 ? n1 : n2) + 2;
        if (nl > ws.line_cap) {
            int32_t **arrs[] = {&ws.cnt, &ws.cntb, &ws.off, &ws.fixed, &ws.cov1, &ws.cov2, &ws.nxt1, &ws.nxt2,
                                &ws.snxt1, &ws.hit, &ws.chosen};
            for (size_t a = 0; a < sizeof(arrs) / sizeof(arrs[0]); a++) {
                int32_t *x = realloc(*arrs[a], sizeof(int32_t) * nl);
                if (!x) goto done;
                *arrs[a] = x;
            }
            ws.line_cap = nl;
        }
        /* position lists: word / stem / synset -> positions in line 1 (ascending), word -> positions in line 2 */
        for (int i = n1 - 1; i >= 0; i--) {
            int32_t w = w1[i], st = stem[w];
            ws.nxt1[i] = ws.w_stamp1[w] == ci ? ws.w_head1[w] : -1;
            ws.w_head1[w] = i; ws.w_stamp1[w] = ci;
            ws.snxt1[i] = ws.s_stamp1[st] == ci ? ws.s_head1[st] : -1;
            ws.s_head1[st] = i; ws.s_stamp1[st] = ci;
        }
        for (int j = n2 - 1; j >= 0; j--) {
            int32_t w = w2[j];
            ws.nxt2[j] = ws.w_stamp2[w] == ci ? ws.w_head2[w] : -1;
            ws.w_head2[w] = j; ws.w_stamp2[w] = ci;
        }
        int same = n1 == n2 && memcmp(w1, w2, sizeof(int32_t) * n1) == 0;
        size_t nye = 0;
        if (!same) {
            for (int i = n1 - 1; i >= 0; i--) {
                int32_t w = w1[i];
                for (int32_t x = syn_off[w]; x < syn_off[w + 1]; x++) {
                    int32_t y = syn[x];
                    if (nye + 1 > ws.ye_cap) {
                        size_t c2 = ws.ye_cap ? 2 * ws.ye_cap : 1024;
                        int32_t *z = realloc(ws.ye_pos, sizeof(int32_t) * c2); if (!z) goto done; ws.ye_pos = z;
                        z = realloc(ws.ye_next, sizeof(int32_t) * c2); if (!z) goto done; ws.ye_next = z;
                        ws.ye_cap = c2;
                    }
                    ws.ye_pos[nye] = i;
                    ws.ye_next[nye] = ws.y_stamp1[y] == ci ? ws.y_head1[y] : -1;
                    ws.y_head1[y] = (int32_t)nye; ws.y_stamp1[y] = ci;
                    nye++;
                }
            }
        }
        for (int i = 0; i < n1; i++) { ws.cov1[i] = 0; ws.hit[i] = -1; }
        for (int j = 0; j < n2; j++) { ws.cov2[j] = 0; ws.cnt[j] = 0; ws.cntb[j] = 0; }
        size_t nc = 0, ncb = 0;
#define ADD(MOD, S, LN, MS, ML) do { GROW(ws.cand, ws.cand_cap, nc + 1); \
        ws.cand[nc++] = (Cand){(MOD), (S), (LN), (MS), (ML)}; ws.cnt[j]++; \
        for (int k_ = 0; k_ < (ML); k_++) ws.cov1[(MS) + k_]++; \
        for (int k_ = 0; k_ < (LN); k_++) ws.cov2[(S) + k_]++; } while (0)
        /* per reference position j, in METEOR's order: exact, stem, synonym, paraphrase (line-2 phrases) */
        for (int j = 0; j < n2; j++) {
            int32_t w = w2[j];
            if (ws.w_stamp1[w] == ci)
                for (int i = ws.w_head1[w]; i >= 0; i = ws.nxt1[i]) ADD(EXACT, j, 1, i, 1);
            if (same) continue;
            int32_t st = stem[w];
            if (ws.s_stamp1[st] == ci)
                for (int i = ws.s_head1[st]; i >= 0; i = ws.snxt1[i]) if (w1[i] != w) ADD(STEM, j, 1, i, 1);
            int lo = n1, hi = -1;
            for (int32_t x = syn_off[w]; x < syn_off[w + 1]; x++) {
                int32_t y = syn[x];
                if (ws.y_stamp1[y] != ci) continue;
                for (int32_t e = ws.y_head1[y]; e >= 0; e = ws.ye_next[e]) {
                    int i = ws.ye_pos[e];
                    ws.hit[i] = j;
                    if (i < lo) lo = i;
                    if (i > hi) hi = i;
                }
            }
            for (int i = lo; i <= hi; i++) if (ws.hit[i] == j && w1[i] != w) ADD(SYN, j, 1, i, 1);
            int32_t node = 0;
            for (int t = 0; j + t < n2; t++) {
                node = trie_child(&trie, node, w2[j + t]);
                if (node < 0) break;
                for (int32_t e = trie.emit_head[node]; e >= 0; e = trie.emit_next[e]) {
                    const int32_t *par = pp_toks + pp_off[e];
                    int lp = pp_off[e + 1] - pp_off[e];
                    if (lp == 0 || ws.w_stamp1[par[0]] != ci) continue;
                    for (int i = ws.w_head1[par[0]]; i >= 0; i = ws.nxt1[i]) {
                        if (i + lp <= n1 && (lp == 1 || memcmp(w1 + i, par, sizeof(int32_t) * lp) == 0))
                            ADD(PARA, j, t + 1, i, lp);
                    }
                }
            }
        }
#undef ADD
        /* paraphrases of line-1 phrases: generated per test position i, appended to each j's list */
        if (!same) {
            for (int i = 0; i < n1; i++) {
                int32_t node = 0;
                for (int t = 0; i + t < n1; t++) {
                    node = trie_child(&trie, node, w1[i + t]);
                    if (node < 0) break;
                    for (int32_t e = trie.emit_head[node]; e >= 0; e = trie.emit_next[e]) {
                        const int32_t *par = pp_toks + pp_off[e];
                        int lp = pp_off[e + 1] - pp_off[e];
                        if (lp == 0 || ws.w_stamp2[par[0]] != ci) continue;
                        for (int j = ws.w_head2[par[0]]; j >= 0; j = ws.nxt2[j]) {
                            if (j + lp <= n2 && (lp == 1 || memcmp(w2 + j, par, sizeof(int32_t) * lp) == 0)) {
                                GROW(ws.candb, ws.candb_cap, ncb + 1);
                                ws.candb[ncb++] = (Cand){PARA, j, lp, i, t + 1};
                                ws.cntb[j]++;
                                for (int k = 0; k < t + 1; k++) ws.cov1[i + k]++;
                                for (int k = 0; k < lp; k++) ws.cov2[j + k]++;
                            }
                        }
                    }
                }
            }
        }
        /* final candidate lists: per j, the line-2 phase candidates then the line-1 paraphrases */
        size_t total = nc + ncb;
        Cand *all = ws.cand;
        if (ncb > 0) {
            GROW(ws.cand, ws.cand_cap, 2 * total + 1);
            all = ws.cand + total; /* second half of the buffer */
            size_t pos = 0, src = 0;
            for (int j = 0; j < n2; j++) {
                ws.off[j] = (int32_t)pos;
                for (int k = 0; k < ws.cnt[j]; k++) all[pos++] = ws.cand[src++];
                pos += ws.cntb[j];
            }
            ws.off[n2] = (int32_t)pos;
            for (int j = 0; j < n2; j++) ws.cntb[j] = ws.off[j] + ws.cnt[j]; /* write cursor per j */
            for (size_t b = 0; b < ncb; b++) all[ws.cntb[ws.candb[b].s]++] = ws.candb[b];
        } else {
            size_t pos = 0;
            for (int j = 0; j < n2; j++) { ws.off[j] = (int32_t)pos; pos += ws.cnt[j]; }
            ws.off[n2] = (int32_t)pos;
        }
        /* one-to-one matches no other candidate touches are fixed before the search */
        int ambiguous = 0;
        for (int j = 0; j < n2; j++) {
            ws.fixed[j] = -1;
            int k = ws.off[j + 1] - ws.off[j];
            if (k == 1) {
                Cand c = all[ws.off[j]];
                int ok = 1;
                for (int x = 0; x < c.ln && ok; x++) ok = ws.cov2[c.s + x] == 1;
                for (int x = 0; x < c.ml && ok; x++) ok = ws.cov1[c.ms + x] == 1;
                if (ok) { ws.fixed[j] = ws.off[j]; continue; }
            }
            if (k > 0) ambiguous = 1;
        }
        if (ambiguous) {
            if (beam_search(&ws, beam, n1, n2, all, ws.off, ws.fixed, ws.chosen) != 0) goto done;
        } else {
            for (int j = 0; j < n2; j++) ws.chosen[j] = ws.fixed[j];
        }
        /* statistics: walk the alignment as Aligner.getCountAndChunks does */
        int32_t *o = out + 21 * (size_t)ci;
        memset(o, 0, sizeof(int32_t) * 21);
        o[0] = n1; o[1] = n2;
        for (int i = 0; i < n1; i++) o[2] += fw[w1[i]];
        for (int j = 0; j < n2; j++) o[3] += fw[w2[j]];
        int chunks = 0, idx = 0, last = -1;
        while (idx < n2) {
            int c = ws.chosen[idx];
            if (c < 0) {
                if (last != -1) { chunks++; last = -1; }
                idx++;
                continue;
            }
            Cand m = all[c];
            for (int k = 0; k < m.ml; k++) { if (fw[w1[m.ms + k]]) o[12 + m.mod]++; else o[4 + m.mod]++; }
            for (int k = 0; k < m.ln; k++) { if (fw[w2[m.s + k]]) o[16 + m.mod]++; else o[8 + m.mod]++; }
            if (last != -1 && m.ms != last) chunks++;
            idx = m.s + m.ln;
            last = m.ms + m.ml;
        }
        if (last != -1) chunks++;
        o[20] = chunks;
    }
    rc = 0;
done:
oom:
    free(trie.keys); free(trie.vals); free(trie.emit_head); free(trie.emit_tail); free(trie.emit_next);
    free(ws.cand); free(ws.candb); free(ws.cnt); free(ws.cntb); free(ws.off); free(ws.fixed);
    free(ws.cov1); free(ws.cov2); free(ws.nxt1); free(ws.nxt2); free(ws.snxt1); free(ws.hit); free(ws.chosen);
    free(ws.ye_pos); free(ws.ye_next); free(ws.pa); free(ws.pb); free(ws.ka); free(ws.kb); free(ws.ba); free(ws.bb);
    free(ws.cn_cand); free(ws.cn_parent); free(ws.w_head1); free(ws.w_stamp1); free(ws.w_head2); free(ws.w_stamp2);
    free(ws.s_head1); free(ws.s_stamp1); free(ws.y_head1); free(ws.y_stamp1);
    return rc;
}

/* ================================================================================================
 * Paraphrase table filter: pairs e whose phrases 2e and 2e+1 use only words present in the corpus
 * ============================================================================================== */
int64_t para_subset(int64_t n_pairs, const uint16_t *pair_key, const int64_t *off, const uint16_t *ids,
                    const uint8_t *present, int64_t *out) {
    int64_t n = 0;
    for (int64_t e = 0; e < n_pairs; e++) {
        if (!present[pair_key[e]]) continue; /* the pair's rarest word: rejects most pairs at once */
        int ok = 1;
        for (int64_t x = off[2 * e]; x < off[2 * e + 2] && ok; x++) ok = present[ids[x]];
        if (ok) out[n++] = e;
    }
    return n;
}
