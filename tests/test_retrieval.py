"""Retrieval task: losses, ranking metrics, a few training steps on a tiny synthetic set."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medmm.data.schema import ImageRef, Sample  # noqa: E402
from medmm.engine.task import get_task_class  # noqa: E402
from medmm.tasks.retrieval.task import (  # noqa: E402
    RetrievalTask,
    _random_expectation,
    info_nce,
    local_similarity,
    retrieval_metrics,
)

SHAPES = ["square", "cross", "ring", "stripes", "dot", "frame"]


def _image(shape: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    im = np.zeros((size, size), np.float32)
    c = size // 2
    if shape == "square":
        im[8:24, 8:24] = 1
    elif shape == "cross":
        im[c - 2 : c + 2, :] = 1
        im[:, c - 2 : c + 2] = 1
    elif shape == "ring":
        yy, xx = np.mgrid[:size, :size]
        r = np.hypot(yy - c, xx - c)
        im[(r > 8) & (r < 12)] = 1
    elif shape == "stripes":
        im[::4, :] = 1
    elif shape == "dot":
        im[c - 3 : c + 3, c - 3 : c + 3] = 1
    else:
        im[:3, :] = im[-3:, :] = im[:, :3] = im[:, -3:] = 1
    return (im + 0.1 * rng.standard_normal(im.shape)).astype(np.float32)


def synthetic_samples(n: int, seed: int = 0) -> list[Sample]:
    """Images of simple shapes captioned with the shape's name (one case per sample)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        out.append(
            Sample(
                id=f"syn{seed}-{i}",
                dataset="synthetic",
                split="train",
                images=[ImageRef(array=_image(shape, rng), image_id=f"img{seed}-{i}")],
                text={"caption": f"an image showing a {shape} number {i}"},
                case_id=f"case{i // 2}",
            )
        )
    return out


def tiny_task(**kw) -> RetrievalTask:
    from medmm.models.encoders import create_image_encoder, create_text_encoder

    torch.manual_seed(0)
    img = create_image_encoder("small_cnn", in_channels=1, widths=(8, 16, 32), image_size=32)
    txt = create_text_encoder("scratch", vocab_size=200, dim=32, num_layers=1, num_heads=2, max_length=32, dropout=0.0)
    return RetrievalTask(RetrievalTask.Config(embed_dim=32, **kw), image_encoder=img, text_encoder=txt)


def test_registered_and_config_checked():
    from medmm.engine.config import ConfigError

    assert get_task_class("retrieval") is RetrievalTask
    with pytest.raises(ConfigError, match="model.no_such_option"):
        RetrievalTask.from_config({"no_such_option": 1})
    task = RetrievalTask.from_config(
        {
            "image_encoder": "small_cnn",
            "image_encoder_kwargs": {"widths": [8, 16], "image_size": 32},
            "text_encoder": "scratch",
            "text_encoder_kwargs": {"vocab_size": 100, "dim": 16, "num_layers": 1, "num_heads": 2},
            "embed_dim": 8,
            "text_field": ["question", "answer"],
        }
    )
    assert task.image_size == 32 and task.text_fields == ["question", "answer"]


def test_info_nce_prefers_aligned_pairs():
    e = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    aligned = info_nce(e, e, torch.tensor(10.0))
    shuffled = info_nce(e, e.roll(1, 0), torch.tensor(10.0))
    assert aligned < shuffled
    # an explicit diagonal positives matrix gives the same loss as the default
    assert torch.allclose(info_nce(e, e, torch.tensor(10.0), torch.eye(8, dtype=torch.bool)), aligned)


def test_local_similarity_shape_and_mask():
    words, regions = torch.randn(3, 5, 8), torch.randn(4, 6, 8)
    mask = torch.ones(3, 5, dtype=torch.bool)
    s = local_similarity(words, mask, regions)
    assert s.shape == (3, 4) and torch.isfinite(s).all()
    # a padded word must not change the score
    mask2 = mask.clone()
    mask2[0, 4] = False
    words2 = words.clone()
    words2[0, 4] = 100.0
    assert torch.allclose(local_similarity(words2, mask2, regions)[0], local_similarity(words[:, :4], mask[:, :4], regions)[0], atol=1e-5)


def test_random_expectation():
    # one positive among g: k/g; two positives among 8, k=1: 2/8
    assert _random_expectation(np.eye(20, dtype=bool), (1, 5))["R@5"] == pytest.approx(25.0)
    pos = np.zeros((1, 8), dtype=bool)
    pos[0, :2] = True
    assert _random_expectation(pos, (1, 2))["R@2"] == pytest.approx(100 * (1 - 15 / 28))


def test_metrics_from_records_dedupe_shared_images():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(4, 8))
    recs = []
    for q in range(8):  # two questions per image: the image gallery holds 4 items, the text one 8
        i = q // 2
        recs.append(
            {
                "id": f"q{q}",
                "prediction": {"image_embedding": img[i].tolist(), "text_embedding": (img[i] + 0.01 * rng.normal(size=8)).tolist()},
                "reference": {"image_key": f"im{i}", "text_key": f"question {q}"},
                "group": f"im{i}",
            }
        )
    m = retrieval_metrics(recs, n_resamples=50)
    assert (m["n_images"], m["n_texts"]) == (4, 8)
    assert m["text_to_image"]["R@1"] == 100.0 and m["image_to_text"]["R@1"] == 100.0
    lo, hi = m["text_to_image_ci"]["R@1"]
    assert lo <= 100.0 <= hi
    assert m["image_to_text_random"]["R@1"] == pytest.approx(100 * 2 / 8)


