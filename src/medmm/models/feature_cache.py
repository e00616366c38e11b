"""An on-disk cache of a frozen encoder's features, shared by processes and bounded in bytes.

A frozen encoder in eval mode maps the same input to the same features every epoch and every
run, so computing them again is wasted work (for VQA and report generation on a frozen image
tower, most of a step). Entries are keyed by

* the encoder's identity (`encoder_identity`): a sha256 of its class, every parameter and buffer
  (names, dtypes, shapes, bytes), the preprocessing that builds its input (``input_spec``: size,
  channels, mean/std, plus anything the caller adds), the device type and this file's FORMAT;
* the image's checksum (`image_checksum`): sha256 of the file bytes, or of an in-memory array's
  dtype, shape and pixels (packed shards' images included).

Changing a weight, the input size or normalisation, or one pixel gives another key, never stale
features. Layout: ``ROOT/<encoder id[:24]>/<image sha[:2]>/<image sha>.feat``.

Several data-loader workers, DDP ranks or runs may share ROOT: each entry is written to a unique
temporary file and renamed into place (a reader sees a whole entry or none), and a reader checks
magic bytes, both keys and a blake2b digest of the payload, so a corrupted or truncated entry is
counted, deleted and recomputed, never used and never a crash. Size is bounded per ROOT
(``max_bytes``, default ``MEDMM_FEATURE_CACHE_MB`` or 10 GB): each writer measures the root before
its own writes could exceed the bound and after every 5% of it written, and then evicts the least
recently used entries (a hit refreshes an entry's mtime) down to 90%; with P processes writing at
once the root can briefly hold up to (1 + P/20) x max_bytes. A failed write
(disk full, read-only) is counted and logged once; training goes on uncached.

    cache = open_feature_cache(encoder)                 # None unless MEDMM_FEATURE_CACHE or root= is set
    keys = [image_checksum(s.images[0]) for s in samples]           # in collate (loader workers)
    feats = cached_image_features(cache, encoder, images, keys)     # ImageFeatures(pooled, tokens)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medmm import fileio
from medmm.data.schema import ImageRef
from medmm.errors import BadInputError, MedmmError
from medmm.models.encoders.base import ImageFeatures

log = logging.getLogger("medmm.models")

FORMAT = "medmm-feature-cache/1"  # bump when the entry layout or the preprocessing code changes
MAGIC = b"MMFC\x01"
_HEAD = struct.Struct("<5sI")  # magic, length of the JSON header that follows


def state_checksum(module: nn.Module) -> str:
    """sha256 of a module's state: every parameter and buffer's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _spec_json(spec: Any) -> dict[str, Any] | None:
    # `to_dict` lists a processor's resize rule only when a spec has one, so the keys of caches
    # written before those fields existed still match.
    if hasattr(spec, "to_dict"):
        return spec.to_dict()
    return asdict(spec) if is_dataclass(spec) and not isinstance(spec, type) else None


def encoder_identity(encoder: nn.Module, preprocessing: Mapping[str, Any] | None = None) -> str:
    """The key part naming an encoder: class, weights checksum, preprocessing, device type, FORMAT.

    `preprocessing`: what else decides the encoder's input (defaults to nothing beyond the
    encoder's ``input_spec``, which is always included when the encoder has one)."""
    spec = getattr(encoder, "input_spec", None)
    params = next(iter(encoder.parameters()), None)
    ident = {
        "format": FORMAT,
        "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "weights": state_checksum(encoder),
        "input_spec": _spec_json(spec),
        "preprocessing": dict(preprocessing or {}),
        "device": params.device.type if params is not None else "cpu",
    }
    try:
        blob = json.dumps(ident, sort_keys=True, default=list)
    except TypeError as exc:
        raise MedmmError(f"feature cache: preprocessing must be JSON-serialisable ({exc})") from exc
    return hashlib.sha256(blob.encode()).hexdigest()


