"""Image-encoder pretraining (`medmm.tasks.pretrain.image_pretrain`, `medmm pretrain-image`) on tiny synthetic
MedPix-2.0-like, covid_cxr-like and VQA-RAD-like folders built in tmp_path (32 px, 1-2 epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from medmm.cli import app
from medmm.errors import BadInputError, MedmmError
from medmm.tasks.pretrain import image_pretrain as ip

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]


def _png(path: Path, seed: int, bright: bool) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(120 if bright else 0, 256 if bright else 136, (40, 40), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_medpix(root: Path, corrupt_dev: bool = False) -> tuple[Path, dict[str, list[str]]]:
    """MedPix-2-0 layout: 8 train cases + 3 dev cases, 2 images each (CT bright, MR dark).
    With corrupt_dev the dev image files are not images, so reading one fails loudly."""
    base = root / "MedPix-2-0"
    (base / "splitted_dataset").mkdir(parents=True)
    ids: dict[str, list[str]] = {"train": [], "dev": []}
    desc_all, case_all = [], []
    for split, cases in (("train", range(8)), ("dev", range(8, 11))):
        desc, data = [], []
        for c in cases:
            names = [f"MPX{c}_synpic{1000 + 10 * c + j}" for j in range(2)]
            for j, name in enumerate(names):
                ct = (c + j) % 2 == 0
                path = base / "images" / f"{name}.png"
                if split == "dev" and corrupt_dev:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"not a png")
                else:
                    _png(path, 10 * c + j, bright=ct)
                desc.append({"Type": "CT" if ct else "MR", "U_id": f"MPX{c}", "image": name,
                             "Description": {"Caption": f"{'CT' if ct else 'MR'} image number {c} {j} of the head",
                                             "Plane": "Axial" if j == 0 else "Coronal"},
                             "Location Category": "Head" if c % 3 else "Thorax"})
                ids[split].append(name)
            data.append({"U_id": f"MPX{c}", "TAC": names[:1], "MRI": names[1:], "Case": {"History": "pain"},
                         "Topic": {"Category": "Trauma"}})
        (base / "splitted_dataset" / f"descriptions_{split}.jsonl").write_text("\n".join(json.dumps(d) for d in desc))
        (base / "splitted_dataset" / f"data_{split}.jsonl").write_text("\n".join(json.dumps(d) for d in data))
        desc_all += desc
        case_all += data
    (base / "Descriptions.json").write_text(json.dumps(desc_all))
    (base / "Case_topic.json").write_text(json.dumps(case_all))
    return base, ids


def make_covid(root: Path) -> Path:
    """covid_cxr layout: 10 patients, 1-2 X-rays each, plus one metadata row without an image file."""
    rows = ["patientid,offset,sex,age,finding,view,modality,folder,filename,license,clinical_notes"]
    for p in range(10):
        for j in range(1 + p % 2):
            name = f"p{p}_{j}.png"
            _png(root / "images" / name, 500 + 10 * p + j, bright=True)
            rows.append(f"{p},0,M,50,{'COVID-19' if p % 2 else 'Pneumonia'},PA,X-ray,images,{name},CC BY 4.0,cough")
    rows.append("99,0,F,40,COVID-19,PA,X-ray,images,missing.png,,")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def make_vqa_rad(root: Path, synpics: list[str]) -> Path:
    folder = root / "VQA_RAD Image Folder"
    folder.mkdir(parents=True)
    for s in synpics:
        (folder / f"{s}.jpg").write_bytes(b"x")  # only the names matter for the exclusion
    return root


def tiny_config(sources, **kw) -> ip.PretrainConfig:
    base = dict(image_size=32, widths=(8, 16), epochs=2, batch_size=8, min_label_count=1, held_out_fraction=0.25,
                caption_weight=0.0)
    return ip.PretrainConfig(sources=sources, **{**base, **kw})


def test_train_split_never_reads_a_dev_image(tmp_path):
    base, ids = make_medpix(tmp_path / "mp", corrupt_dev=True)
    images, counts = ip.collect_images(tiny_config([ip.Source("medpix2", base, "train")]))
    assert sorted(im.image_id for im in images) == sorted(ids["train"])
    assert counts[0]["n_images"] == 16 and counts[0]["n_groups"] == 8
    # a full run reads every selected pixel: a dev file among them would raise BadInputError
    summary = ip.pretrain_image_encoder(tiny_config([ip.Source("medpix2", base, "train")], epochs=1), tmp_path / "w.pt")
    assert summary["n_images"] == 16
    with pytest.raises(BadInputError, match="MPX8_synpic1080.png"):  # the `all` split does include dev images
        ip.pretrain_image_encoder(tiny_config([ip.Source("medpix2", base, "all")], epochs=1), tmp_path / "w2.pt")


def test_vqa_rad_images_are_excluded_by_synpic_id(tmp_path):
    base, ids = make_medpix(tmp_path / "mp")
    vqa = make_vqa_rad(tmp_path / "vqa", ["synpic1000", "synpic1031", "synpic77777"])
    images, counts = ip.collect_images(tiny_config([ip.Source("medpix2", base, "all")], exclude_vqa_rad=vqa))
    kept = {im.image_id for im in images}
    assert kept == set(ids["train"] + ids["dev"]) - {"MPX0_synpic1000", "MPX3_synpic1031"}
    assert counts[0]["n_excluded_vqa_rad"] == 2
    with pytest.raises(BadInputError, match="VQA_RAD Image Folder"):
        ip.collect_images(tiny_config([ip.Source("medpix2", base, "all")], exclude_vqa_rad=tmp_path / "nowhere"))


def test_held_out_split_is_by_group_and_seeded():
    groups = [f"c{i // 3}" for i in range(60)]  # 20 cases of 3 images
    tr, va = ip.held_out_split(groups, 0.2, seed=1)
    assert len(va) == 12 and len(tr) + len(va) == 60
    assert not {groups[i] for i in tr} & {groups[i] for i in va}
    assert np.array_equal(ip.held_out_split(groups[::-1], 0.2, seed=1)[1], 59 - ip.held_out_split(groups, 0.2, 1)[1][::-1])
    assert not np.array_equal(va, ip.held_out_split(groups, 0.2, seed=2)[1])
    assert len(ip.held_out_split(groups, 0.0, 0)[1]) == 0
    with pytest.raises(MedmmError, match="leaves no training group"):
        ip.held_out_split(["a"], 0.5, 0)


def test_covid_split_is_the_diagnosis_configs_patient_split(tmp_path):
    from medmm.data import load_dataset
    from medmm.data.splits import grouped_split
    from medmm.engine.config import read_yaml

    cfg = read_yaml(REPO / "configs" / "diagnosis" / "covid_cxr.yaml")
    data = cfg["data"]
    want = {"group_by": data["group_by"], "fractions": data["fractions"], "seed": cfg["seed"], "stratify": data["stratify"]}
    assert want == ip.COVID_SPLIT
    root = make_covid(tmp_path / "covid")
    images, _ = ip.collect_images(tiny_config([ip.Source("covid_cxr", root, "train")]))
    parts = grouped_split(load_dataset("covid_cxr", root, "all").samples, "patient", want["fractions"], 0, stratify="finding_group")
    assert {im.image_id for im in images} == {s.id for s in parts["train"]}
    assert all(im.modality == "XR" and im.location == "Thorax" and im.caption is None for im in images)
    everything, _ = ip.collect_images(tiny_config([ip.Source("covid_cxr", root, "all")]))
    assert len(everything) == 15  # the metadata row without an image file is skipped


def test_label_space_and_loss_pieces():
    rows = [{"modality": m, "plane": None} for m in ["CT"] * 12 + ["MR"] * 3]
    assert ip.label_space(rows, "modality", 10) == ["CT"] and ip.label_space(rows, "plane", 1) == []
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (5, 40, 40), dtype=np.uint8)
    parts = list(ip.batches(pixels, np.arange(5), 32, True, rng, 2))
    assert [len(i) for i, _ in parts] == [2, 2, 1] and parts[0][1].shape == (2, 1, 32, 32)
    _, centre = next(ip.batches(pixels, np.arange(1), 32, False, rng, 1))
    assert np.allclose(centre[0, 0].numpy(), (pixels[0, 4:36, 4:36] / 255.0 - 0.5) / 0.25, atol=1e-6)
    logits = {"modality": torch.zeros(3, 2, requires_grad=True)}
    caps = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    none = ip.pretrain_loss(logits, caps, {"modality": torch.tensor([-100] * 3)}, caps, torch.zeros(3, dtype=torch.bool), 1.0)
    assert none is None  # nothing to learn from: the script crashed on such a batch (int 0 has no backward)
    loss = ip.pretrain_loss(logits, caps, {"modality": torch.tensor([0, 1, -100])}, caps, torch.ones(3, dtype=torch.bool), 1.0)
    assert torch.isfinite(loss) and loss.item() > float(np.log(2)) - 1e-5  # CE ln 2 + a positive InfoNCE


def _cli(args: list[str], progress: bool = False):
    return CliRunner().invoke(app, ["pretrain-image", "--progress" if progress else "--no-progress", *args])


def test_cli_writes_loadable_weights_and_summary(tmp_path):
    from medmm.models import create_image_encoder
    from medmm.models.pretrained import load_into, load_weights

    base, _ids = make_medpix(tmp_path / "mp", corrupt_dev=True)
    covid = make_covid(tmp_path / "covid")
    vqa = make_vqa_rad(tmp_path / "vqa", ["synpic1000"])
    out = tmp_path / "enc" / "w.pt"
    res = _cli(["--out", str(out), "--source", f"medpix2:train={base}", "--source", f"covid_cxr={covid}",
                "--exclude-vqa-rad", str(vqa), "--image-size", "32", "--widths", "8,16", "--epochs", "2",
                "--batch-size", "8", "--min-label-count", "1", "--held-out", "0.25", "--caption-weight", "0"], progress=True)
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["sources"][0] | {"root": None} == {"name": "medpix2", "root": None, "split": "train", "n_images": 15,
                                                      "n_excluded_vqa_rad": 1, "n_groups": 8}
    assert summary["n_images"] == 15 + 15 and len(summary["history"]) == 2
    assert summary["n_train_images"] + summary["n_held_out_images"] == 30 and summary["n_held_out_groups"] == 4
    assert set(summary["held_out"]) >= {"acc_modality", "acc_plane", "acc_location"}
    assert summary["label_spaces"]["modality"] == ["CT", "MR", "XR"]
    state, meta = load_weights(out, summary["sha256"])
    assert meta["architecture"] == "small_cnn" and meta["input_spec"]["size"] == 32 and "medpix2 split train" in meta["source"]
    enc = create_image_encoder("small_cnn", **meta["config"])
    torch.manual_seed(0)
    fresh = create_image_encoder("small_cnn", **meta["config"]).state_dict()
    load_into(enc, out)
    assert all(torch.equal(enc.state_dict()[k], v) for k, v in state.items())
    assert any(not torch.equal(fresh[k], v) for k, v in state.items() if v.is_floating_point())  # trained, not the init
    assert "held out" in res.output and "wrote" in res.output
    # the label heads are saved beside the encoder, tied to it by its checksum
    heads, hmeta = load_weights(out.with_name("w.heads.pt"), summary["heads_sha256"])
    assert hmeta["encoder_sha256"] == summary["sha256"] and hmeta["label_spaces"]["modality"] == ["CT", "MR", "XR"]
    assert heads["modality.weight"].shape == (3, enc.out_dim)


def test_caption_loss_and_held_out_recall(tmp_path):
    base, _ = make_medpix(tmp_path / "mp")
    summary = ip.pretrain_image_encoder(tiny_config([ip.Source("medpix2", base, "all")], caption_weight=1.0, epochs=1),
                                        tmp_path / "w.pt")
    assert summary["n_captions"] == 22  # 11 cases x 2 captioned images
    from medmm.models.pretrained import load_weights

    assert "caption InfoNCE vs frozen MiniLM" in load_weights(tmp_path / "w.pt")[1]["source"]
    held = summary["held_out"]
    assert held["n_captions"] == summary["n_held_out_images"] and 0.0 <= held["caption_r1"] <= held["caption_r5"] <= 1.0


@pytest.mark.parametrize("args, error, text", [
    (["--source", "nope"], MedmmError, "unknown source 'nope'"),
    (["--source", "medpix2:val={base}"], MedmmError, "has no split 'val'"),
    (["--source", "medpix2:test={base}"], MedmmError, "has no usable image"),  # no test split files
    (["--source", "medpix2={base}", "--widths", "8,x"], MedmmError, "--widths"),
    (["--source", "medpix2={base}", "--reconstruction-weight", "-1"], MedmmError, "reconstruction_weight"),
])
def test_cli_bad_input(tmp_path, args, error, text):
    base, _ = make_medpix(tmp_path / "mp")
    args = [a.format(base=base) for a in args]
    res = _cli(["--out", str(tmp_path / "w.pt"), "--no-exclude-vqa-rad", *args])
    assert res.exit_code != 0 and isinstance(res.exception, error) and text in str(res.exception)


def test_cli_missing_roots_are_named(tmp_path):
    res = _cli(["--out", str(tmp_path / "w.pt"), "--data-root", str(tmp_path), "--no-exclude-vqa-rad"])
    assert isinstance(res.exception, BadInputError) and str(tmp_path / "medpix2" / "MedPix-2-0") in str(res.exception)
    res = _cli(["--out", str(tmp_path / "w.pt"), "--data-root", str(tmp_path)])  # default exclusion root is absent
    assert isinstance(res.exception, BadInputError) and str(tmp_path / "vqa_rad" / "VQA_RAD Image Folder") in str(res.exception)
    base, _ = make_medpix(tmp_path / "mp")
    every = make_vqa_rad(tmp_path / "vqa", [f"synpic{1000 + 10 * c + j}" for c in range(8) for j in range(2)])
    res = _cli(["--out", str(tmp_path / "w.pt"), "--source", f"medpix2:train={base}", "--exclude-vqa-rad", str(every)])
    assert isinstance(res.exception, MedmmError) and "16 excluded as VQA-RAD images" in str(res.exception)


def test_denoising_reconstruction_loss_trains_a_decoder_that_is_not_saved(tmp_path):
    from medmm.models.pretrained import load_weights

    base, _ids = make_medpix(tmp_path / "mp")
    out = tmp_path / "enc" / "w.pt"
    res = _cli(["--out", str(out), "--source", f"medpix2:train={base}", "--no-exclude-vqa-rad", "--image-size", "32",
                "--widths", "8,16", "--epochs", "3", "--batch-size", "8", "--min-label-count", "1", "--held-out", "0.25",
                "--caption-weight", "0", "--reconstruction-weight", "1"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads(out.with_suffix(".json").read_text())
    mses = [h["held_out_recon_mse"] for h in summary["history"]]
    assert mses[-1] < mses[0]  # the decoder learns to rebuild the held-out crops
    state, meta = load_weights(out, summary["sha256"])
    assert not any(k.startswith("decoder") for k in state) and "denoising reconstruction" in meta["source"]


def test_reconstruction_decoder_returns_the_input_size():
    from medmm.models import create_image_encoder

    enc = create_image_encoder("small_cnn", in_channels=1, image_size=40, widths=[8, 16])
    model = ip.Pretrainer(enc, {"modality": 3}, 4, reconstruct=True)
    logits, emb, recon = model(torch.zeros(2, 1, 40, 40))
    assert recon.shape == (2, 1, 40, 40) and logits["modality"].shape == (2, 3) and emb.shape == (2, 4)
    assert ip.Pretrainer(enc, {"modality": 3}, 4)(torch.zeros(1, 1, 40, 40))[2] is None