@pytest.mark.parametrize("local_weight", [0.0, 0.5])
def test_training_reduces_contrastive_loss(local_weight):
    train = synthetic_samples(24)
    task = tiny_task(local_loss_weight=local_weight)
    task.setup(train)
    batch = task.collate(train)
    assert batch["images"].shape == (24, 1, 32, 32)
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    task.train()
    with torch.no_grad():
        before = float(task.training_step(batch)["loss"])
    for _ in range(25):
        out = task.training_step(batch)
        if local_weight:
            assert "loss_local" in out and torch.isfinite(out["loss_local"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    with torch.no_grad():
        after = float(task.training_step(batch)["loss"])
    assert after < 0.7 * before
    task.eval()
    recs = task.evaluation_step(task.collate(train))
    assert [r["id"] for r in recs] == [s.id for s in train]
    assert len(recs[0]["prediction"]["image_embedding"]) == 32
    m = task.compute_metrics(recs)
    # captions of one shape differ only by their number, so the model can at best find the
    # shape group (4 of 24 captions); its caption must then rank in the top 10 above chance
    assert m["image_to_text"]["R@10"] > m["image_to_text_random"]["R@10"], m["image_to_text"]


def test_frozen_text_tower_keeps_weights():
    task = tiny_task(freeze_text=True)
    train = synthetic_samples(12)
    task.setup(train)
    task.train()
    assert task.training and not task.model.text_encoder.training and task.model.image_encoder.training
    before = {k: v.clone() for k, v in task.model.text_encoder.state_dict().items() if isinstance(v, torch.Tensor)}
    opt = torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=0.1)
    loss = task.training_step(task.collate(train))["loss"]
    loss.backward()
    opt.step()
    after = task.model.text_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(p.requires_grad for p in task.model.text_proj.parameters())
    # the frozen tower's features are cached per text; cached and fresh embeddings agree
    texts = [s.text["caption"] for s in train]
    assert set(task.model.frozen_text_cache) == set(texts)
    cached = task.encode_texts(texts)
    task.model.frozen_text_cache = None
    assert torch.allclose(cached, task.encode_texts(texts), atol=1e-5)


def test_lora_trains_only_adapters():
    task = tiny_task(text_lora={"r": 4, "alpha": 8, "target_modules": ["linear1", "linear2"]})
    trainable = [n for n, p in task.model.text_encoder.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with pytest.raises(Exception, match="matched no layer|Target modules"):
        tiny_task(text_lora={"target_modules": ["no_such_layer"]})


def test_missing_text_is_bad_input():
    from medmm.errors import BadInputError

    s = synthetic_samples(1)[0]
    s.text = {}
    with pytest.raises(BadInputError, match=s.id):
        tiny_task().collate([s])


def test_zero_resamples_gives_values_without_intervals():
    """bootstrap_resamples: 0 switches the intervals off (as in every task), not a traceback."""
    rng = np.random.default_rng(0)
    img = rng.normal(size=(4, 8))
    recs = [{"id": f"q{i}", "prediction": {"image_embedding": img[i].tolist(), "text_embedding": img[i].tolist()},
             "reference": {"image_key": f"im{i}", "text_key": f"t{i}"}, "group": f"im{i}"} for i in range(4)]
    m = retrieval_metrics(recs, n_resamples=0)
    assert m["image_to_text"]["R@1"] == 100.0 and "image_to_text_ci" not in m
    assert m["ci_method"].startswith("no resamples")


def test_images_use_the_encoders_declared_transform_uint8_over_255(tmp_path):
    """Retrieval preprocesses like every task (`build_transform` of the encoder's spec): a uint8
    image is divided by 255, no longer min-max scaled per image as before issue 27."""
    from PIL import Image

    from medmm.data.transforms import build_transform
    from medmm.errors import BadInputError

    task = tiny_task()
    assert task.input_spec == task.model.image_encoder.input_spec  # image_size null: the declared size
    arr = np.linspace(0, 100, 32 * 32).round().astype(np.uint8).reshape(32, 32)  # darkest 0, brightest 100
    path = tmp_path / "dim.png"
    Image.fromarray(arr).save(path)
    for ref in (ImageRef(array=arr), ImageRef(path=str(path))):
        x = task.image_tensor(Sample(id="dim", dataset="t", split="test", images=[ref], text={"caption": "x"}))
        np.testing.assert_array_equal(x.numpy(), build_transform(task.input_spec)(arr))
        assert float(x.max()) == pytest.approx((100 / 255 - 0.5) / 0.25)  # min-max scaling gave (1 - 0.5) / 0.25
    with pytest.raises(BadInputError, match="no image"):
        task.image_tensor(Sample(id="none", dataset="t", split="test", text={"caption": "x"}))
