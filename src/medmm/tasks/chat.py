"""Instruction (chat) records: the one shape every task's `Task.instruction_records` hook returns,
for training or prompting generative vision-language models on a task's data.

    {"id": "3",
     "image": ".../vqa_rad_sample/VQA_RAD Image Folder/synpic28602.jpg",     # None: no image
     "messages": [{"role": "system", "content": "You are ..."},
                  {"role": "user", "content": "What type of imaging does this not represent?"},
                  {"role": "assistant", "content": "ultrasound"}]}

The image is referenced by its file path (never embedded); the assistant message is the sample's
reference (answer, report, label, caption), so a sample without one is an error naming it.
"""

from __future__ import annotations

from typing import Any

from medmm.data.schema import Sample
from medmm.errors import BadInputError

ROLES = ("system", "user", "assistant")


def image_path(sample: Sample) -> str | None:
    """The sample's first image as a file path; None when it has no image. An image that exists
    only in memory cannot be referenced and is an error."""
    if not sample.images:
        return None
    path = sample.images[0].path
    if path is None:
        raise BadInputError(sample.id, "its image is an in-memory array; instruction records reference images by file path")
    return path


def chat_record(sample: Sample, system: str, user: str, assistant: str) -> dict[str, Any]:
    """One instruction record: a system, a user and an assistant message about the sample's image."""
    for role, text in zip(ROLES, (system, user, assistant), strict=True):
        if not isinstance(text, str) or not text.strip():
            raise BadInputError(sample.id, f"no text for the {role} message of its instruction record")
    return {"id": str(sample.id), "image": image_path(sample),
            "messages": [{"role": r, "content": t.strip()} for r, t in zip(ROLES, (system, user, assistant), strict=True)]}
