"""The service against `medmm predict` for every task, micro-batching, auth, health and metrics.

Runs: 2 training steps per task on the bundled CC0 VQA-RAD sample (tests/serve_runs.py), made
once per session. The service is driven in-process with FastAPI's TestClient.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("lightning")
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.schema import TEXT_FIELDS
from medmm.serve.app import create_app
from medmm.serve.predictor import Predictor
from serve_runs import TASK_RUNS, data_of, trained_package

N_CHECK = 6  # samples compared per task


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve_runs")


@pytest.fixture(scope="module")
def samples():
    return load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples


def _close(a, b, path="") -> None:
    """Equal JSON values, floats to 1e-5 (a batch of 1 vs a batch of 32 may differ in the last bits)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _form(sample, inputs: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in sample.text.items() if k in inputs and k in TEXT_FIELDS}


# Record fields `medmm predict` copies from the dataset's annotations (Sample.meta), which an
# uploaded image and question do not carry; every predicted field is compared.
ECHOED_ANNOTATIONS = {"question_type"}
INTERNAL = {"id", "group", "reference", "image_path", "image", *ECHOED_ANNOTATIONS}  # not in service replies


@pytest.mark.parametrize("trained", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("task", sorted(TASK_RUNS))
def test_service_predictions_equal_medmm_predict(task, trained, base, tmp_path):
    from medmm.cli import app as cli

    dataset, root, split = data_of(task)
    if not root.exists():
        pytest.skip(f"{dataset} not found at {root}")
    run, pkg = trained_package(task, base, trained)
    out = tmp_path / "pred.jsonl"
    res = CliRunner().invoke(cli, ["predict", str(run), "--data", str(root), "--split", split, "--out", str(out)])
    assert res.exit_code == 0, res.output
    chosen = load_dataset(dataset, root, split).samples[:N_CHECK]
    ids = {s.id for s in chosen}
    expected: dict[str, list[dict]] = {}
    for r in map(json.loads, out.read_text().splitlines()):  # several records per sample: "<id>#<class>"
        sid = r["id"] if r["id"] in ids else r["id"].split("#", 1)[0]
        expected.setdefault(sid, []).append({k: v for k, v in r.items() if k not in INTERNAL})
    predictor = Predictor(pkg)
    with TestClient(create_app({task: predictor}, max_batch=4, max_wait_ms=20)) as client:
        inputs = client.get("/v1/models").json()["models"][0]["inputs"]
        # concurrent requests, so the micro-batcher groups them
        def post(s):  # every view of the study, in order
            files = [("image", Path(im.path).read_bytes()) for im in s.images]
            return client.post(f"/v1/models/{task}/predict", files=files, data=_form(s, inputs))

        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(post, chosen))
    for s, r in zip(chosen, replies, strict=True):
        assert r.status_code == 200, r.text
        got = r.json()["prediction"]
        got_records = got.get("records", [got])
        assert len(got_records) == len(expected[s.id]), s.id
        for g, want in zip(got_records, expected[s.id], strict=True):
            assert all(g.get(k) is None for k in ECHOED_ANNOTATIONS)  # never invented by the service
            _close({k: v for k, v in g.items() if k not in ECHOED_ANNOTATIONS}, want, s.id)


def test_micro_batching_groups_requests_and_equals_one_at_a_time(base, samples):
    from medmm.serve.batcher import MicroBatcher

    _, pkg = trained_package("vqa", base)
    p = Predictor(pkg)
    sizes: list[int] = []
    gate = threading.Event()
    batcher = MicroBatcher(p, max_batch=4, max_wait_ms=200, on_batch=lambda n, s: sizes.append(n))
    try:
        chosen = [p.sample(s.images[0].path, sample_id=f"s{i}", question=s.text["question"]) for i, s in enumerate(samples[:8])]
        futures = [batcher.submit(s) for s in chosen]
        gate.set()
        batched = [f.result(timeout=60) for f in futures]
    finally:
        batcher.close()
    assert sum(sizes) == 8 and max(sizes) == 4  # grouped, never over max_batch
    for s, (rec, err) in zip(chosen, batched, strict=True):
        assert err is None
        one = p.predict_samples([s])[0][0]
        _close(rec, one)


def test_models_health_metrics_openapi(base):
    _, pkg = trained_package("diagnosis", base)
    with TestClient(create_app({"dx": Predictor(pkg)})) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["models"] == ["dx"]
        m = client.get("/v1/models").json()["models"][0]
        assert m["task"] == "diagnosis" and m["outputs"]["labels"] and "question" in m["inputs"]
        api = client.get("/openapi.json").json()
        assert {"/v1/models/{name}/predict", "/v1/models/{name}/predict_batch", "/v1/models"} <= set(api["paths"])
        assert client.post("/v1/models/nope/predict", files={"image": b"x"}).status_code == 404
        text = client.get("/metrics").text
        assert 'medmm_requests_total{endpoint="predict",model="?",status="404"} 1.0' in text


def test_batch_endpoint_and_explanation(base, samples):
    _, pkg = trained_package("diagnosis", base)
    chosen = samples[:3]
    with TestClient(create_app({"dx": Predictor(pkg)})) as client:
        files = [("image", Path(s.images[0].path).read_bytes()) for s in chosen]
        data = {"question": [s.text["question"] for s in chosen]}
        r = client.post("/v1/models/dx/predict_batch", files=files, data=data)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 3
        for s, res in zip(chosen, results, strict=True):
            with open(s.images[0].path, "rb") as f:
                one = client.post("/v1/models/dx/predict", files={"image": f}, data={"question": s.text["question"]}).json()
            _close(res["prediction"], one["prediction"])
        with open(chosen[0].images[0].path, "rb") as f:
            r = client.post("/v1/models/dx/predict", files={"image": f}, data={"question": "x", "explain": "gradcam"})
        assert r.status_code == 200, r.text
        ex = r.json()["explanation"]
        import base64

        assert base64.b64decode(ex["png_base64"]).startswith(b"\x89PNG") and ex["explained_class"] in m_labels(client)


def m_labels(client) -> list[str]:
    return client.get("/v1/models").json()["models"][0]["outputs"]["labels"]


def test_token_auth(base):
    from medmm.errors import MedmmError
    from medmm.serve.server import check_auth

    with pytest.raises(MedmmError, match="not a loopback address"):
        check_auth("0.0.0.0", None)
    check_auth("127.0.0.1", None)
    check_auth("::1", None)
    check_auth("0.0.0.0", "x" * 20)
    _, pkg = trained_package("diagnosis", base)
    token = "s3cret-token-0123456789"
    with TestClient(create_app({"dx": Predictor(pkg)}, token=token)) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # probes need no token
