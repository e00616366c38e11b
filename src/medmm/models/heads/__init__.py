"""Task heads."""

from medmm.models.heads.classification import ClassificationHead, ProjectionHead

__all__ = ["ClassificationHead", "ProjectionHead"]
