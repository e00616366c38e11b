"""Atomic writes of files and folders, and file checksums: the one copy every layer uses.

A reader (or a resumed run) sees the old file or the new one, never half of one: a write goes
to a temporary name in the target's own folder and is renamed into place only once complete
(a rename within one folder is atomic on POSIX; a temporary file elsewhere, e.g. /tmp, could sit
on another file system, where the "rename" is a copy that a kill can cut).

    write_text(path, text)                          # also write_bytes
    with atomic_open(path, "wb", fsync=True) as f:  # any writer that takes a file: torch.save, csv, tar
        torch.save(obj, f)
    with atomic_path(lib) as tmp:                   # a writer that wants a path (a compiler's -o)
        run_compiler(output=tmp)
    with atomic_dir(folder) as tmp:                 # a folder of several files (an index)
        (tmp / "index.json").write_text(...)

Temporary names: `.NAME.tmp` beside the target, one fixed name per target, so a write killed
half-way leaves at most one file, which the next write of the same target overwrites; where
several processes may write one target at once (a shared cache), `unique=True` gives
`.NAME.tmp-PID`. `medmm.engine.rundir.remove_temp_files` removes both kinds from a run dir.
`fsync=True` (checkpoints, weights, indexes) also flushes the data and the rename to disk, so
a power cut cannot leave an empty file under the final name.

Imports only the standard library: data, metrics (torch-free), engine, knowledge and serve all use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


def temp_path(path: str | Path, *, unique: bool = False) -> Path:
    """The temporary file an atomic write of `path` goes through: `.NAME.tmp` beside it
    (`.NAME.tmp-PID` with `unique`, for targets several processes may write at once)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_SUFFIX}" + (f"-{os.getpid()}" if unique else ""))


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; elsewhere a folder cannot be opened for fsync)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False, unique: bool = False) -> Iterator[Path]:
    """Yield the temporary path to write; when the block ends without error it replaces `path`.

    The parent folder is created. On an error (or a kill) `path` is untouched and the
    temporary file is removed (a kill leaves it, for the next write to overwrite).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, unique=unique)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", *, fsync: bool = False, unique: bool = False, **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """`open(path, mode)` for writing, atomically: the file appears under `path` when the block
    ends without error. `open_kwargs` go to `open` (encoding, newline, ...)."""
    if "w" not in mode and "x" not in mode:
        raise ValueError(f"atomic_open writes a whole new file; mode {mode!r} is not a write mode")
    with atomic_path(path, fsync=fsync, unique=unique) as tmp, open(tmp, mode.replace("x", "w"), **open_kwargs) as f:
        yield f


def write_bytes(path: str | Path, data: bytes, *, fsync: bool = False, unique: bool = False) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb", fsync=fsync, unique=unique) as f:
        f.write(data)


def write_text(path: str | Path, text: str, *, fsync: bool = False, unique: bool = False, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (as `Path.write_text` would)."""
    with atomic_open(path, "w", fsync=fsync, unique=unique, encoding=encoding) as f:
        f.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; when the block ends without error the
    folder replaces `path` (an existing `path` is moved aside, replaced, then deleted).

    keep_existing=True: where `path` already exists when the block ends (another process built
    the same folder first, e.g. a cache), keep it and discard this one.
    On an error the temporary folder is deleted and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TEMP_SUFFIX}-", dir=path.parent))
    try:
        yield tmp
        if keep_existing:
            try:
                os.replace(tmp, path)  # replaces only an empty folder
            except OSError:
                if not path.is_dir():
                    raise
            return
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in blocks)."""
    return file_digest(path, "sha256")


def file_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest of a file's bytes with a hashlib `algorithm` ("sha256", "sha1", ...)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


__all__ = ["TEMP_SUFFIX", "atomic_dir", "atomic_open", "atomic_path", "file_digest", "sha256_file", "temp_path",
           "write_bytes", "write_text"]
