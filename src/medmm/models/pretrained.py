"""Weights files that carry their metadata and checksum, and strict loading.

One file holds the serialized state_dict (bytes), its sha256 and a JSON metadata record (labels
and their order, operating thresholds, input size/normalisation, tokenizer, licence, ...), so
weights never travel without what is needed to use them correctly (torchxrayvision habit).
Loading verifies the checksum and never drops keys silently.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medmm.errors import BadInputError, MedmmError
from medmm.fileio import atomic_open

FORMAT = "medmm-weights/1"
KNOWN_KEYS = ("architecture", "config", "labels", "thresholds", "input_spec", "tokenizer", "licence", "source", "notes")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _jsonable(metadata: dict[str, Any], path: Path) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as exc:
        raise BadInputError(path, f"weights metadata must be JSON-serialisable ({exc})") from exc


def input_spec_metadata(spec) -> dict[str, Any]:
    """An ImageInputSpec as the JSON dict stored in weights metadata (`ImageInputSpec.to_dict`;
    `ImageInputSpec.from_dict` reads it back)."""
    return spec.to_dict()


def save_weights(model: nn.Module | dict[str, Any], path: str | Path, metadata: dict[str, Any] | None = None) -> str:
    """Write `model`'s state_dict (or a state_dict) with metadata to `path`; returns the sha256.

    Recommended metadata keys: architecture, config (constructor kwargs), labels (in output order),
    thresholds, input_spec, tokenizer, licence. `labels` and `thresholds` must have equal length.
    """
    path = Path(path)
    meta = _jsonable(dict(metadata or {}), path)
    if meta.get("labels") is not None and meta.get("thresholds") is not None and len(meta["labels"]) != len(meta["thresholds"]):
        raise MedmmError(f"{path}: {len(meta['labels'])} labels but {len(meta['thresholds'])} thresholds")
    state = model.state_dict() if isinstance(model, nn.Module) else model
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in state.items()}, buf)
    data = buf.getvalue()
    digest = _sha256(data)
    meta["sha256"] = digest
    with atomic_open(path, "wb", fsync=True) as f:  # a crash never leaves a half-written weights file
        torch.save({"format": FORMAT, "metadata": json.dumps(meta), "sha256": digest, "state": data}, f)
    return digest


def load_weights(path: str | Path, sha256: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a weights file -> (state_dict, metadata), verifying its checksum.

    sha256: the expected checksum (e.g. published with the weights); the file's own recorded
    checksum is always verified. Raises BadInputError naming the file on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "weights file not found")
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInputError(path, f"not a readable weights file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise BadInputError(path, f"not a medmm weights file (expected format {FORMAT}); write it with save_weights")
    digest = _sha256(outer["state"])
    if digest != outer["sha256"]:
        raise BadInputError(path, f"checksum mismatch: content sha256 {digest} != recorded {outer['sha256']} (file corrupted?)")
    if sha256 is not None and sha256.lower() != digest:
        raise BadInputError(path, f"checksum mismatch: expected sha256 {sha256}, file has {digest}")
    state = torch.load(io.BytesIO(outer["state"]), map_location="cpu", weights_only=True)
    return state, json.loads(outer["metadata"])


def check_state_dict(model: nn.Module, state: dict[str, Any], source: str = "state_dict") -> None:
    """Raise MedmmError listing missing, unexpected and wrongly shaped keys (never load partially)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if torch.is_tensor(own[k]) and torch.is_tensor(state[k]) and own[k].shape != state[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys) - 20} more)" if len(keys) > 20 else "")
                parts.append(f"{len(keys)} {title}: {shown}")
        raise MedmmError(f"{source} does not match {type(model).__name__}: " + "; ".join(parts))


def load_into(model: nn.Module, path: str | Path, sha256: str | None = None, architecture: str | None = None) -> dict[str, Any]:
    """Load a weights file into `model` strictly; returns the metadata (also set as
    `model.weights_metadata`). `architecture`, when given, must match the file's metadata."""
    state, meta = load_weights(path, sha256)
    if architecture and meta.get("architecture") and meta["architecture"] != architecture:
        raise MedmmError(f"{path}: weights are for {meta['architecture']!r}, not {architecture!r}")
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)
    model.weights_metadata = meta
    return meta
