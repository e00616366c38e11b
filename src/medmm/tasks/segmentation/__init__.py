"""Text-guided segmentation: image + text -> mask (`task.py`).
"""
