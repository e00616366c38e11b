"""Decoders run under a watchdog, and JPEG 2000 streams are checked before they are decoded.

Some decoders loop forever on malformed input (Pillow 13 spins on a JP2 file whose second box
has length 0, reached through DICOM JPEG 2000 pixel data). Two defences, both cheap:

* `check_jpeg2000` walks the JP2 box structure (or the J2K codestream's first markers) and
  rejects what no valid file holds, before any decoder sees the bytes;
* `guarded` runs a decode with a time limit: in the main thread by SIGALRM (the decoders that
  hang are Python loops, which a signal interrupts), elsewhere in a helper thread that the caller
  stops waiting for. Either way the caller gets a `BadInputError` naming the file, never a hang.
"""

from __future__ import annotations

import signal
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from medmm.errors import BadInputError

T = TypeVar("T")

# Seconds one image may take to decode. Real images here decode in well under a second; a
# 100-megapixel JPEG 2000 takes a few seconds on a slow CPU.
DECODE_TIMEOUT_S = 60.0

JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"


class _DecodeTimeout(Exception):
    pass


def guarded(fn: Callable[[], T], path: str | Path | None, what: str, timeout_s: float = DECODE_TIMEOUT_S) -> T:
    """`fn()` with a time limit; past it, BadInputError(path, "<what> did not finish ...")."""
    problem = f"{what} did not finish within {timeout_s:g} s (malformed data makes some decoders loop)"
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _guarded_by_alarm(fn, path, problem, timeout_s)
    return _guarded_by_thread(fn, path, problem, timeout_s)


def _guarded_by_alarm(fn: Callable[[], T], path: str | Path | None, problem: str, timeout_s: float) -> T:
    def on_alarm(signum, frame):
        raise _DecodeTimeout

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return fn()
    except _DecodeTimeout:
        raise BadInputError(path, problem) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:  # an outer timer (e.g. a test timeout) keeps running
            signal.setitimer(signal.ITIMER_REAL, previous_delay)


def _guarded_by_thread(fn: Callable[[], T], path: str | Path | None, problem: str, timeout_s: float) -> T:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=run, name="medmm-decode", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():  # the decoder keeps its thread; the caller moves on
        raise BadInputError(path, problem)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def check_jpeg2000(data: bytes, path: str | Path | None, where: str = "JPEG 2000 data") -> None:
    """Reject a JP2 file or J2K codestream whose structure is invalid (ISO/IEC 15444-1 annex I).

    JP2: boxes of length >= 8 (16 with the extended length), or 0 only for the last box, none
    running past the end, and a contiguous-codestream box ("jp2c"). J2K: starts with SOC + SIZ.
    """
    if data.startswith(J2K_SOC_SIZ):
        if len(data) < 4 + 38:
            raise BadInputError(path, f"{where}: J2K codestream of {len(data)} bytes is too short for its SIZ header")
        return
    if not data.startswith(JP2_SIGNATURE):
        raise BadInputError(path, f"{where}: neither a JP2 file nor a J2K codestream (starts {data[:8].hex()})")
    pos, seen = 0, []
    while pos < len(data):
        if len(data) - pos < 8:
            raise BadInputError(path, f"{where}: {len(data) - pos} stray bytes after the last JP2 box")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if length == 1:
            if len(data) - pos < 16:
                raise BadInputError(path, f"{where}: JP2 box {kind!r} at byte {pos} is cut inside its length")
            length = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif length == 0:
            if kind != b"jp2c":
                raise BadInputError(path, f"{where}: JP2 box {kind!r} at byte {pos} has length 0 (only a final codestream box may)")
            length = len(data) - pos
        if length < header or pos + length > len(data):
            raise BadInputError(path, f"{where}: JP2 box {kind!r} at byte {pos} has invalid length {length}")
        seen.append(kind)
        pos += length
    if b"jp2c" not in seen:
        raise BadInputError(path, f"{where}: JP2 file has no codestream box (jp2c)")
