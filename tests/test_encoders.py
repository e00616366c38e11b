"""Registry-driven encoder tests: every image encoder (1 and 3 channels), the HF paths from tiny
local models, MiniLM's real embedding, and the scratch encoder's self-contained tokenizer."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from medmm.errors import MedmmError
from medmm.models.encoders import create_image_encoder, create_text_encoder, list_image_encoders, list_text_encoders

# Small sizes keep the default run fast; ViTs are built for 32 px (2x2 patches).
TINY = {"vit_small": {"image_size": 32}, "vit_base": {"image_size": 32}, "small_cnn": {"image_size": 32}}


@functools.cache
def tiny_image_encoder(name: str, in_channels: int = 3):
    torch.manual_seed(0)
    return create_image_encoder(name, in_channels=in_channels, **TINY.get(name, {}))


def test_registries_list_the_required_encoders():
    assert {"small_cnn", "resnet18", "resnet34", "resnet50", "densenet121", "vit_small", "vit_base"} <= set(list_image_encoders())
    assert {"minilm", "scratch"} <= set(list_text_encoders())


# Large encoders run one channel combination by default, the other in the slow job.
HEAVY = {"resnet34", "resnet50", "densenet121", "vit_base"}
CASES = [
    pytest.param(name, stem, inp, marks=[pytest.mark.slow] if name in HEAVY and stem == 1 else [])
    for name in list_image_encoders()
    for stem, inp in ((3, 1), (1, 3))
]


@pytest.mark.parametrize("name,stem_channels,input_channels", CASES)
def test_image_encoder_forward_backward(name, stem_channels, input_channels):
    enc = tiny_image_encoder(name, stem_channels)
    enc.zero_grad(set_to_none=True)
    size = 32
    x = torch.randn(2, input_channels, size, size, requires_grad=True)
    feats = enc(x)
    assert feats.pooled.shape == (2, enc.out_dim)
    assert feats.tokens.ndim == 3 and feats.tokens.shape[0] == 2 and feats.tokens.shape[2] == enc.out_dim
    assert feats.maps, "encoders must expose intermediate maps"
    assert feats.maps[-1].shape[1] == enc.out_dim
    areas = [m.shape[-1] * m.shape[-2] for m in feats.maps]
    assert areas == sorted(areas, reverse=True), "maps go shallow (large) -> deep (small)"
    assert torch.isfinite(feats.pooled).all() and torch.isfinite(feats.tokens).all()
    feats.pooled.square().mean().backward()
    # Saliency maps need finite, non-zero input gradients.
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in enc.parameters())
    assert enc.input_spec.in_channels == stem_channels and len(enc.input_spec.mean) == stem_channels


def test_vit_keeps_per_layer_attention_probabilities():
    enc = create_image_encoder("vit_small", image_size=32, num_layers=3)
    feats = enc(torch.randn(2, 3, 32, 32))
    assert len(feats.attentions) == 3
    att = feats.attentions[0]
    assert att.shape == (2, 6, 4, 4)
    assert torch.allclose(att.sum(-1), torch.ones(2, 6, 4))
    with pytest.raises(ValueError, match="32 px"):
        enc(torch.randn(1, 3, 64, 64))


def test_unknown_encoder_and_pretrained_true_give_clear_errors():
    with pytest.raises(MedmmError, match="known: .*resnet18"):
        create_image_encoder("resnet19")
    with pytest.raises(MedmmError, match="no pretrained weights"):
        create_image_encoder("resnet18", pretrained=True)
    with pytest.raises(MedmmError, match="minilm"):
        create_text_encoder("bert")


def _tiny_vit_dir(tmp_path):
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    ViTModel(cfg).save_pretrained(tmp_path / "tiny-vit")
    return tmp_path / "tiny-vit"


def test_hf_image_encoder_loads_from_a_local_directory(tmp_path):
    path = _tiny_vit_dir(tmp_path)
    enc = create_image_encoder(f"hf:{path}", output_attentions=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)  # no processor saved
    assert enc.out_dim == 32 and enc.input_spec.size == 32
    x = torch.randn(2, 1, 32, 32, requires_grad=True)  # grey input is repeated to the 3 channels
    feats = enc(x)
    assert feats.pooled.shape == (2, 32) and feats.tokens.shape == (2, 17, 32)  # CLS + 16 patches
    assert feats.maps and feats.maps[-1].shape == (2, 32, 4, 4)
    assert len(feats.attentions) == 2 and feats.attentions[0].shape == (2, 2, 17, 17)
    feats.pooled.sum().backward()
    assert torch.isfinite(x.grad).all()


def _save(model, path):
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize("family", ["clip", "swin", "convnext"])
def test_hf_image_encoder_other_families(tmp_path, family):
    import transformers as tf

    if family == "clip":
        vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        text = dict(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        model, dim = tf.CLIPModel(tf.CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)), 32
    elif family == "swin":
        model = tf.SwinModel(tf.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4))
        dim = 16
    else:
        model = tf.ConvNextModel(tf.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=32))
        dim = 16
    enc = create_image_encoder(f"hf:{_save(model, tmp_path / family)}", image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert enc.out_dim == dim
    feats = enc(torch.randn(2, 3, 32, 32))
    assert feats.pooled.shape == (2, dim) and feats.tokens.shape[-1] == dim
    assert feats.maps and all(m.ndim == 4 for m in feats.maps)
    feats.pooled.sum().backward()


def test_hf_missing_model_names_what_is_missing(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub read the variable at import; without this it retries the network for ~20 s.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MedmmError, match="not-a-real-org/no-such-model"):
        create_image_encoder("hf:not-a-real-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedmmError, match="config.json missing"):
        create_text_encoder(f"hf:{tmp_path / 'empty'}")


def test_hf_text_encoder_from_local_directory(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from medmm.models.encoders.hf_text import minilm_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(cfg).save_pretrained(tmp_path / "tiny-bert")
    tok.save_pretrained(tmp_path / "tiny-bert")
    enc = create_text_encoder(f"hf:{tmp_path / 'tiny-bert'}", pooling="cls")
    batch = enc.tokenize(["small effusion", "no acute cardiopulmonary abnormality"])
    feats = enc(**batch)
    assert feats.pooled.shape == (2, 32) and feats.mask.dtype == torch.bool
    assert feats.mask.sum(1).tolist() == batch["attention_mask"].sum(1).tolist()


@pytest.fixture(scope="module")
def minilm():
    return create_text_encoder("minilm").eval()


def test_minilm_gives_a_real_sentence_embedding(minilm):
    texts = ["chest x-ray shows pneumonia", "lung infection on radiograph", "the cat sat on the mat"]
    with torch.no_grad():
        feats = minilm(**minilm.tokenize(texts))
    assert minilm.out_dim == 384 and feats.pooled.shape == (3, 384)
    related = F.cosine_similarity(feats.pooled[0], feats.pooled[1], dim=0)
    unrelated = F.cosine_similarity(feats.pooled[0], feats.pooled[2], dim=0)
    assert related > unrelated + 0.2


def test_minilm_mean_pooling_ignores_padding(minilm):
    with torch.no_grad():
        alone = minilm(**minilm.tokenize(["pleural effusion"])).pooled
        padded = minilm(**minilm.tokenize(["pleural effusion", "a much longer sentence that forces padding of the first"])).pooled[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


CORPUS = ["no acute cardiopulmonary process", "small left pleural effusion", "right lower lobe pneumonia", "heart size normal"]


def test_scratch_encoder_tokenizer_travels_in_the_state_dict():
    enc = create_text_encoder("scratch", dim=32, num_layers=1, num_heads=2, max_length=8)
    with pytest.raises(MedmmError, match="fit_tokenizer"):
        enc.tokenize(["x"])
    enc.fit_tokenizer(CORPUS * 5)
    batch = enc.tokenize(["left pleural effusion", "pneumonia " * 20])
    assert batch["input_ids"].shape[1] == 8  # truncated to max_length
    assert batch["input_ids"][0, 0].item() == enc.tokenizer.token_to_id("[CLS]")
    assert batch["input_ids"][1, -1].item() == enc.tokenizer.token_to_id("[SEP]")
    feats = enc(**batch)
    assert feats.pooled.shape == (2, 32) and torch.isfinite(feats.tokens).all()
    feats.pooled.sum().backward()

    clone = create_text_encoder("scratch", dim=32, num_layers=1, num_heads=2, max_length=8)
    clone.load_state_dict(enc.state_dict())
    assert torch.equal(clone.tokenize(["left pleural effusion"])["input_ids"], enc.tokenize(["left pleural effusion"])["input_ids"])


def test_scratch_tokenizer_file_round_trip_and_bad_file(tmp_path):
    enc = create_text_encoder("scratch", dim=32, num_layers=1, num_heads=2)
    enc.fit_tokenizer(CORPUS)
    enc.save_tokenizer(tmp_path / "tokenizer.json")
    other = create_text_encoder("scratch", dim=32, num_layers=1, num_heads=2)
    other.load_tokenizer(tmp_path / "tokenizer.json")
    assert other.tokenize(["heart size"])["input_ids"].tolist() == enc.tokenize(["heart size"])["input_ids"].tolist()
    (tmp_path / "bad.json").write_text("{not json")
    from medmm.errors import BadInputError

    with pytest.raises(BadInputError, match="bad.json"):
        other.load_tokenizer(tmp_path / "bad.json")
