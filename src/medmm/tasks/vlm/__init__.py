"""Generative vision-language models: VQA (`vqa_vlm`) and report generation (`report_vlm`) as
instruction following.

`task.py` holds the Tasks; prompts, instructions (records -> chat turns), answering (generation and
option scoring) and scoring (medmm's VQA and report metrics) each have their own module.
"""
