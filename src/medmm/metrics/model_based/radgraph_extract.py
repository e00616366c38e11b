"""The RadGraph extractor: the published DyGIE++ model through the ``radgraph`` package (optional).

The entity/relation model of F1-RadGraph is a DyGIE++ span model on a BERT encoder, trained on
RadGraph (``radgraph``: Jain et al. 2021) or RadGraph-XL (``radgraph-xl``: Delbrouck et al.,
Findings of ACL 2024). Its code is the ``radgraph`` package on PyPI (MIT licence, a vendored
copy of AllenNLP); its weights are one archive per model in the Hub repository
``StanfordAIMI/RRG_scorers`` (``radgraph.tar.gz``, ``radgraph-xl.tar.gz``: ``config.json``,
``vocabulary/``, ``weights.th``). medmm does not reimplement the model: it finds the archive
(a file, a folder holding it, or the Hub repo id), checksums it (optionally against a pin,
``WHERE#sha256=HEX``), unpacks it once into ``$MEDMM_CACHE/radgraph/<sha256 prefix>/`` (a
different file never reuses another's folder) and lets the package run it on CPU. The encoder's
tokeniser is named in ``config.json`` and read through ``transformers`` (from the Hugging Face
cache when ``HF_HUB_OFFLINE=1``).

Scoring is :mod:`medmm.metrics.model_based.radgraph_f1` (torch-free).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError
from medmm.metrics.model_based.radgraph_f1 import ReportGraph
from medmm.metrics.model_based.weights import WeightsLayoutError, check_pin, resolve_weights, sha256_file, split_pin

HUB_REPO = "StanfordAIMI/RRG_scorers"
# medmm metric name -> (the radgraph package's model_type, the published archive's file name)
MODELS = {"radgraph": ("radgraph", "radgraph.tar.gz"), "radgraph-xl": ("radgraph-xl", "radgraph-xl.tar.gz")}
# radgraph 0.1.18 imports requests without declaring it, and its vendored AllenNLP calls
# tokenizer.encode_plus, which transformers 5 removed: it runs with transformers 4.x only
INSTALL_HINT = ('pip install radgraph requests "transformers>=4.39,<5"  (in an environment that already has torch, '
                'so pip keeps that torch)')


class ExtractorMissingError(MedmmError, ImportError):
    """The ``radgraph`` package, which runs the published extractor, is not installed."""


def cache_root() -> Path:
    """Where unpacked archives live: ``$MEDMM_CACHE/radgraph`` (default ``~/.cache/medmm/radgraph``)."""
    return Path(os.environ.get("MEDMM_CACHE") or Path.home() / ".cache" / "medmm") / "radgraph"


def require_package() -> None:
    """Raise ExtractorMissingError (one line) unless ``radgraph`` can be imported with a transformers it runs on."""
    from importlib.metadata import PackageNotFoundError, version

    if importlib.util.find_spec("radgraph") is None:
        raise ExtractorMissingError(f"RadGraph-F1 needs the 'radgraph' package to run the published extractor; "
                                    f"install it with: {INSTALL_HINT}")
    try:
        tf = version("transformers")
    except PackageNotFoundError:
        tf = None
    if tf is None or int(tf.split(".")[0]) >= 5:
        raise ExtractorMissingError(f"the radgraph package runs with transformers 4.x only (found {tf}); "
                                    f"use an environment made with: {INSTALL_HINT}")


def unpack(archive: Path, model_type: str, sha256: str, root: Path | None = None) -> Path:
    """Unpack ``archive`` (once) so that ``<result>/<model_type>/config.json`` exists; returns ``<result>``,
    the folder the package takes as ``model_cache_dir``."""
    from medmm.fileio import atomic_dir

    base = (root or cache_root()) / sha256[:16]
    target = base / model_type
    if not (target / "config.json").is_file():
        try:
            with atomic_dir(target, keep_existing=True) as tmp, tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")  # refuses absolute paths, '..' and device files
                if not (tmp / "config.json").is_file():
                    raise WeightsLayoutError(f"{archive}: not a RadGraph model archive (no config.json at its top level; "
                                             f"holds {sorted(p.name for p in tmp.iterdir())[:5]})")
        except (tarfile.TarError, OSError) as exc:
            raise WeightsLayoutError(f"{archive}: cannot be unpacked as a .tar.gz archive ({exc})") from exc
    return base


def package_model(model_type: str, model_cache_dir: Path) -> Callable[[list[str]], dict[str, Any]]:
    """The package's ``RadGraph`` on CPU, reading the unpacked archive (it downloads nothing when
    ``<model_cache_dir>/<model_type>`` is filled)."""
    require_package()
    from radgraph import RadGraph

    with contextlib.redirect_stdout(sys.stderr):  # it prints its device; keep medmm's stdout clean
        return RadGraph(model_type=model_type, model_cache_dir=str(model_cache_dir), cuda=-1)


class RadGraphExtractor:
    """Entity/relation graphs of reports from a published RadGraph archive named by ``spec``."""

    def __init__(self, name: str, spec: str, *, cache: Path | None = None):
        if name not in MODELS:
            raise ValueError(f"unknown RadGraph model {name!r}; known: {list(MODELS)}")
        require_package()  # before hashing hundreds of MB
        self.name = name
        self.model_type, filename = MODELS[name]
        where, pin = split_pin(spec)
        self.path: Path = resolve_weights(where, filename)
        self.sha256 = sha256_file(self.path)
        check_pin(self.path, self.sha256, pin)
        self.model_dir = unpack(self.path, self.model_type, self.sha256, cache)
        config = json.loads((self.model_dir / self.model_type / "config.json").read_text())
        self.encoder = (config.get("model", {}).get("embedder", {}).get("token_embedders", {})
                        .get("bert", {}).get("model_name"))
        self.model = package_model(self.model_type, self.model_dir)

    def graphs(self, reports: Sequence[str]) -> list[ReportGraph | None]:
        """One graph per report; ``None`` for an empty text, which F1-RadGraph scores 0 without extraction."""
        todo = [i for i, r in enumerate(reports) if len(r) > 0]
        out: list[ReportGraph | None] = [None] * len(reports)
        if todo:
            with contextlib.redirect_stdout(sys.stderr):
                annotations = self.model([reports[i] for i in todo])
            for k, i in enumerate(todo):
                if str(k) not in annotations:  # the package logs and skips a report it fails on
                    raise MedmmError(f"RadGraph extractor returned no graph for report {i} ({reports[i][:60]!r})")
                out[i] = ReportGraph.from_annotation(annotations[str(k)])
        return out

    def provenance(self) -> dict[str, Any]:
        """What identifies these graphs: archive, its sha256, model type, encoder, package version."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            pkg = version("radgraph")
        except PackageNotFoundError:
            pkg = None
        return {"weights": str(self.path), "weights_sha256": self.sha256, "model_type": self.model_type,
                "encoder": self.encoder, "radgraph_package": pkg}
