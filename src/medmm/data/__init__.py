"""Data: the Sample record, public dataset loaders, image I/O, splits. Torch-free."""

from medmm.data.registry import SampleSet, list_datasets, load_dataset, register_dataset
from medmm.data.schema import Box, ImageRef, LabelState, MaskRef, Sample

__all__ = [
    "Box",
    "ImageRef",
    "LabelState",
    "MaskRef",
    "Sample",
    "SampleSet",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
