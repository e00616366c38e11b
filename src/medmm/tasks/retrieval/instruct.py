"""Retrieval pairs as instruction records (`RetrievalTask.instruction_records`): the text paired
with the image (its `text_field`s joined, as the dual encoder reads it) as the reply to a request
to describe the image, i.e. captioning data (`medmm.tasks.chat`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medmm.data.schema import Sample
from medmm.tasks.chat import chat_record

SYSTEM = "You are a medical imaging assistant. Describe the medical image briefly."
USER = "Describe this image."


def retrieval_instruction_records(samples: list[Sample], text_of: Callable[[Sample], str]) -> list[dict[str, Any]]:
    """One (system, request, paired text) record per sample; a sample without text is an error."""
    return [chat_record(s, SYSTEM, USER, text_of(s)) for s in samples]
