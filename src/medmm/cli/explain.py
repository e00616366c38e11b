"""`medmm explain`: heatmaps, token attributions, modality contributions and faithfulness checks
for chosen samples of a trained run (a thin wrapper over medmm.explain_run.explain_run)."""

from __future__ import annotations

from pathlib import Path

import typer

from medmm.cli.app import app


@app.command()
def explain(
    run_dir: Path = typer.Argument(..., help="A run directory written by `medmm train`, of a task with an explainer (Task.explainable)."),
    data: Path = typer.Option(..., "--data", help="Dataset root in its original layout."),
    ids: str = typer.Option(..., "--ids", help="Comma-separated sample ids, e.g. ID1,ID2."),
    out: Path = typer.Option(..., "--out", help="Output folder: index.html, explanations.json, <id>/*.png."),
    dataset: str | None = typer.Option(None, "--dataset", help="Registered dataset name (default: the run's)."),
    split: str | None = typer.Option(None, "--split", help="Split holding the ids (default: search all splits)."),
    methods: str = typer.Option(
        "gradcam,gradcam++,integrated_gradients,occlusion,attention,tokens,modality", "--methods", help="Comma-separated methods."
    ),
    ig_steps: int = typer.Option(16, "--ig-steps", help="Integrated-gradients steps (images and tokens)."),
    n_random: int = typer.Option(5, "--n-random", help="Random maps per faithfulness baseline."),
    scale: int = typer.Option(3, "--scale", help="PNG upscaling factor (nearest)."),
    threads: int = typer.Option(1, "--threads", help="torch intra-op threads (0 = torch's default)."),
    set_: list[str] | None = typer.Option(None, "--set", help="model.KEY=VALUE override of the run's model section "
                                          "(repeatable; 'model.' may be left out), e.g. chain_of_thought=true."),
) -> None:
    """Explain samples of a trained run; writes overlays (PNG), token highlights and an index.html.

    Tasks whose model reads as a classifier of image and text: heatmaps with faithfulness checks,
    token attributions, modality Shapley values. Tasks that map words or sentences to image
    regions: word-to-region maps. The task's `explainable` hook says which.
    """
    from medmm.explain_run import explain_run

    id_list = [i.strip() for i in ids.split(",") if i.strip()]
    summary = explain_run(run_dir, data, id_list, out, dataset=dataset, split=split,
                          methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                          ig_steps=ig_steps, n_random=n_random, scale=scale, threads=threads or None,
                          model_overrides=[o if o.startswith("model.") else f"model.{o}" for o in set_ or []])
    for r in summary["samples"]:
        if "heatmaps" not in r:  # word-region pages
            typer.echo(f"{r['id']}: {len(r['maps'])} word/sentence maps")
            continue
        flags = [m for m, h in r["heatmaps"].items() if h["unfaithful"]]
        if "log_prob" in r:  # generated text
            line = f"{r['id']}: {r['answer']!r} (log p of {r['scored']} = {r['log_prob']:.3f})"
        else:
            line = f"{r['id']}: {r['explained_class']} (p={r['probability']:.3f})"
        if "modality" in r:
            line += f"  shapley image {r['modality']['image']:+.3f} text {r['modality']['text']:+.3f}"
        if flags:
            line += f"  UNFAITHFUL: {', '.join(flags)}"
        typer.echo(line)
    for m, why in summary.get("unavailable", {}).items():  # e.g. gradients of a model explained on its raw images
        typer.echo(f"{m} unavailable: {why}")
    typer.echo(f"wrote {summary['index']}")
