"""Re-score trained VQA runs on their held-out split, with baselines and paired comparisons.

    python benchmarks/vqa_rad_heldout.py runs/vqa_rad runs/vqa_rad_kg --split test \
        --open-confidence 0.5 0.0 --out benchmarks/vqa_rad_heldout_results.json

For each run: the run's own data split (re-created from its config and seed), predictions with
the current code, metrics with CIs (percentile bootstrap resampling IMAGES), once per routing
threshold given (`--open-confidence 0.0` = classifier only for open questions). Per distinct
split, two baselines fitted on that split's training part: the majority answer per answer type,
and a 1-nearest-neighbour "memory" (the answer of the most similar training question, by frozen
MiniLM cosine similarity, preferring training questions on the same image). The first run is
compared with every other run on the same split (paired bootstrap + approximate randomisation,
resampling images; the comparison uses the first threshold). `--variant memory.weight=0` also
scores each run with those inference-time settings changed (e.g. the answer memory off) and
compares it, paired, with the run's own settings. `--save-predictions DIR` writes every scored
setting's records as DIR/<run name>[_<variant>]/predictions/test.jsonl (the layout of a run
folder), so `benchmarks/vqa_resplit_compare.py` can pool an inference-time change over re-splits.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

HEADLINE = ("n", "n_closed", "n_open", "n_images", "overall_accuracy", "closed_accuracy", "open_exact_match",
            "open_token_f1", "open_bleu1", "ci", "ci_method", "routing")


def majority_records(train: list, test: list) -> list[dict[str, Any]]:
    """Records answering every question with the most frequent training answer of its type."""
    from medmm.tasks.vqa.answers import answer_type, is_closed_question, normalise_vqa_answer

    by_type: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    for s in train:
        by_type[is_closed_question(s.text["question"], answer_type(s))][normalise_vqa_answer(s.text["answer"])] += 1
    recs = []
    for s in test:
        closed = is_closed_question(s.text["question"], answer_type(s))
        recs.append(_record(s, by_type[closed].most_common(1)[0][0], closed))
    return recs


def nearest_neighbour_records(train: list, test: list) -> list[dict[str, Any]]:
    """Records answering with the answer of the most similar training question of the same type
    (frozen MiniLM sentence embeddings, cosine), restricted to the same image when it has any."""
    import torch

    from medmm.models import create_text_encoder
    from medmm.tasks.vqa.answers import answer_type, is_closed_question, normalise_vqa_answer

    enc = create_text_encoder("minilm").eval()

    def embed(samples: list) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for k in range(0, len(samples), 64):
                tok = enc.tokenize([s.text["question"] for s in samples[k : k + 64]], max_length=64)
                out.append(torch.nn.functional.normalize(enc(tok["input_ids"], tok["attention_mask"]).pooled, dim=-1))
        return torch.cat(out)

    closed_tr = torch.tensor([is_closed_question(s.text["question"], answer_type(s)) for s in train])
    sim = embed(test) @ embed(train).T
    recs = []
    for i, s in enumerate(test):
        closed = is_closed_question(s.text["question"], answer_type(s))
        score = sim[i] + 10.0 * (closed_tr == closed).float()
        same = torch.tensor([t.image_id == s.image_id for t in train])
        if bool(same.any()):
            score = score + 100.0 * same.float()
        recs.append(_record(s, normalise_vqa_answer(train[int(score.argmax())].text["answer"]), closed))
    return recs


def _record(s, prediction: str, closed: bool) -> dict[str, Any]:
    return {"id": s.id, "prediction": prediction, "reference": s.text["answer"],
            "answer_type": "CLOSED" if closed else "OPEN", "group": s.group("image")}


def save_predictions(run_like: Path, records: list[dict[str, Any]]) -> Path:
    """Write records as `run_like/predictions/test.jsonl`, the file a trained run folder holds."""
    path = run_like / "predictions" / "test.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
    return path


def main() -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--split", default="test", help="role of the run's data config: train, val or test")
    ap.add_argument("--open-confidence", type=float, nargs="+", default=None)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--variant", action="append", default=[], help="KEY=VALUE model setting changed at inference (dotted, e.g. memory.weight=0)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--save-predictions", type=Path, default=None, help="write records in run-folder layout here")
    args = ap.parse_args()

    import torch

    from medmm.engine.api import load_run, run_inference
    from medmm.engine.data import load_splits
    from medmm.metrics.stats import paired_test
    from medmm.metrics.vqa import score_item
    from medmm.tasks.vqa.answers import vqa_scores

    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    default_records: dict[str, list] = {}
    split_of: dict[str, str] = {}

    def summary(records: list) -> dict[str, Any]:
        m = vqa_scores(records, n_resamples=args.resamples)
        return {k: m.get(k) for k in HEADLINE}

    def em(recs: list) -> list[float]:
        return [score_item(r["prediction"], r["reference"], r["answer_type"])["exact_match"] for r in recs]

    def paired(a: list, b: list) -> dict[str, Any]:
        by_id = {r["id"]: r for r in b}
        pa = [r for r in a if r["id"] in by_id]
        return paired_test(lambda x: sum(x) / len(x), em(pa), em([by_id[r["id"]] for r in pa]),
                           n_resamples=args.resamples, groups=[r["group"] for r in pa])

    for run in args.runs:
        cfg, task = load_run(run)
        splits = load_splits(cfg.data, cfg.seed)
        samples = splits[args.split].samples
        key = json.dumps({"data": cfg.to_dict()["data"], "seed": cfg.seed}, sort_keys=True)
        split_of[str(run)] = key
        baseline_records: dict[str, list] = {}
        if not args.no_baselines and f"baselines {key}" not in results:
            train = splits["train"].samples
            baseline_records = {"majority": majority_records(train, samples),
                                "nearest_neighbour_question": nearest_neighbour_records(train, samples)}
            results[f"baselines {key}"] = {k: summary(v) for k, v in baseline_records.items()}
            print("baselines", {k: round(v["overall_accuracy"], 4) for k, v in results[f"baselines {key}"].items()})
        thresholds = args.open_confidence or [task.config.open_confidence]
        results[str(run)] = {}
        for th in thresholds:
            task.config.open_confidence = th
            records, skipped = run_inference(task, samples, cfg)
            results[str(run)][f"open_confidence={th}"] = summary(records) | {"n_skipped": len(skipped)}
            if th == thresholds[0]:
                default_records[str(run)] = records
                if args.save_predictions:
                    save_predictions(args.save_predictions / run.name, records)
            m = results[str(run)][f"open_confidence={th}"]
            print(run, th, json.dumps({k: m.get(k) for k in ("overall_accuracy", "closed_accuracy", "open_exact_match")}))
        task.config.open_confidence = thresholds[0]
        for name, recs in baseline_records.items():  # the first run on a split vs its baselines
            results[str(run)][f"paired_overall_accuracy default vs {name}"] = paired(default_records[str(run)], recs)
        for variant in args.variant:
            key, value = variant.split("=", 1)
            owner = task.config  # a dotted key (memory.weight) names a field of a config section
            for part in key.split(".")[:-1]:
                owner = getattr(owner, part)
            leaf = key.split(".")[-1]
            before = getattr(owner, leaf)
            setattr(owner, leaf, type(before)(float(value)) if isinstance(before, (int, float)) else value)
            records, skipped = run_inference(task, samples, cfg)
            setattr(owner, leaf, before)
            if args.save_predictions:
                save_predictions(args.save_predictions / f"{run.name}_{key}{value}", records)
            results[str(run)][variant] = summary(records) | {"n_skipped": len(skipped)}
            results[str(run)][f"paired_overall_accuracy default vs {variant}"] = paired(default_records[str(run)], records)
            print(run, variant, json.dumps({k: results[str(run)][variant].get(k) for k in ("overall_accuracy", "closed_accuracy", "open_exact_match")}))
    first = str(args.runs[0])
    for other in map(str, args.runs[1:]):
        if split_of[other] != split_of[first]:
            continue  # different held-out questions: no paired test
        test = paired(default_records[first], default_records[other])
        results[f"paired_overall_accuracy {first} vs {other}"] = {"a": first, "b": other, **test}
        print("paired", first, "vs", other, json.dumps(test))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
