"""Zero-shot diagnosis: a pretrained CLIP-style dual encoder classifies images by class prompts.

`model.zero_shot.pretrained` (a CLIPModel or SiglipModel checkpoint: hub name or folder) turns the
diagnosis task into a classifier that is never trained: each class is described by the prompts of a
prompt set (`prompt_sets`), the prompt embeddings of a class are averaged (CLIP's ensembling,
`medmm.models.zero_shot`), and an image's logits are the model's logit scale times its cosine with
each class embedding; probabilities are their softmax over the classes. Everything after the logits
(records, metrics with CIs, floors, protocol) is the diagnosis task's own.

`medmm evaluate --model NAME --task diagnosis --data ROOT --dataset DS` builds this section through
`zero_shot_section` (the Task hook the CLI calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medmm.data.schema import Sample
from medmm.errors import BadInputError, MedmmError
from medmm.models.multimodal import ClassifierOutput
from medmm.models.zero_shot import ensemble_class_embeddings
from medmm.tasks.diagnosis.config import DiagnosisConfig
from medmm.tasks.diagnosis.prompt_sets import PromptSet, prompt_set_for, resolve_classes

SCORING = ("logits = the checkpoint's logit scale x cosine(image embedding, class embedding); probabilities = "
           "softmax over the classes (a SigLIP checkpoint's logit bias is the same for every class and cancels)")
ENSEMBLING = ("each prompt embedded and L2-normalised, a class's prompt embeddings averaged and re-normalised "
              "(CLIP prompt ensembling)")


def load_dual_encoder(name_or_dir: str) -> nn.Module:
    """The pretrained CLIP-family dual encoder (`medmm.models.encoders.hf_dual`); a test may replace it."""
    from medmm.models.encoders.hf_dual import HFClipDualEncoder

    return HFClipDualEncoder(name_or_dir, learn_temperature=False)


class ZeroShotClassifier(nn.Module):
    """`forward(images, input_ids, attention_mask) -> ClassifierOutput` of a dual encoder and class prompts.

    encoder: `encode_image(images) -> (L2-normalised (B, E), ...)`, `encode_texts(list[str])` or
    `tokenizer` + `encode_text`, `temperature_scale()` and `input_spec` (HFClipDualEncoder).
    """

    def __init__(self, encoder: nn.Module, prompts: dict[str, list[str]]):
        super().__init__()
        self.encoder = encoder
        self.text_encoder = None  # clinical text is not an input: the classes are described by prompts
        encoder.eval()
        for p in encoder.parameters():
            p.requires_grad_(False)
        self.classes, emb = ensemble_class_embeddings(self._encode_texts, prompts)
        self.register_buffer("class_embeddings", emb, persistent=False)

    @property
    def image_encoder(self) -> nn.Module:
        """The dual encoder: its `input_spec` sets the image preprocessing."""
        return self.encoder

    @torch.no_grad()
    def _encode_texts(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        enc = self.encoder
        if hasattr(enc, "encode_texts"):
            return enc.encode_texts(texts)
        # SigLIP was trained on texts padded to its full length: tokenise them the same way
        siglip = getattr(getattr(getattr(enc, "model", None), "config", None), "model_type", "") == "siglip"
        out = []
        for i in range(0, len(texts), batch_size):
            tok = enc.tokenizer(texts[i:i + batch_size], padding="max_length" if siglip else True, truncation=True,
                                max_length=enc.max_length, return_tensors="pt")
            out.append(enc.encode_text(tok["input_ids"], tok["attention_mask"])[0])
        return torch.cat(out)

    def logit_scale(self) -> float:
        return float(self.encoder.temperature_scale())

    def forward(self, images: torch.Tensor, input_ids: Any = None, attention_mask: Any = None) -> ClassifierOutput:
        image_emb = self.encoder.encode_image(images)[0]
        logits = self.encoder.temperature_scale() * image_emb.float() @ self.class_embeddings.to(image_emb.device).t()
        return ClassifierOutput(logits=logits, aux_loss=logits.new_zeros(()))


@dataclass
class ZeroShotDiagnosis:
    """The zero-shot part of a diagnosis task: its prompt set, classes and classifier."""

    prompt_set: PromptSet
    classes: list[str]
    model: ZeroShotClassifier
    pretrained: str

    @classmethod
    def from_config(cls, c: DiagnosisConfig) -> ZeroShotDiagnosis:
        """Load the prompt set and the dual encoder named by `c.zero_shot`; the classes in the dataset's order."""
        if c.findings is not None:
            raise MedmmError("model.zero_shot is for multi-class diagnosis (a target), not findings")
        z = c.zero_shot
        ps = prompt_set_for(z.dataset, z.prompts)
        classes = resolve_classes(ps, z.dataset, c.target, c.classes)
        prompts = ps.prompts()
        model = ZeroShotClassifier(load_dual_encoder(z.pretrained), {k: prompts[k] for k in classes})
        return cls(ps, classes, model, z.pretrained)

    def check_label(self, sample: Sample, label: str | None) -> None:
        """A labelled sample whose class has no prompts cannot be scored: skipped, and counted with the reason."""
        if label is not None and label not in self.classes:
            raise BadInputError(sample.id, f"class {label!r} is not in the zero-shot prompt set ({self.prompt_set.source})")

    def record(self) -> dict[str, Any]:
        """The protocol's `zero_shot` entry: model source and checksums, prompts, how scores are made."""
        src = getattr(self.model.encoder, "hf_source", None) or {}
        return {
            "method": "CLIP-style zero-shot classification by class prompts; no training, no validation data used",
            "model": {"pretrained": self.pretrained, "source": src.get("source"), "path": src.get("path"),
                      "class": type(getattr(self.model.encoder, "model", self.model.encoder)).__name__,
                      "weights_sha256": src.get("weights_sha256")},
            "prompt_set": self.prompt_set.record(self.classes),
            "ensembling": ENSEMBLING,
            "scoring": SCORING,
            "logit_scale": self.model.logit_scale(),
            "classes": list(self.classes),
        }


def zero_shot_section(section: dict[str, Any], pretrained: str, dataset: str | None, prompts: str | None) -> dict[str, Any]:
    """The diagnosis `model:` section that scores `pretrained` zero-shot on `dataset` (`Task.zero_shot_section`):
    `zero_shot` set, and the target of the prompt set when the section names none."""
    out = dict(section)
    zs = dict(out.get("zero_shot") or {})
    zs.update(pretrained=pretrained, dataset=dataset)
    if prompts is not None:
        zs["prompts"] = prompts
    out["zero_shot"] = zs
    if "target" not in out and "findings" not in out:
        target = prompt_set_for(dataset, zs.get("prompts")).target
        if target is not None:
            out["target"] = target
    return out
