"""Image-encoder pretraining as an engine task (`pretrain_image`, task.py) for the other tasks'
encoders, and the export of the trained encoder (export.py); docs/pretraining.md."""
