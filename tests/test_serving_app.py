"""The server over real HTTP: a real uvicorn server on 127.0.0.1 (a free port) and httpx.
Every endpoint of the Open Inference Protocol, the classify upload (PNG and DICOM), bad
requests answered with a 4xx and one line (never a crash), metrics, 503 while the model is
unverified, and bit flips written to the bundle on disk while it serves under load."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from served_bundles import CLASS_NAMES, digits_bundle, digits_samples, flip_weight_bit, infer_body

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from qtool.serving.app import Limits  # noqa: E402
from qtool.serving.server import RunningServer, ServeOptions  # noqa: E402

LIMITS = Limits(max_body_bytes=64 * 1024, max_batch=16, max_pixels=100_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bundle = digits_bundle(tmp_path_factory.mktemp("app"))
    options = ServeOptions(bundle, port=0, reverify=None, limits=LIMITS, threads=1)
    with RunningServer(options) as running, httpx.Client(base_url=running.url, timeout=30) as c:
        yield running, c


def test_health_and_metadata(server):
    running, client = server
    assert running.url.startswith("http://127.0.0.1:")
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "qtool"
    meta = client.get("/v2/models/lin").json()
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get("/v2/models/lin/ready").json() == {"name": "lin", "ready": True}
    missing = client.get("/v2/models/cnn")
    assert missing.status_code == 404 and "this server runs 'lin'" in missing.json()["error"]
    assert client.get("/nowhere").status_code == 404 and "error" in client.get("/nowhere").json()
    assert client.get("/v2/models/lin/infer").status_code == 405


def test_infer_matches_the_numpy_model(server):
    _, client = server
    x, expected = digits_samples(8)
    response = client.post("/v2/models/lin/infer", json={**infer_body(x), "id": "r1"})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["id"] == "r1" and out["model_name"] == "lin"
    assert out["outputs"][0]["shape"] == [8, 10]
    got = np.array(out["outputs"][0]["data"]).reshape(8, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_bad_requests_get_a_4xx_and_one_line(server):
    _, client = server
    x, _ = digits_samples(1)
    body = infer_body(x)
    cases = [
        ({**body, "inputs": [{**body["inputs"][0], "shape": [1, 1, 8, 9]}]}, 400, "shape"),
        ({**body, "inputs": [{**body["inputs"][0], "datatype": "INT8"}]}, 400, "datatype"),
        ({**body, "inputs": [{**body["inputs"][0], "data": [1.0] * 63}]}, 400, "63 values"),
    ]
    for payload, status, word in cases:
        response = client.post("/v2/models/lin/infer", json=payload)
        assert response.status_code == status and word in response.json()["error"]
    big = infer_body(np.zeros((17, 1, 8, 8), np.float32))
    response = client.post("/v2/models/lin/infer", json=big)
    assert response.status_code == 413 and "limit is 16" in response.json()["error"]
    response = client.post("/v2/models/lin/infer", content=b"x" * (LIMITS.max_body_bytes + 1))
    assert response.status_code == 413 and "65,536" in response.json()["error"]
    assert client.post("/v2/models/lin/infer", content=b"{oops").status_code == 400
    assert client.get("/v2/health/live").status_code == 200  # still up


def test_classify_png_and_dicom_uploads(server, tmp_path):
    from PIL import Image

    _, client = server
    x, expected = digits_samples(2)
    pixels = (x[:, 0] * 255).round().astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels[0]).save(png, format="PNG")
    response = client.post("/v2/models/lin/classify", content=png.getvalue())
    assert response.status_code == 200, response.text
    first = response.json()["predictions"][0]
    assert first["label"] == int(expected[0].argmax())
    assert first["class"] == CLASS_NAMES[first["label"]]
    assert sum(first["probabilities"]) == pytest.approx(1.0)
    assert response.json()["class_names"] == CLASS_NAMES
    pytest.importorskip("pydicom")
    from dicom_files import write_dicom

    dcm = write_dicom(tmp_path / "two.dcm", pixels, WindowCenter=128, WindowWidth=256)
    response = client.post("/v2/models/lin/classify", content=dcm.read_bytes())
    predictions = response.json()["predictions"]
    assert [p["frame"] for p in predictions] == [0, 1]
    assert [p["label"] for p in predictions] == expected.argmax(axis=1).tolist()
    assert predictions[0]["probability"] == pytest.approx(first["probability"], rel=1e-5)


def test_bad_uploads(server):
    from PIL import Image

    _, client = server
    refused = client.post("/v2/models/lin/classify", content=b"%PDF-1.7 a report")
    assert refused.status_code == 415 and "cannot read image the upload" in refused.json()["error"]
    assert client.post("/v2/models/lin/classify", content=b"").status_code == 400
    huge = io.BytesIO()
    Image.fromarray(np.zeros((400, 400), np.uint8)).save(huge, format="PNG")
    response = client.post("/v2/models/lin/classify", content=huge.getvalue())
    assert response.status_code == 413 and "100,000" in response.json()["error"]


def test_metrics_exposition(server):
    _, client = server
    client.get("/v2/health/ready")
    text = client.get("/metrics").text
    assert 'qtool_requests_total{endpoint="ready",code="200"}' in text
    assert 'qtool_request_duration_seconds_bucket{endpoint="ready",le="+Inf"}' in text
    assert "qtool_model_verified 1" in text and "qtool_inference_workers 1" in text
    assert 'qtool_model_info{model="lin",manifest_sha256="' in text
    for line in text.splitlines():  # every sample line is "name{labels} number"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_unverified_model_answers_503_until_restored(tmp_path):
    bundle = digits_bundle(tmp_path, ecc=False)
    options = ServeOptions(bundle, port=0, reverify=None, threads=1)
    x, _ = digits_samples(1)
    with RunningServer(options) as running, httpx.Client(base_url=running.url) as client:
        original, _ = flip_weight_bit(bundle)
        assert not running.state.guard.check()
        response = client.post("/v2/models/lin/infer", json=infer_body(x))
        assert response.status_code == 503 and "re-verification" in response.json()["error"]
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200
        assert "qtool_model_verified 0" in client.get("/metrics").text
        (bundle / "lin.onnx").write_bytes(original)
        assert running.state.guard.check()
        assert client.post("/v2/models/lin/infer", json=infer_body(x)).status_code == 200


def test_bit_flips_on_disk_while_serving_under_load(tmp_path):
    """Flip a weight bit on disk while 4 clients send requests: detected within one period,
    repaired from parity, reloaded; every answer is right; only 503s inside the window."""
    bundle = digits_bundle(tmp_path)
    period = 0.2
    options = ServeOptions(bundle, port=0, reverify=period, threads=1, workers=2)
    x, expected = digits_samples(4)
    log, stop = [], threading.Event()

    def client_loop(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                start = time.time()
                response = client.post("/v2/models/lin/infer", json=infer_body(x))
                log.append((start, time.time(), response.status_code, response.json()))

    with RunningServer(options) as running:
        guard = running.state.guard
        clients = [threading.Thread(target=client_loop, args=(running.url,)) for _ in range(4)]
        for c in clients:
            c.start()
        time.sleep(0.3)
        original, _ = flip_weight_bit(bundle)
        flipped_at = time.time()
        deadline = flipped_at + 10
        while guard.last_restored_at < flipped_at and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        stop.set()
        for c in clients:
            c.join()
    detected, restored = guard.last_mismatch_at, guard.last_restored_at
    assert flipped_at < detected <= flipped_at + period + 1.0  # one period (+ CI slack)
    assert detected <= restored and guard.repairs == 1
    assert (bundle / "lin.onnx").read_bytes() == original
    codes = [code for *_, code, _ in log]
    assert codes.count(200) > 20 and set(codes) <= {200, 503}
    for start, end, code, body in log:
        if code == 200:
            got = np.array(body["outputs"][0]["data"]).reshape(4, 10)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        else:  # a 503 only for requests that overlapped the detection-to-restore window
            assert end >= detected - 0.05 and start <= restored + 0.05
    assert any(start > restored for start, _, code, _ in log if code == 200)


def matmul_chain_bundle(folder, layers: int = 6, width: int = 512):
    """A model slow enough (~10 ms a batch) for inference runs to overlap."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from qtool.deploy.bundle import package

    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.05, (width, width)).astype(np.float32) for _ in range(layers)]
    nodes = [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"]) for i in range(layers)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("h0", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(f"h{layers}", TensorProto.FLOAT, ["N", width])],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    folder.mkdir()
    onnx.save(model, str(folder / "chain.onnx"))
    return package(folder / "chain.onnx", folder / "bundle").out


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_bound_the_inference_runs_in_flight(tmp_path, workers):
    """--workers N: N inference threads share one session; never more runs at once."""
    from concurrent.futures import ThreadPoolExecutor

    bundle = matmul_chain_bundle(tmp_path / "m")
    options = ServeOptions(bundle, port=0, reverify=None, workers=workers, threads=1)
    x = np.random.default_rng(1).random((16, 512), dtype=np.float32)
    body = {"inputs": [{"name": "h0", "shape": [16, 512], "datatype": "FP32", "data": x.tolist()}]}
    with RunningServer(options) as running:

        def call(_):
            with httpx.Client(base_url=running.url, timeout=60) as client:
                return client.post("/v2/models/chain/infer", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(call, range(16))) == [200] * 16
        with httpx.Client(base_url=running.url) as client:
            assert f"qtool_inference_workers {workers}" in client.get("/metrics").text
        peak = running.state.running.peak
    assert peak == workers  # 2 workers do overlap (ORT releases the GIL); 1 never does
