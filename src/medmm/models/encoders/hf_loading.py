"""Loading Hugging Face models by hub name, local directory or HF cache, with a clear error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from medmm.errors import MedmmError, require
from medmm.fileio import sha256_file

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def hf_offline() -> bool:
    """True when the user asked transformers not to touch the network."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("0", "", "false", "False")


def load_hf(auto_class: str, name_or_dir: str, **kw: Any):
    """`transformers.<auto_class>.from_pretrained(name_or_dir)` or a MedmmError saying what is missing.

    A local directory must hold config.json (+ weights); a hub name is fetched online or read from
    the HF cache when HF_HUB_OFFLINE=1.
    """
    transformers = require("transformers", "train", "Hugging Face encoders")
    cls = getattr(transformers, auto_class)
    path = Path(name_or_dir).expanduser()
    looks_local = path.exists() or name_or_dir.startswith((".", "/", "~"))
    if looks_local and not (path / "config.json").is_file() and auto_class != "AutoTokenizer":
        raise MedmmError(f"{path}: not a Hugging Face model directory (config.json missing)")
    if hf_offline() and not looks_local:
        # huggingface_hub reads HF_HUB_OFFLINE once at import; honour a later setting too.
        kw.setdefault("local_files_only", True)
    try:
        return cls.from_pretrained(str(path) if looks_local else name_or_dir, **kw)
    except (OSError, ValueError) as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if looks_local:
            raise MedmmError(f"{path}: could not load {auto_class} from this local directory: {cause}") from exc
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE=1 is set" if hf_offline() else "the download failed (no network?)"
        raise MedmmError(
            f"Hugging Face model {name_or_dir!r} ({auto_class}) not found: no local directory {str(path)!r}, "
            f"not in the Hugging Face cache {constants.HF_HUB_CACHE} and {why}; fetch it once with "
            f"`huggingface-cli download {name_or_dir}` or pass a local directory (cause: {cause})"
        ) from exc


def resolve_dir(name_or_dir: str) -> Path | None:
    """The folder holding the files of a local model or of a hub model in the HF cache (None if absent)."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_dir, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or not a repo id): no folder to hash, said by the caller
        return None


def source_record(name_or_dir: str) -> dict[str, Any]:
    """Provenance of a loaded HF model: its name, resolved folder and the sha256 of each weights file."""
    folder = resolve_dir(name_or_dir)
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES) if folder else []
    return {
        "source": name_or_dir,
        "path": str(folder.resolve()) if folder else None,
        "weights_sha256": {p.name: sha256_file(p.resolve()) for p in files},
    }


def pretrained_sources(module: nn.Module) -> list[dict[str, Any]]:
    """The `hf_source` records of every Hugging Face model inside `module` (for run provenance)."""
    seen: dict[str, dict[str, Any]] = {}
    for m in module.modules():
        rec = getattr(m, "hf_source", None)
        if isinstance(rec, dict):
            seen.setdefault(rec["source"], rec)
    return list(seen.values())
