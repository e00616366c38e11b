"""Shared preprocessed-image cache: one read per file, arrays cached only under a given key, bad
files and unusable shapes are BadInputErrors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medmm.data.image_cache import PreprocessedImages
from medmm.data.schema import ImageRef
from medmm.data.transforms import ImageInputSpec, preprocess_image
from medmm.errors import BadInputError


def _spec(size: int, channels: int, mean: float, std: float) -> ImageInputSpec:
    return ImageInputSpec(size=size, in_channels=channels, mean=(mean,) * channels, std=(std,) * channels)


def _png(path, value: int = 100):
    Image.fromarray(np.full((20, 30), value, dtype=np.uint8)).save(path)
    return str(path)


def test_files_are_read_once_and_match_preprocess_image(tmp_path, monkeypatch):
    import medmm.data.io as io

    path = _png(tmp_path / "a.png")
    reads = []
    real = io.read_image
    monkeypatch.setattr(io, "read_image", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    cache = PreprocessedImages(_spec(16, 1, 0.5, 0.25))
    first = cache.get(ImageRef(path=path))
    again = cache.get(ImageRef(path=path))
    assert again is first and reads == [path] and len(cache) == 1
    expected = preprocess_image(np.full((20, 30), 100, dtype=np.uint8), 16, 1, [0.5], [0.25])
    assert first.shape == (1, 16, 16) and np.allclose(first, expected)
    cache.clear()
    cache.get(ImageRef(path=path))
    assert reads == [path, path]


def test_arrays_are_cached_only_under_a_key():
    cache = PreprocessedImages(_spec(8, 3, 0.0, 1.0))
    ref = ImageRef(array=np.zeros((10, 10), dtype=np.uint8))
    assert cache.get(ref).shape == (3, 8, 8) and len(cache) == 0
    keyed = cache.get(ref, key="ds/1")
    assert cache.get(ImageRef(array=np.ones((10, 10), dtype=np.uint8)), key="ds/1") is keyed and len(cache) == 1


def test_bad_files_and_shapes_name_the_file(tmp_path):
    cache = PreprocessedImages(_spec(8, 1, 0.0, 1.0))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(BadInputError, match="broken.png"):
        cache.get(ImageRef(path=str(broken)))
    with pytest.raises(BadInputError, match="missing.png"):
        cache.get(ImageRef(path=str(tmp_path / "missing.png")))
    with pytest.raises(BadInputError, match="ds/7.*cannot use image"):
        cache.get(ImageRef(array=np.zeros((2, 3, 4, 5))), key="ds/7")  # 4-D: not an image


def test_cache_is_bounded_and_evicts_the_least_recently_used():
    # (1, 8, 8) float32 = 256 bytes per image; room for two.
    cache = PreprocessedImages(_spec(8, 1, 0.0, 1.0), max_bytes=600)
    refs = {k: ImageRef(array=np.full((10, 10), i, dtype=np.uint8)) for i, k in enumerate("abc")}
    a = cache.get(refs["a"], key="a")
    cache.get(refs["b"], key="b")
    assert cache.get(refs["a"], key="a") is a  # a is now the most recently used
    cache.get(refs["c"], key="c")  # evicts b
    assert len(cache) == 2 and cache.nbytes == 512
    assert cache.get(refs["a"], key="a") is a
    assert cache.get(refs["b"], key="b") is not None and len(cache) == 2  # b recomputed, c evicted


def test_cache_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MEDMM_IMAGE_CACHE_MB", "0")
    cache = PreprocessedImages(_spec(8, 1, 0.0, 1.0))
    cache.get(ImageRef(array=np.zeros((10, 10), dtype=np.uint8)), key="x")
    assert len(cache) == 0 and cache.max_bytes == 0
