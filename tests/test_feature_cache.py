"""The on-disk feature cache of frozen encoders: hits give the encoder's exact features, the key
follows the weights, the preprocessing and the image, corrupted entries are recomputed and
counted, the size stays bounded, and several processes share one root safely."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import torch

from medmm.data.schema import ImageRef
from medmm.errors import MedmmError
from medmm.models import create_image_encoder
from medmm.models.feature_cache import (
    FeatureCache,
    cached_image_features,
    encoder_identity,
    image_checksum,
    open_feature_cache,
)


def _encoder(seed: int = 0):
    torch.manual_seed(seed)
    return create_image_encoder("small_cnn", in_channels=1, widths=(4, 8), image_size=16).eval()


def _images(n: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 255, (16, 16), dtype=np.uint8) for _ in range(n)]
    x = torch.stack([torch.from_numpy(a.astype(np.float32) / 255)[None] for a in arrays])
    return x, [image_checksum(ImageRef(array=a)) for a in arrays]


def test_hits_give_the_encoders_exact_features(tmp_path):
    enc = _encoder()
    cache = open_feature_cache(enc, root=tmp_path)
    x, keys = _images(5)
    with torch.no_grad():
        direct = enc(x)
    first = cached_image_features(cache, enc, x, keys)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (0, 5, 5)
    again = FeatureCache(tmp_path, cache.encoder_id)  # another process or run: same files
    second = cached_image_features(again, enc, x[[3, 1]], [keys[3], keys[1]])
    assert (again.stats.hits, again.stats.misses) == (2, 0)
    assert torch.equal(first.pooled, direct.pooled) and torch.equal(first.tokens, direct.tokens)
    assert torch.equal(second.pooled, direct.pooled[[3, 1]]) and torch.equal(second.tokens, direct.tokens[[3, 1]])
    # A None key (no checksum known) or no cache: computed, not stored.
    third = cached_image_features(None, enc, x[:2], [None, None])
    assert torch.equal(third.pooled, direct.pooled[:2])
    assert len(list(Path(tmp_path).rglob("*.feat"))) == 5


def test_the_key_follows_weights_preprocessing_and_pixels(tmp_path):
    enc = _encoder()
    base = encoder_identity(enc)
    assert encoder_identity(_encoder()) == base  # same weights, same id
    assert encoder_identity(enc, {"resize": "bilinear"}) != base
    enc.input_spec = type(enc.input_spec)(size=32, in_channels=1, mean=enc.input_spec.mean, std=enc.input_spec.std)
    assert encoder_identity(enc) != base
    enc = _encoder()
    with torch.no_grad():
        next(enc.parameters()).view(-1)[0] += 1e-6  # one weight
    changed = encoder_identity(enc)
    assert changed != base
    x, keys = _images(2)
    cached_image_features(FeatureCache(tmp_path, base), _encoder(), x, keys)
    other = FeatureCache(tmp_path, changed)
    cached_image_features(other, enc, x, keys)
    assert other.stats.misses == 2 and other.stats.hits == 0  # other weights never see the old features

    a = np.zeros((8, 8), np.uint8)
    b = a.copy()
    b[3, 4] = 1
    assert image_checksum(ImageRef(array=a)) != image_checksum(ImageRef(array=b))
    assert image_checksum(ImageRef(array=a)) != image_checksum(ImageRef(array=a.reshape(4, 16)))
    f = tmp_path / "x.png"
    f.write_bytes(b"\x89PNG one")
    one = image_checksum(ImageRef(path=str(f)))
    f.write_bytes(b"\x89PNG two")
    assert image_checksum(ImageRef(path=str(f))) != one


@pytest.mark.parametrize("damage", ["flip_payload", "truncate", "garbage", "other_image", "empty"])
def test_a_corrupted_entry_is_recomputed_and_counted(tmp_path, damage):
    enc = _encoder()
    cache = open_feature_cache(enc, root=tmp_path)
    x, keys = _images(2)
    good = cached_image_features(cache, enc, x, keys)
    p = cache.path(keys[0])
    data = p.read_bytes()
    damaged = {
        "flip_payload": data[:-5] + bytes([data[-5] ^ 1]) + data[-4:],
        "truncate": data[: len(data) // 2],
        "garbage": b"not an entry at all",
        "other_image": cache.path(keys[1]).read_bytes(),  # a whole entry, but of another image
        "empty": b"",
    }[damage]
    p.write_bytes(damaged)
    fresh = FeatureCache(tmp_path, cache.encoder_id)
    again = cached_image_features(fresh, enc, x, keys)
    # Image 1 is a hit (exact); image 0 is recomputed alone (a batch of one: equal up to rounding).
    assert torch.equal(again.pooled[1], good.pooled[1]) and torch.equal(again.tokens[1], good.tokens[1])
    assert torch.allclose(again.pooled[0], good.pooled[0], atol=1e-6) and torch.allclose(again.tokens[0], good.tokens[0], atol=1e-6)
    assert (fresh.stats.corrupt, fresh.stats.hits, fresh.stats.misses, fresh.stats.writes) == (1, 1, 1, 1)
    assert str(p) in fresh.stats.notes[0]
    assert torch.equal(FeatureCache(tmp_path, cache.encoder_id).get(keys[0])["pooled"], again.pooled[0])  # rewritten whole


def test_size_is_bounded_and_least_recently_used_go_first(tmp_path):
    enc = _encoder()
    x, keys = _images(30)
    cache = FeatureCache(tmp_path / "c", encoder_identity(enc), max_bytes=10**9)
    cached_image_features(cache, enc, x[:1], keys[:1])
    entry = cache.path(keys[0]).stat().st_size
    bounded = FeatureCache(tmp_path / "c", cache.encoder_id, max_bytes=10 * entry)
    for i in range(1, 30):
        cached_image_features(bounded, enc, x[i : i + 1], keys[i : i + 1])
        assert bounded.get(keys[0]) is not None  # used after every write: never the one evicted
        total = sum(f.stat().st_size for f in (tmp_path / "c").rglob("*.feat"))
        assert total <= 10 * entry
    assert bounded.stats.evicted >= 19
    assert bounded.get(keys[1]) is None  # the oldest unused ones went


def test_write_failures_are_counted_not_raised(tmp_path):
    enc = _encoder()
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    cache = FeatureCache(blocker, encoder_identity(enc))
    x, keys = _images(3)
    out = cached_image_features(cache, enc, x, keys)
    assert out.pooled.shape[0] == 3 and cache.stats.write_errors == 3 and cache.stats.writes == 0


def test_misuse_is_a_clear_error(tmp_path, monkeypatch):
    enc = _encoder()
    monkeypatch.delenv("MEDMM_FEATURE_CACHE", raising=False)
    assert open_feature_cache(enc) is None  # not configured: features computed as before
    monkeypatch.setenv("MEDMM_FEATURE_CACHE", str(tmp_path))
    assert open_feature_cache(enc).root == tmp_path
    x, keys = _images(2)
    with pytest.raises(MedmmError, match="training mode"):
        cached_image_features(open_feature_cache(enc), enc.train(), x, keys)
    with pytest.raises(MedmmError, match="hex checksum"):
        FeatureCache(tmp_path, "e" * 64).get("../../etc/passwd")
    with pytest.raises(MedmmError, match="2 keys for 1 images"):
        cached_image_features(None, enc.eval(), x[:1], keys)


def _worker(args: tuple[str, str, int]) -> tuple[list[bytes], dict[str, int]]:
    root, encoder_id, seed = args
    torch.set_num_threads(1)
    enc = _encoder()
    x, keys = _images(12)
    cache = FeatureCache(root, encoder_id, max_bytes=10**9)
    order = np.random.default_rng(seed).permutation(12).tolist()
    out = []
    for _ in range(3):
        for i in order:
            out.append(cached_image_features(cache, enc, x[i : i + 1], keys[i : i + 1]).pooled.numpy().tobytes())
    return out, {"corrupt": cache.stats.corrupt, "hits": cache.stats.hits}


def test_several_processes_share_one_root(tmp_path):
    enc = _encoder()
    with torch.no_grad():
        x, _ = _images(12)
        expected = {enc(x[i : i + 1]).pooled.numpy().tobytes() for i in range(12)}
    with mp.get_context("fork").Pool(3) as pool:
        results = pool.map(_worker, [(str(tmp_path), encoder_identity(enc), s) for s in range(3)])
    for feats, stats in results:
        assert set(feats) == expected and stats["corrupt"] == 0 and stats["hits"] >= 24
    assert len(list(tmp_path.rglob("*.feat"))) == 12 and not list(tmp_path.rglob("*.tmp"))
