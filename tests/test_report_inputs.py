"""StudyInputs: a study's preprocessed views, retrieval keys and report labels, and their caches."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medmm.data.schema import ImageRef, LabelState, Sample
from medmm.data.transforms import ImageInputSpec
from medmm.errors import BadInputError
from medmm.knowledge.report_store import thumbnail_embedding
from medmm.tasks.report.inputs import StudyInputs


def _png(path, seed: int) -> str:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 20), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture()
def study(tmp_path) -> Sample:
    paths = [_png(tmp_path / f"v{i}.png", i) for i in range(3)]
    return Sample(id="s1", dataset="t", split="train", images=[ImageRef(path=p) for p in paths], text={"report": "x"})


def _inputs(max_images: int = 2, channels: int = 1) -> StudyInputs:
    return StudyInputs(max_images, ImageInputSpec(size=16, in_channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels))


def test_views_are_preprocessed_capped_and_cached_by_path(study):
    inputs = _inputs()
    views = inputs.views(study)
    assert len(views) == 2 and views[0].shape == (1, 16, 16) and views[0].dtype == np.float32
    assert not np.array_equal(views[0], views[1])
    assert inputs.views(study)[0] is views[0]  # second read: the cached array
    assert _inputs(channels=3).views(study)[0].shape == (3, 16, 16)
    inputs.clear_images()
    assert inputs.views(study)[0] is not views[0]


def test_in_memory_images_are_never_cached():
    arr = np.zeros((8, 8), np.uint8)
    s = Sample(id="m", dataset="t", split="test", images=[ImageRef(array=arr)])
    inputs = _inputs()
    first = inputs.views(s)[0]
    arr[:] = 255  # same id, other pixels: must be read again
    assert not np.array_equal(inputs.views(s)[0], first)
    t0 = inputs.thumbnail(s)
    arr[:4] = 0
    assert not np.array_equal(inputs.thumbnail(s), t0)


def test_thumbnail_and_key_come_from_the_raw_views(study):
    inputs = _inputs()
    raw = inputs.arrays(study)
    assert len(raw) == 2 and raw[0].shape == (24, 20)
    assert np.array_equal(inputs.thumbnail(study), thumbnail_embedding(raw))

    class CountingKey:
        calls = 0

        def embed(self, arrays):
            CountingKey.calls += 1
            return np.full(4, float(len(arrays)), np.float32)

    key = CountingKey()
    assert inputs.key(study, key).tolist() == [2.0] * 4
    inputs.key(study, key)
    assert CountingKey.calls == 1  # cached by study id + image paths
    inputs.clear_images()
    inputs.key(study, key)
    assert CountingKey.calls == 2


def test_study_without_image_is_bad_input():
    s = Sample(id="none", dataset="t", split="test", text={"report": "clear"})
    inputs = _inputs()
    for read in (inputs.views, inputs.arrays, inputs.thumbnail):
        with pytest.raises(BadInputError, match="none"):
            read(s)


def test_report_labels_are_cached_by_study_id():
    inputs = _inputs()
    labels = inputs.labels("s1", "Small right pleural effusion.")
    assert labels.get("Pleural Effusion") == LabelState.POSITIVE
    assert inputs.labels("s1", "No effusion.") is labels  # by id: a study's report does not change
    inputs.clear_images()  # the labels are not image caches
    assert inputs.labels("s1", "No effusion.") is labels
    assert inputs.labels("s2", "No pleural effusion.").get("Pleural Effusion") != LabelState.POSITIVE
