"""VQA samples as instruction records (`VQATask.instruction_records`): the question asked about
the image, the reference answer as the assistant's reply (`medmm.tasks.chat`)."""

from __future__ import annotations

from typing import Any

from medmm.data.schema import Sample
from medmm.tasks.chat import chat_record

SYSTEM = ("You are a medical imaging assistant. Answer the question about the image in a few words; "
          "answer yes or no when the question is closed.")


def vqa_instruction_records(samples: list[Sample]) -> list[dict[str, Any]]:
    """One (system, question, answer) record per sample; a sample without either is an error."""
    return [chat_record(s, SYSTEM, s.text.get("question", ""), s.text.get("answer", "")) for s in samples]
