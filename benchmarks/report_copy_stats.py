"""How much of a report system's output is its own text: copies of training captions, distinct outputs.

    python benchmarks/report_copy_stats.py RUN_DIR PRED.jsonl [PRED2.jsonl ...] [--out stats.json]

For every system in the prediction files (`medmm predict` records: "prediction", and the
baselines the records carry: beam_prediction, nn_prediction, typical_consensus_prediction, ...)
prints the number of records, the share of outputs that are verbatim training captions of the
run (same lower-cased alphanumeric words as a caption in the run's report store), the number of
distinct outputs, the most repeated output and its count, the number of outputs that stutter
(`stutters`: a word directly followed by itself, "t2 t2"), and, from the first file's records,
the attribute accuracies (`report_attributes.attribute_accuracy`).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

FIELDS = ("prediction", "beam_prediction", "nn_prediction", "nn_thumbnail_prediction", "nn_consensus_prediction",
          "typical_consensus_prediction")


def stutters(text: str) -> bool:
    """True when a token of `text` (medmm's word tokenizer, lower-cased) is directly followed by
    the same token ("axial t2 t2 weighted"): the stutter the no_immediate_repeat decoding option stops."""
    from medmm.models.decoders import word_tokenize

    words = word_tokenize(text)
    return any(a == b for a, b in pairwise(words))


def copy_stats(outputs: list[str], training: set[str]) -> dict:
    """Copy share, distinct outputs, the most repeated output and the stuttering outputs of a list of texts."""
    from medmm.tasks.report.mbr import consensus_words

    keys = [" ".join(consensus_words(t)) for t in outputs]
    top, n_top = Counter(outputs).most_common(1)[0] if outputs else ("", 0)
    return {"n": len(outputs), "copy_share": round(sum(k in training for k in keys) / max(len(keys), 1), 3),
            "n_copies": sum(k in training for k in keys), "distinct": len(set(outputs)),
            "most_repeated": top, "most_repeated_count": n_top, "n_stutter": sum(map(stutters, outputs))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("pred", nargs="+")
    ap.add_argument("--out")
    args = ap.parse_args()
    from medmm.engine import rundir as rd
    from medmm.tasks.report.attributes import attribute_accuracy
    from medmm.tasks.report.mbr import consensus_words

    state = rd.read_json(Path(args.run_dir) / rd.TASK_STATE)["state"]
    training = {" ".join(consensus_words(t)) for t in state["store"]["texts"]}
    result = {}
    for i, path in enumerate(args.pred):
        recs = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        stem = Path(path).stem
        for f in FIELDS if i == 0 else ("prediction", "beam_prediction"):
            if recs and all(f in r for r in recs):
                name = stem if f == "prediction" else f"{stem}:{f.removesuffix('_prediction')}"
                result[name] = copy_stats([r[f] for r in recs], training)
        if any("attributes" in r for r in recs):
            result[stem + ":attribute_accuracy"] = attribute_accuracy(recs)
    for k, v in result.items():
        print(k, json.dumps(v))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
