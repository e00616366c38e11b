"""Diagnosis: image + clinical text -> labels (multi-class, multi-label, binary).

`task.py` holds the Task (model, loss, predictions, metrics); `floors.py` its trivial baselines.
"""
