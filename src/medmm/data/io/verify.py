"""Decode every image of a loaded dataset once, to find bad files before a long run.

Loaders only check that image files exist (decoding thousands of images at load time would
make every command slow); `verify_images` is the explicit, slower check that decodes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medmm.data.registry import ErrorPolicy, SampleSet
from medmm.data.schema import Sample
from medmm.errors import BadInputError


def verify_samples(samples: list[Sample], errors: ErrorPolicy) -> list[Sample]:
    """The samples whose images and masks all decode with `read_image`; each bad one goes to `errors`."""
    from medmm.data.io.image import read_image

    good: list[Sample] = []
    for sample in samples:
        try:
            for mask in sample.masks:
                if mask.path is not None:
                    read_image(mask.path)
            for ref in sample.images:
                if ref.path is not None:
                    read_image(ref.path)
                elif np.asarray(ref.array).ndim not in (2, 3):
                    raise BadInputError(None, f"sample {sample.id}: in-memory image has shape {np.shape(ref.array)}")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        good.append(sample)
    return good


def verify_headers(samples: Sequence[Sample], errors: ErrorPolicy) -> Sequence[Sample]:
    """The samples whose image and mask files pass `check_image_header` (cheap: no decoding).

    Each sample with a missing, empty or non-image file (a text file named .jpg) goes to
    `errors` once, naming its first bad file. A list gives a new list; a lazy sequence with
    ``take(indices)`` (packed shards' `PackedSamples`, whose pixels are inside checked shards)
    is given back itself, or its ``take`` of the good ones, so it is not materialised.
    """
    from medmm.data.io.image import check_image_header

    keep: list[int] = []
    for i, sample in enumerate(samples):
        try:
            for path in [*(im.path for im in sample.images), *(m.path for m in sample.masks)]:
                if path is not None:
                    check_image_header(path)
        except BadInputError as exc:
            errors.handle(exc)
            continue
        keep.append(i)
    take = getattr(samples, "take", None)
    if callable(take):
        return samples if len(keep) == len(samples) else take(keep)
    return [samples[i] for i in keep]


def verify_images(sample_set: SampleSet, *, skip_bad: bool = True) -> SampleSet:
    """A copy of `sample_set` without samples whose images fail to decode (counted in ``skipped``).

    With ``skip_bad=False`` the first bad image raises its BadInputError instead.
    """
    policy = ErrorPolicy(skip_bad=skip_bad)
    good = verify_samples(list(sample_set.samples), policy)
    return SampleSet(
        name=sample_set.name,
        split=sample_set.split,
        root=sample_set.root,
        samples=good,
        skipped=[*sample_set.skipped, *policy.skipped],
    )
