"""Image-text retrieval: a dual encoder (`task.py`), its search index (`index.py`), floors and
CLIP-style zero-shot classification (`zero_shot.py`).
"""