def image_checksum(ref: ImageRef) -> str:
    """sha256 of an image's source: the file's bytes, or an in-memory array's dtype, shape and pixels."""
    h = hashlib.sha256()
    if ref.array is not None:
        arr = np.ascontiguousarray(np.asarray(ref.array))
        h.update(f"array {arr.dtype.str} {list(arr.shape)}\n".encode())
        h.update(arr.tobytes())
        return h.hexdigest()
    if ref.path is None:
        raise BadInputError(None, "image has neither a path nor an array: nothing to checksum")
    try:
        with open(ref.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise BadInputError(ref.path, f"cannot read image to checksum it: {exc.strerror or exc}") from exc
    return h.hexdigest()


@dataclass
class CacheStats:
    """Counts of this process's cache traffic (not shared between processes)."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0  # entries that failed their checks: deleted, recomputed
    writes: int = 0
    write_errors: int = 0
    evicted: int = 0
    notes: list[str] = field(default_factory=list)  # the first corrupt/write-error messages


class FeatureCache:
    """Feature tensors by image checksum for one encoder identity, in files under `root`."""

    def __init__(self, root: str | Path, encoder_id: str, max_bytes: int | None = None):
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("MEDMM_FEATURE_CACHE_MB", "10240")) * 2**20)
        if max_bytes <= 0:
            raise MedmmError(f"feature cache: max_bytes must be positive, got {max_bytes}")
        self.root, self.encoder_id, self.max_bytes = Path(root), encoder_id, max_bytes
        self.dir = self.root / encoder_id[:24]
        self.stats = CacheStats()
        self._scanned: int | None = None  # bytes of the whole root at the last scan
        self._written = 0  # bytes this process wrote since

    def path(self, image_sha: str) -> Path:
        """Where the entry of one image lives."""
        if len(image_sha) < 8 or not all(c in "0123456789abcdef" for c in image_sha):
            raise MedmmError(f"feature cache: image key must be a hex checksum, got {image_sha!r}")
        return self.dir / image_sha[:2] / f"{image_sha}.feat"

    # ------------------------------------------------------------------ read
    def get(self, image_sha: str) -> dict[str, torch.Tensor] | None:
        """The cached tensors of one image, or None (a miss; a corrupt entry is deleted and counted)."""
        p = self.path(image_sha)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except OSError as exc:
            return self._corrupt(p, f"unreadable: {exc}")
        try:
            tensors = _decode(data, self.encoder_id, image_sha)
        except ValueError as exc:
            return self._corrupt(p, str(exc))
        self.stats.hits += 1
        # Recently used: eviction takes the oldest mtimes first. Evicted meanwhile by another
        # process: the tensors read are still whole.
        with contextlib.suppress(OSError):
            os.utime(p)
        return tensors

    def _corrupt(self, p: Path, why: str) -> None:
        self.stats.corrupt += 1
        self.stats.misses += 1
        if len(self.stats.notes) < 5:
            self.stats.notes.append(f"{p}: {why}")
        log.warning("feature cache: %s: %s; deleted, features are recomputed", p, why)
        with contextlib.suppress(OSError):  # already gone (another process), or not a file
            p.unlink()
        return None

    # ------------------------------------------------------------------ write
    def put(self, image_sha: str, tensors: Mapping[str, torch.Tensor]) -> None:
        """Store one image's tensors atomically; evict old entries when the root is over its bound."""
        p = self.path(image_sha)
        data = _encode(tensors, self.encoder_id, image_sha)
        try:
            # atomic, one temporary name per process: readers see the old entry, none, or this whole one
            fileio.write_bytes(p, data, unique=True)
        except OSError as exc:
            self.stats.write_errors += 1
            if self.stats.write_errors == 1:
                self.stats.notes.append(f"{p}: write failed: {exc}")
                log.warning("feature cache: cannot write %s (%s); going on without caching new features", p, exc)
            return
        self.stats.writes += 1
        self._written += len(data)
        # Other processes write too: the root is measured again (one stat per entry) before this
        # process's own writes could take it over the bound, and after every 5% of it written.
        if self._scanned is None or self._scanned + self._written > self.max_bytes or self._written > self.max_bytes // 20:
            self._scan_and_evict()

    def _scan_and_evict(self) -> None:
        """Measure the root; over max_bytes, delete least recently used entries down to 90% of it."""
        entries, now = [], time.time()
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue  # evicted by another process meanwhile
                if name.endswith(".feat"):
                    entries.append((st.st_mtime, st.st_size, p))
                elif name.startswith(".") and fileio.TEMP_SUFFIX in name and now - st.st_mtime > 3600:
                    p.unlink(missing_ok=True)  # left by a writer killed mid-write
        total = sum(size for _, size, _ in entries)
        if total > self.max_bytes:
            for _, size, p in sorted(entries):
                if total <= int(self.max_bytes * 0.9):
                    break
                with contextlib.suppress(OSError):  # another process may have taken it already
                    p.unlink()
                total -= size
                self.stats.evicted += 1
        self._scanned, self._written = total, 0


def _encode(tensors: Mapping[str, torch.Tensor], encoder_id: str, image_sha: str) -> bytes:
    """MAGIC, header length, JSON header (keys, tensor layout, payload digest), raw payload."""
    layout, chunks = [], []
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        layout.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "bytes": len(raw)})
        chunks.append(raw)
    payload = b"".join(chunks)
    head = json.dumps({"encoder": encoder_id, "image": image_sha, "tensors": layout,
                       "digest": _digest(layout, payload)}).encode()
    return _HEAD.pack(MAGIC, len(head)) + head + payload


