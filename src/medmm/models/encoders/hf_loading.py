"""Loading Hugging Face models by hub name, local directory or HF cache, with a clear error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError, require


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
        if looks_local:
            raise MedmmError(f"{path}: could not load {auto_class} from this directory: {exc}") from exc
        where = (
            "HF_HUB_OFFLINE=1 is set and it is not in the Hugging Face cache"
            if hf_offline()
            else "it could not be downloaded (no network?) and it is not in the Hugging Face cache"
        )
        raise MedmmError(
            f"Hugging Face model {name_or_dir!r} ({auto_class}) is not available: {where}. "
            f"Fetch it once where there is network (`huggingface-cli download {name_or_dir}`) "
            f"or pass a local directory holding config.json and the weights. Cause: {exc}"
        ) from exc
