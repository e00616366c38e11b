"""Report-generation samples as instruction records (`ReportGenerationTask.instruction_records`):
a request for the text the task generates (its `text_field`), the sample's text as the reply
(`medmm.tasks.chat`). Only the first view is referenced (records carry one image path)."""

from __future__ import annotations

from typing import Any

from medmm.data.schema import Sample
from medmm.tasks.chat import chat_record

SYSTEM = "You are a radiologist. Describe what the medical image shows in the style of a radiology report."
# what a request calls each generated field; another field is named as it is
WHAT = {"report": "the radiology report", "findings": "the findings section of the radiology report",
        "impression": "the impression of the radiology report", "caption": "a caption"}


def report_instruction_records(samples: list[Sample], text_field: str) -> list[dict[str, Any]]:
    """One (system, request, text) record per sample; a sample without the text is an error."""
    user = f"Write {WHAT.get(text_field, f'the {text_field}')} for this image."
    return [chat_record(s, SYSTEM, user, s.text.get(text_field) or "") for s in samples]
