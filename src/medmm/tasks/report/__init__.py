"""Report generation: image (+ optional retrieved context, grounding) -> free-text report.

`task.py` holds the Task; `config.py` its config; decoding, MBR, SCST, grounding, retrieval-augmented
inputs and scoring each have their own module.
"""
