"""medmm's F1-RadGraph path against the radgraph package's own F1RadGraph, on a tiny random archive.

Needs an environment where the published extractor runs (not medmm's [train] one, which has transformers 5):

    python -m venv rg && . rg/bin/activate && pip install torch --index-url https://download.pytorch.org/whl/cpu
    pip install -e . && pip install radgraph requests "transformers>=4.39,<5"
    python benchmarks/radgraph_package_check.py            # about a minute on 2 CPU cores

It writes a randomly initialised DyGIE++ archive with the published layout (config.json, vocabulary/,
weights.th; a 1-layer 32-wide BERT encoder in a local folder) into a temporary folder, scores four
made-up report pairs through `medmm.metrics.model_based` (archive lookup, sha256, unpacking, the
package's RadGraph, medmm's scorer) and through `radgraph.F1RadGraph` on the same unpacked archive,
and fails unless the per-report rewards are equal. A plumbing check: the model is random, so the
numbers say nothing about report quality. Recorded 2026-12-07 (radgraph 0.1.18, transformers 4.57.6,
torch 2.13.0+cpu, 2-core CPU machine, twice): means 0.2683 / 0.2189 / 0.1758 (simple / partial /
complete) on both sides, per-report rewards equal.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

HYPS = ["no evidence of acute cardiopulmonary process moderate hiatal hernia", "small left pleural effusion .", "",
        "No acute process, small right effusion."]
REFS = ["no acute cardiopulmonary process", "left pleural effusion .", "moderate hiatal hernia",
        "small right pleural effusion"]
WORDS = ("no evidence of acute cardiopulmonary process moderate hiatal hernia pleural effusion small left right "
         "lung . , a b 1 2").split()  # a b 1 2: the package's tokeniser probe needs them distinct


def tiny_archive(root: Path) -> Path:
    """radgraph.tar.gz with the published layout and random weights, built with the package's own classes."""
    import torch
    from dotmap import DotMap
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie
    from transformers import BertConfig

    enc, arch = root / "tiny-bert", root / "archive"
    enc.mkdir()
    (arch / "vocabulary").mkdir(parents=True)
    (enc / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=64).save_pretrained(enc)
    (enc / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}))
    bert = {"type": "pretrained_transformer_mismatched", "model_name": str(enc), "max_length": 64}
    model_cfg = {"type": "dygie", "embedder": {"token_embedders": {"bert": bert}}, "initializer": {},
                 "module_initializer": {}, "loss_weights": {"ner": 0.2, "relation": 1.0, "coref": 0.0, "events": 0.0},
                 "feature_size": 8, "max_span_width": 4, "target_task": "relation",
                 "feedforward_params": {"num_layers": 2, "hidden_dims": 16, "dropout": 0.0},
                 "modules": {"coref": {"spans_per_word": 0.3, "max_antecedents": 10, "coref_prop": 0}, "ner": {},
                             "relation": {"spans_per_word": 0.5},
                             "events": {"trigger_spans_per_word": 0.3, "argument_spans_per_word": 0.8,
                                        "loss_weights": {"trigger": 0.2, "arguments": 1.0}}}}
    cfg = {"dataset_reader": {"type": "dygie", "token_indexers": {"bert": bert}, "max_span_width": 4}, "model": model_cfg}
    (arch / "config.json").write_text(json.dumps(cfg))
    voc = arch / "vocabulary"
    (voc / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    (voc / "radgraph__ner_labels.txt").write_text("\nANAT-DP\nOBS-DP\nOBS-U\nOBS-DA\n")  # "" = no entity, index 0
    (voc / "radgraph__relation_labels.txt").write_text("modify\nlocated_at\nsuggestive_of\n")  # null is implicit
    vocab = Vocabulary.from_files(str(voc), None, None)
    torch.manual_seed(0)  # the encoder is initialised here, the span model below
    embedder = text_field_embedders.BasicTextFieldEmbedder(
        {"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(model_name=str(enc), max_length=64)})
    kwargs = DotMap(json.loads(json.dumps(model_cfg)))
    for k in ("type", "embedder", "initializer", "module_initializer"):
        del kwargs[k]
    model = dygie.DyGIE(vocab=vocab, embedder=embedder, **kwargs)
    with torch.no_grad():  # larger scorer weights, so that a random model still predicts entities and relations
        for name, p in model.named_parameters():
            if "_ner_scorers" in name or "_relation_scorers" in name or "relation_feedforward" in name:
                p.add_(torch.randn_like(p) * 2)
    torch.save(model.state_dict(), arch / "weights.th")
    path = root / "radgraph.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for p in sorted(arch.iterdir()):
            tar.add(p, arcname=p.name)
    return path


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["MEDMM_CACHE"] = str(root / "cache")  # the unpacked archive goes here
        archive = tiny_archive(root)
        from medmm.metrics.model_based import aggregate, label_with_models

        labelled = label_with_models({"radgraph": str(archive)}, HYPS, REFS)
        ours = aggregate(labelled)["f1_radgraph"]
        from radgraph import F1RadGraph

        unpacked = next((root / "cache" / "radgraph").iterdir())
        mean, rewards, _, _ = F1RadGraph(reward_level="all", model_type="radgraph", model_cache_dir=str(unpacked),
                                         cuda=-1)(hyps=HYPS, refs=REFS)
        per = labelled["radgraph"]["per_report"]
        same = all(per[level] == list(rewards[k]) for k, level in enumerate(("simple", "partial", "complete")))
        print(json.dumps({"medmm": ours, "package": [float(m) for m in mean], "per_report_equal": same,
                          "provenance": labelled["radgraph"]["provenance"]}, indent=1, default=str))
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
