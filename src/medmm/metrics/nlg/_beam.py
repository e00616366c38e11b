"""Optional compiled version of METEOR's beam search (same steps, same tie-breaking, ~50x faster).

The C source below is compiled once with the system C compiler into the medmm cache folder and
loaded with ctypes. Without a compiler (or with ``MEDMM_NO_CBEAM=1``) :func:`load` returns None and
``meteor.py`` uses its pure-Python search; tests check both give identical alignments.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

C_SOURCE = r"""
#include <stdlib.h>
#include <string.h>

typedef struct { int m1, m2, chunks, idx, last, dist, seq, off; } Path;

static Path *g_paths;

static int cmp(const void *a, const void *b) {
    const Path *x = &g_paths[*(const int *)a], *y = &g_paths[*(const int *)b];
    int kx = -(x->m1 + x->m2), ky = -(y->m1 + y->m2);
    if (kx != ky) return kx < ky ? -1 : 1;
    if (x->chunks != y->chunks) return x->chunks < y->chunks ? -1 : 1;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/* Path data block: used1[n1] bytes, used2[n2] bytes, choice[n2] ints (candidate index or -1). */
/* cand: 6 ints per candidate (start, length, matchStart, matchLength, weighted add 1, weighted add 2) */
int meteor_beam(int n1, int n2, int beam, const int *off, const int *cand,
                const int *fixed, const unsigned char *init1, const unsigned char *init2, int *out) {
    int maxc = 0;
    for (int j = 0; j < n2; j++) if (off[j + 1] - off[j] > maxc) maxc = off[j + 1] - off[j];
    int cap = beam * (maxc + 1) + 2;
    /* choice array lives at an 8-byte aligned offset inside each path's block */
    size_t choff = ((size_t)n1 + (size_t)n2 + 7) & ~(size_t)7;
    size_t blk = choff + sizeof(int) * (size_t)n2;
    Path *pa = malloc(sizeof(Path) * cap), *pb = malloc(sizeof(Path) * cap);
    unsigned char *da = malloc(blk * cap), *db = malloc(blk * cap);
    int *order = malloc(sizeof(int) * cap);
    if (!pa || !pb || !da || !db || !order) { free(pa); free(pb); free(da); free(db); free(order); return -1; }
    int na = 1, nb = 0;
    pa[0] = (Path){0, 0, 0, 0, -1, 0, 0, 0};
    memcpy(da, init1, n1); memcpy(da + n1, init2, n2);
    for (int j = 0; j < n2; j++) ((int *)(da + choff))[j] = -1;

#define U1(d, p) ((d) + (size_t)(p).off * blk)
#define U2(d, p) ((d) + (size_t)(p).off * blk + n1)
#define CH(d, p) ((int *)((d) + (size_t)(p).off * blk + choff))
#define PUSH(src_d, srcp) do { Path pushed_ = (srcp); unsigned char *dst_ = db + (size_t)nb * blk; \
        memcpy(dst_, (src_d) + (size_t)pushed_.off * blk, blk); pushed_.off = nb; pushed_.seq = nb; \
        pb[nb++] = pushed_; } while (0)

    for (int cur = 0; cur <= n2; cur++) {
        g_paths = pa;
        for (int i = 0; i < na; i++) order[i] = i;
        qsort(order, na, sizeof(int), cmp);
        int keep = na < beam ? na : beam;
        if (cur == n2) {
            int best;
            for (int r = 0; r < keep; r++) {
                Path *p = &pa[order[r]];
                if (p->last != -1) p->chunks++;
            }
            /* final sort of the kept paths, stable by their rank */
            for (int r = 0; r < keep; r++) pa[order[r]].seq = r;
            qsort(order, keep, sizeof(int), cmp);
            best = order[0];
            memcpy(out, CH(da, pa[best]), sizeof(int) * n2);
            break;
        }
        nb = 0;
        for (int r = 0; r < keep; r++) {
            Path p = pa[order[r]];
            unsigned char *u1 = U1(da, p), *u2 = U2(da, p);
            if (u2[cur]) {
                if (cur < p.idx) { PUSH(da, p); }
                else {
                    int f = p.idx < n2 ? fixed[p.idx] : -1;
                    if (f >= 0) {
                        const int *cf = cand + 6 * (size_t)f;
                        int s = cf[0], ln = cf[1], ms = cf[2], ml = cf[3];
                        p.m1 += cf[4]; p.m2 += cf[5];
                        if (p.last != -1 && ms != p.last) p.chunks++;
                        p.idx = s + ln; p.last = ms + ml; p.dist += abs(s - ms);
                        PUSH(da, p);
                    }
                }
                continue;
            }
            for (int c = off[cur]; c < off[cur + 1]; c++) {
                const int *cc = cand + 6 * (size_t)c;
                int s = cc[0], ln = cc[1], ms = cc[2], ml = cc[3], busy = 0;
                for (int k = 0; k < ln && !busy; k++) busy = u2[s + k];
                for (int k = 0; k < ml && !busy; k++) busy = u1[ms + k];
                if (busy) continue;
                Path q = p;
                q.m1 = p.m1 + cc[4]; q.m2 = p.m2 + cc[5];
                if (p.last != -1 && ms != p.last) q.chunks = p.chunks + 1;
                q.idx = s + ln; q.last = ms + ml;
                PUSH(da, q);
                unsigned char *nd = db + (size_t)(nb - 1) * blk;
                for (int k = 0; k < ln; k++) nd[n1 + s + k] = 1;
                for (int k = 0; k < ml; k++) nd[ms + k] = 1;
                ((int *)(nd + choff))[cur] = c;
                p.dist += abs(s - ms); /* sic: METEOR adds the distance to the parent path */
            }
            if (p.last != -1) { p.chunks++; p.last = -1; }
            p.idx++;
            PUSH(da, p);
        }
        if (nb == 0) { PUSH(da, pa[order[0]]); }
        Path *tp = pa; pa = pb; pb = tp;
        unsigned char *td = da; da = db; db = td;
        na = nb;
    }
    free(pa); free(pb); free(da); free(db); free(order);
    return 0;
}
"""


@lru_cache(maxsize=1)
def load():
    """The compiled ``meteor_beam`` function, or None when it cannot be built here."""
    if os.environ.get("MEDMM_NO_CBEAM"):
        return None
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    cache = Path(os.environ.get("MEDMM_CACHE") or Path.home() / ".cache" / "medmm")
    lib = cache / f"meteor_beam_{hashlib.sha1(C_SOURCE.encode()).hexdigest()[:12]}.so"
    try:
        if not lib.is_file():
            if cc is None:
                return None
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "beam.c"
                src.write_text(C_SOURCE)
                out = Path(tmp) / lib.name
                subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(src)],
                               check=True, capture_output=True, timeout=120)
                os.replace(out, lib)
        dll = ctypes.CDLL(str(lib))
    except (OSError, subprocess.SubprocessError):
        return None
    fn = dll.meteor_beam
    ip = ctypes.POINTER(ctypes.c_int)
    up = ctypes.POINTER(ctypes.c_ubyte)
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ip, ip, ip, up, up, ip]
    fn.restype = ctypes.c_int
    return fn
