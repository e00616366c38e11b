"""The image read as words, for VQA: a pretrained encoder's label heads (modality, plane,
location) turn an image into a short description ("ct, axial, abdomen") that is appended to the
question text, so the question encoder sees it beside the question.

Why: VQA-RAD has about 90 modality, 50 plane and 30 organ questions per 1,000 ("Is this a CT?",
"What plane is this?"). A pretrained encoder knows these attributes (`medmm pretrain-image`:
held-out modality 96%, plane 87%), but a classifier over fused features must relearn the link
between a feature direction and the words of the question from a few hundred examples. As text,
"is this a ct? [SEP] image: mr, axial, head" lets the frozen question encoder match the words.

The heads come from `medmm pretrain-image` (`<weights stem>.heads.pt`, tied to the encoder file
by its checksum) and are kept frozen; a trained run carries them in its own checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medmm.errors import MedmmError

# Label names as a question would say them (MedPix labels "MR", "XR"; VQA-RAD asks "MRI", "x-ray").
_SPOKEN = {"mr": "mri", "xr": "x-ray", "other view (see caption)": "other view", "multiple or montage": "multiple views"}


def spoken(label: str) -> str:
    """A label as a question would word it (lower case)."""
    low = label.lower()
    return _SPOKEN.get(low, low)


class ImageWords(nn.Module):
    """Frozen linear label heads over an image encoder's pooled feature -> words."""

    def __init__(self, label_spaces: dict[str, list[str]], in_dim: int):
        super().__init__()
        if not label_spaces:
            raise MedmmError("image words need at least one label space")
        self.label_spaces = {k: list(v) for k, v in label_spaces.items()}
        self.in_dim = in_dim
        self.heads = nn.ModuleDict({k: nn.Linear(in_dim, len(v)) for k, v in self.label_spaces.items()})
        for p in self.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, encoder_weights: str | Path, encoder_sha256: str | None = None) -> ImageWords:
        """The heads saved beside `encoder_weights` by `medmm pretrain-image`; they must belong to
        that encoder file (same checksum; pass `encoder_sha256` when the file was just loaded)."""
        from medmm.models.pretrained import load_weights
        from medmm.tasks.pretrain.export import heads_path

        path = heads_path(encoder_weights)
        if not path.is_file():
            raise MedmmError(f"{path}: no label heads beside {encoder_weights} (model.image.attributes needs the "
                             "heads that `medmm pretrain-image` writes since 2026-11-28; re-run it)")
        state, meta = load_weights(path)
        if encoder_sha256 is None:
            encoder_sha256 = load_weights(encoder_weights)[1].get("sha256")
        if meta.get("encoder_sha256") != encoder_sha256:
            raise MedmmError(f"{path}: the heads belong to encoder {meta.get('encoder_sha256')}, "
                             f"not to {encoder_weights} ({encoder_sha256})")
        words = cls(meta["label_spaces"], int(meta["config"]["in_dim"]))
        words.heads.load_state_dict(state, strict=True)
        return words

    def state(self) -> dict[str, Any]:
        """JSON-able shape of the heads (their weights travel in the task's state_dict)."""
        return {"label_spaces": self.label_spaces, "in_dim": self.in_dim}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ImageWords:
        """Empty heads of the saved shape, ready for the task's state_dict."""
        return cls(state["label_spaces"], int(state["in_dim"]))

    @torch.no_grad()
    def describe(self, pooled: torch.Tensor) -> list[str]:
        """One description per row of (B, in_dim) pooled features: the most probable label of
        each head as spoken (`spoken`), comma-separated, in the heads' order."""
        picks = {k: h(pooled.float()).argmax(-1).tolist() for k, h in self.heads.items()}
        return [", ".join(spoken(self.label_spaces[k][picks[k][i]]) for k in self.heads) for i in range(pooled.shape[0])]
