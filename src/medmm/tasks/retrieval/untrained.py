"""Retrieval with a pretrained dual encoder, never trained: `medmm evaluate --model CLIP --task retrieval`.

`zero_shot_section` is the retrieval `model:` section the CLI builds (`Task.zero_shot_section`):
`clip_model` names the checkpoint (a folder with open_clip_config.json reads as `open_clip:`, any
other plain folder or hub name as `hf:`), no adapters, and the text side the dataset pairs with
its images. `pretrained_record` is the protocol's `pretrained_model` entry: which checkpoint,
its class and the sha256 of its weights, so a reported number names the exact weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medmm.errors import MedmmError

if TYPE_CHECKING:
    from medmm.tasks.retrieval.task import RetrievalTask

PREFIXES = ("hf:", "hf-hub:", "open_clip:")

# The text a dataset pairs with each image (its shipped retrieval config's text_field); any
# dataset not named here is matched by its caption (medpix2, roco, medpix2_covid_cxr).
TEXT_FIELDS: dict[str, str | list[str]] = {
    "vqa_rad": ["question", "answer"],
    "slake": ["question", "answer"],
    "iu_xray": "report",
}


def clip_model_name(pretrained: str) -> str:
    """`pretrained` as a `clip_model` value: kept when it carries a format prefix, else prefixed
    `open_clip:` for a folder in open_clip's format and `hf:` otherwise (a transformers folder or hub name)."""
    if pretrained.startswith(PREFIXES):
        return pretrained
    if (Path(pretrained) / "open_clip_config.json").is_file():
        return f"open_clip:{pretrained}"
    return f"hf:{pretrained}"


def zero_shot_section(section: dict[str, Any], pretrained: str, dataset: str | None, prompts: str | None) -> dict[str, Any]:
    """The retrieval `model:` section scoring `pretrained` untrained on `dataset`, made from
    `section` (a config's, or {}): clip_model set, LoRA adapters and the local (training) loss off,
    and the dataset's text field when the section names none."""
    if prompts is not None:
        raise MedmmError("task 'retrieval' reads no --prompts file: it ranks the dataset's own texts, "
                         "not class prompts")
    out = {**section, "clip_model": clip_model_name(pretrained), "text_lora": None, "image_lora": None,
           "local_loss_weight": 0.0}
    if "text_field" not in section and dataset in TEXT_FIELDS:
        out["text_field"] = TEXT_FIELDS[dataset]
    return out


def pretrained_record(task: RetrievalTask) -> dict[str, Any] | None:
    """The checkpoint behind a `clip_model` task (None for medmm's own towers): the name as
    configured, where it was read from, its class and the sha256 of each weights file."""
    src = getattr(task.model, "hf_source", None)
    if task.config.clip_model is None or not isinstance(src, dict):
        return None
    inner = getattr(task.model, "model", task.model)
    return {"clip_model": task.config.clip_model, "source": src.get("source"), "path": src.get("path"),
            "format": src.get("format", "transformers"), "class": type(inner).__name__,
            "weights_sha256": src.get("weights_sha256")}
