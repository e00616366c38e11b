"""Finding and loading the published weights of a model-based metric (torch imported lazily).

A metric's weights are named by a local file, a local folder holding the expected file, or a
Hugging Face Hub repository id (``owner/name``) holding it. The Hub is asked through
``huggingface_hub``, which honours ``HF_HUB_OFFLINE=1`` (then only its local cache is read).
Whatever is loaded is checksummed (sha256) so the score's provenance names the exact weights;
a spec may pin the checksum it expects, ``WHERE#sha256=HEX`` (see :func:`split_pin`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError


class WeightsNotFoundError(MedmmError):
    """The weights of a model-based metric are not where the user pointed."""


class WeightsLayoutError(MedmmError):
    """A weights file does not have the state-dict key layout the metric expects."""


class WeightsChecksumError(MedmmError):
    """A weights file's sha256 is not the one the user pinned."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def split_pin(spec: str) -> tuple[str, str | None]:
    """``"WHERE#sha256=HEX"`` -> ``("WHERE", "hex")``; a spec without a pin -> ``(spec, None)``."""
    where, sep, pin = spec.partition("#")
    if not sep:
        return spec, None
    algo, eq, digest = pin.partition("=")
    digest = digest.strip().lower()
    if algo.strip().lower() != "sha256" or not eq or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{spec!r}: a pin must read WHERE#sha256=<64 hex digits>")
    return where, digest


def check_pin(path: Path, actual: str, expected: str | None) -> None:
    """Raise WeightsChecksumError when a pinned sha256 differs from the file's."""
    if expected is not None and actual != expected:
        raise WeightsChecksumError(f"{path}: sha256 {actual} differs from the pinned {expected}")


def resolve_weights(spec: str, filename: str) -> Path:
    """The weights file that ``spec`` names: a file, a folder holding ``filename``, or a Hub repo id.

    Raises WeightsNotFoundError with one line saying where it looked.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / filename).is_file():
            return path / filename
        raise WeightsNotFoundError(f"no {filename} in folder {path.resolve()}")
    parts = spec.split("/")
    if len(parts) == 2 and all(parts) and not spec.startswith((".", "~")):
        import os

        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        try:
            return Path(hf_hub_download(repo_id=spec, filename=filename))
        except (LocalEntryNotFoundError, OSError) as exc:  # offline + not cached, or no network
            where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the Hugging Face Hub and its cache"
            raise WeightsNotFoundError(
                f"{filename} of {spec!r} not found: looked in {where}; {type(exc).__name__}") from exc
    raise WeightsNotFoundError(f"{spec!r} is not a file, a folder, or a Hub repo id 'owner/name' "
                               f"(looked for {path.resolve()})")


def load_state_dict(path: Path) -> dict[str, Any]:
    """The raw checkpoint at ``path``: safetensors, or a torch pickle read with weights_only=True."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or a pickle with code in it: refuse, say which
        raise WeightsLayoutError(f"{path}: cannot be read as weights-only torch checkpoint ({exc})") from exc
