"""Generative vision-language model tasks (`vqa_vlm`, `report_vlm`): see `medmm.tasks.vlm.task`."""

from medmm.tasks.vlm.task import ReportVLMTask, VLMTask, VQAVLMTask

__all__ = ["ReportVLMTask", "VLMTask", "VQAVLMTask"]
