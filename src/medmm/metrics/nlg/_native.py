"""Optional compiled kernels for the NLG metrics (same results as the pure-Python code, much faster).

The C source (``_native.c``) is compiled once with the system C compiler (``$CC``, else ``cc``
or ``gcc``) into the medmm cache folder (``$MEDMM_CACHE`` or ``~/.cache/medmm``) and loaded with
ctypes: no build step at install time and no new runtime dependency. The library is written to a
temporary name and renamed into place, so parallel first uses never load a half-written file.
Without a compiler, when compiling fails, or with ``MEDMM_NO_NATIVE=1``, :func:`load` returns None
(with one warning saying why) and the metrics run their pure-Python reference code instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

from medmm.fileio import atomic_path

__all__ = ["load", "library_path"]


@lru_cache(maxsize=1)
def _c_source() -> str:
    """The C source, shipped as package data next to this file (read on first use, not at import)."""
    return (Path(__file__).parent / "_native.c").read_text()


# Portable flags only (no -march): the cached library must run on any x86_64/arm64 machine that
# shares the cache folder. -ffp-contract=off: no fused multiply-add, so every floating-point result
# is rounded exactly as Python rounds it.
_FLAGS = ["-O2", "-shared", "-fPIC", "-ffp-contract=off"]


def library_path() -> Path:
    """Where the compiled library for the current source lives (name carries the source hash)."""
    cache = Path(os.environ.get("MEDMM_CACHE") or Path.home() / ".cache" / "medmm")
    digest = hashlib.sha1((_c_source() + " ".join(_FLAGS)).encode()).hexdigest()[:12]
    # The platform in the name: a cache folder shared by x86_64 and arm64 machines keeps one of each.
    return cache / f"medmm_nlg_{sys.platform}_{platform.machine() or 'unknown'}_{digest}.so"


def _compile(lib: Path) -> str | None:
    """Build ``lib``; returns None on success, else the reason it could not be built."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return "no C compiler found (set CC or install gcc/clang)"
    with tempfile.TemporaryDirectory() as tmp:
        src, built = Path(tmp) / "medmm_nlg.c", Path(tmp) / "medmm_nlg.so"
        src.write_text(_c_source())
        try:
            subprocess.run([cc, *_FLAGS, "-o", str(built), str(src), "-lm"], check=True, capture_output=True,
                           timeout=120)
        except subprocess.CalledProcessError as exc:
            return f"{cc} failed: {exc.stderr.decode(errors='replace').strip()[:300]}"
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{cc} could not run: {exc}"
        # unique temporary name: parallel first uses (test workers) each install their own copy
        with atomic_path(lib, unique=True) as tmp_out:
            shutil.copy(built, tmp_out)  # bytes and mode
    return None


@lru_cache(maxsize=1)
def load() -> ctypes.CDLL | None:
    """The compiled kernels (``nlg_ngram``, ``meteor_corpus``, ``para_subset``), or None when they cannot be used here."""
    if os.environ.get("MEDMM_NO_NATIVE"):
        return None
    lib = library_path()
    try:
        why = None if lib.is_file() else _compile(lib)
        if why is None:
            dll = ctypes.CDLL(str(lib))
    except OSError as exc:
        why = f"{lib}: {exc}"
    if why is not None:
        warnings.warn(f"medmm.metrics.nlg: compiled kernels unavailable ({why}); using the pure-Python "
                      "implementation (identical scores, about 10-20x slower)", RuntimeWarning, stacklevel=2)
        return None
    p = ctypes.c_void_p
    i = ctypes.c_int
    dll.nlg_ngram.argtypes = [i, p, p, p, p, i, p, p, p, ctypes.c_double, p, p, p]
    dll.nlg_ngram.restype = i
    dll.meteor_corpus.argtypes = [i, p, p, p, p, i, i, i, p, p, i, p, p, p, p, i, p, p, i, p]
    dll.meteor_corpus.restype = i
    dll.para_subset.argtypes = [ctypes.c_int64, p, p, p, p, p]
    dll.para_subset.restype = ctypes.c_int64
    return dll
