"""Metrics: text generation, clinical efficacy, classification, retrieval, VQA, segmentation, statistics. Torch-free where possible."""