def _digest(layout: list[dict[str, Any]], payload: bytes) -> str:
    """blake2b of the tensor layout and the payload: a changed shape is as corrupt as a changed byte."""
    h = hashlib.blake2b(json.dumps(layout, sort_keys=True).encode(), digest_size=16)
    h.update(payload)
    return h.hexdigest()


def _decode(data: bytes, encoder_id: str, image_sha: str) -> dict[str, torch.Tensor]:
    """The tensors of one entry; ValueError saying what is wrong with it."""
    if len(data) < _HEAD.size or data[:5] != MAGIC:
        raise ValueError("not a feature cache entry (bad magic bytes or truncated)")
    _, n = _HEAD.unpack_from(data)
    try:
        head = json.loads(data[_HEAD.size : _HEAD.size + n])
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"header is not JSON ({exc})") from exc
    if not isinstance(head, dict) or head.get("encoder") != encoder_id or head.get("image") != image_sha:
        raise ValueError("entry belongs to another encoder or image")
    payload, layout = data[_HEAD.size + n :], head.get("tensors")
    try:
        if _digest(layout, payload) != head.get("digest"):
            raise ValueError("digest differs (truncated or corrupted)")
        out, pos = {}, 0
        for t in layout:
            dtype = getattr(torch, t["dtype"])
            raw = payload[pos : pos + t["bytes"]]
            pos += t["bytes"]
            out[t["name"]] = (torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(t["shape"])
                              if raw else torch.empty(t["shape"], dtype=dtype))
    except (TypeError, KeyError, AttributeError, RuntimeError) as exc:  # a header of the wrong shape
        raise ValueError(f"unusable header ({type(exc).__name__}: {exc})") from exc
    if pos != len(payload):
        raise ValueError(f"payload is {len(payload)} bytes, its tensors take {pos}")
    return out


def open_feature_cache(
    encoder: nn.Module,
    preprocessing: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    max_bytes: int | None = None,
) -> FeatureCache | None:
    """The on-disk cache for a frozen `encoder`, under `root` or ``$MEDMM_FEATURE_CACHE``; None
    when neither is set (features are then computed as before). Call it after the encoder's
    weights are final (loaded, frozen): the identity is taken from the weights now."""
    root = root if root is not None else os.environ.get("MEDMM_FEATURE_CACHE") or None
    if root is None:
        return None
    return FeatureCache(root, encoder_identity(encoder, preprocessing), max_bytes)


def cached_features(
    cache: FeatureCache | None,
    keys: Sequence[str | None],
    compute: Callable[[list[int]], Sequence[Mapping[str, torch.Tensor]]],
) -> list[dict[str, torch.Tensor]]:
    """Per item, its tensors: from `cache` by key, else `compute(positions of the misses)` (one
    dict per miss, stored under its key). A None key or cache means computed, not stored."""
    rows: list[dict[str, torch.Tensor] | None] = [None] * len(keys)
    if cache is not None:
        for i, k in enumerate(keys):
            if k is not None:
                rows[i] = cache.get(k)
    todo = [i for i, r in enumerate(rows) if r is None]
    if todo:
        fresh = compute(todo)
        if len(fresh) != len(todo):
            raise MedmmError(f"feature cache: compute returned {len(fresh)} items for {len(todo)} inputs")
        for i, feats in zip(todo, fresh, strict=True):
            rows[i] = {name: t.detach().cpu() for name, t in feats.items()}
            if cache is not None and keys[i] is not None:
                cache.put(keys[i], rows[i])
    return rows  # type: ignore[return-value]


@torch.no_grad()
def cached_image_features(
    cache: FeatureCache | None, encoder: nn.Module, images: torch.Tensor, keys: Sequence[str | None]
) -> ImageFeatures:
    """`encoder(images)`'s pooled and token features, read from `cache` where present (a frozen
    encoder in eval mode only); the result is on the images' device, as the encoder's would be."""
    if encoder.training:
        raise MedmmError("feature cache: the encoder is in training mode; only a frozen encoder in eval mode may be cached")
    if len(keys) != len(images):
        raise MedmmError(f"feature cache: {len(keys)} keys for {len(images)} images")

    def compute(idx: list[int]) -> list[dict[str, torch.Tensor]]:
        f = encoder(images[idx])
        return [{"pooled": f.pooled[j], "tokens": f.tokens[j]} for j in range(len(idx))]

    rows = cached_features(cache, keys, compute)
    dev = images.device
    return ImageFeatures(pooled=torch.stack([r["pooled"] for r in rows]).to(dev),
                         tokens=torch.stack([r["tokens"] for r in rows]).to(dev))
