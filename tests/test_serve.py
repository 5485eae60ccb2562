"""`textcls serve`: /predict answers what `predict` writes, in order, batched across concurrent requests;
every bad request is a 4xx JSON error; auth, /info, the page; SIGTERM drains and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi.testclient")  # the serve extra, and the HTTP client its TestClient needs (test extra)

from fastapi.testclient import TestClient

from conftest import ROOT, child_env, sst2_slice, tiny_config, write_tsv
from textcls.errors import ConfigError
from textcls.io import sha256_file
from textcls.predict import predict_file
from textcls.predictor import run_predictor
from textcls.run.load import load_run
from textcls.serve.app import build_app
from textcls.serve.batcher import MicroBatcher
from textcls.serve.options import ServeOptions, check_options
from textcls.train.loop import train

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained SST-2 run (two labels)."""
    tmp = tmp_path_factory.mktemp("serve")
    train_file = write_tsv(tmp / "train.tsv", sst2_slice(300))
    valid_file = write_tsv(tmp / "valid.tsv", sst2_slice(60, "dev"))
    cfg = tiny_config(train_file, valid_file, tmp / "run")
    train(cfg, tmp / "run", quiet=True)
    return tmp / "run"


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


def _client(run, **options) -> TestClient:
    return TestClient(build_app(run, run_predictor(run), ServeOptions(**options)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(run):
    with _client(run, max_texts=50, max_body=16384) as c:
        yield c


TEXTS = [t for t, _ in sst2_slice(40, "dev", offset=100)]


def test_predictions_equal_predict(run, client, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    predict_file(run, str(source), str(tmp_path / "out.jsonl"), top_k=2)
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    response = client.post("/predict", json={"texts": TEXTS, "top_k": 2})
    assert response.status_code == 200
    got = response.json()["predictions"]
    assert len(got) == len(expected) == len(TEXTS)
    for mine, theirs in zip(got, expected):
        assert mine["label"] == theirs["label"]
        assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-6)
        assert [t["label"] for t in mine["top_k"]] == [t["label"] for t in theirs["top_k"]]
        for a, b in zip(mine["top_k"], theirs["top_k"]):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)
    assert {len(p["top_k"]) for p in got} == {2}
    # top_k defaults to 1: only the best label
    single = client.post("/predict", json={"texts": TEXTS[:3]}).json()["predictions"]
    assert [p["top_k"] for p in single] == [[{"label": p["label"], "probability": p["probability"]}] for p in single]


def test_concurrent_requests_keep_order_and_are_batched(run):
    expected = run_predictor(run).predict_proba(TEXTS)
    results: dict[int, list] = {}

    def ask(c: TestClient, i: int) -> None:
        texts = TEXTS[i:i + 1 + i % 3]  # requests of 1 to 3 texts
        results[i] = (texts, c.post("/predict", json={"texts": texts, "top_k": 2}).json()["predictions"])

    # A long wait: the threads' requests land in a few shared batches
    with _client(run, max_wait_ms=300, max_batch=64) as c:
        threads = [threading.Thread(target=ask, args=(c, i)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        health = c.get("/health").json()
    assert len(results) == 16
    for i, (texts, predictions) in results.items():
        assert len(predictions) == len(texts)
        for j, prediction in enumerate(predictions):
            row = expected[i + j]
            assert prediction["label"] == run.labels[int(row.argmax())]
            assert prediction["probability"] == pytest.approx(float(row.max()), abs=1e-6)
    assert health["texts"] == sum(len(texts) for texts, _ in results.values())
    assert health["batches"] < 16  # some requests shared a predictor call


def test_batcher_gathers_up_to_max_batch_and_splits_results_back():
    calls: list[list[str]] = []

    def predict(texts, pairs):
        calls.append(list(texts))
        return np.array([[float(t), 2 * float(t)] for t in texts], dtype=np.float32)

    async def scenario():
        batcher = MicroBatcher(predict, max_batch=4, max_wait_ms=50)
        await batcher.start()
        try:
            requests = [["1"], ["2", "3"], ["4"], ["5", "6"], ["7"]]
            answers = await asyncio.gather(*(batcher.submit(r) for r in requests))
        finally:
            await batcher.stop()
        return requests, answers

    requests, answers = asyncio.run(scenario())
    for request, answer in zip(requests, answers):
        np.testing.assert_array_equal(answer[:, 0], [float(t) for t in request])
    # queued together: 1+2+1 texts fill the first batch of 4, the rest form the second; no request is split
    assert calls == [["1", "2", "3", "4"], ["5", "6", "7"]]


def test_a_failing_predictor_answers_500_json_and_the_server_goes_on(run):
    calls = []

    class Flaky:
        labels, task = run.labels, run.cfg.data.task

        def predict_proba(self, texts, pairs=None):
            calls.append(texts)
            if len(calls) == 1:
                raise RuntimeError("boom /secret/path")
            return run_predictor(run).predict_proba(texts, pairs)

    with TestClient(build_app(run, Flaky()), raise_server_exceptions=False) as c:
        first = c.post("/predict", json={"texts": ["a"]})
        second = c.post("/predict", json={"texts": ["a"]})
    assert first.status_code == 500 and set(first.json()) == {"error"}
    assert "Traceback" not in first.text and "/secret/path" not in first.text
    assert second.status_code == 200


JSON = {"Content-Type": "application/json"}
BAD_REQUESTS = {
    "malformed json": ("POST", "/predict", b'{"texts": ["a"', JSON, 400),
    "empty body": ("POST", "/predict", b"", JSON, 400),
    "not utf-8": ("POST", "/predict", b'{"texts": ["\xff\xfe"]}', JSON, 400),
    "json array body": ("POST", "/predict", b'["a", "b"]', JSON, 400),
    "json string body": ("POST", "/predict", b'"a"', JSON, 400),
    "json null body": ("POST", "/predict", b"null", JSON, 400),
    "texts missing": ("POST", "/predict", b'{"top_k": 1}', JSON, 400),
    "texts a string": ("POST", "/predict", b'{"texts": "a"}', JSON, 400),
    "texts null": ("POST", "/predict", b'{"texts": null}', JSON, 400),
    "texts an object": ("POST", "/predict", b'{"texts": {"a": 1}}', JSON, 400),
    "empty texts": ("POST", "/predict", b'{"texts": []}', JSON, 400),
    "number item": ("POST", "/predict", b'{"texts": ["a", 3]}', JSON, 400),
    "null item": ("POST", "/predict", b'{"texts": [null]}', JSON, 400),
    "nested list item": ("POST", "/predict", b'{"texts": [["a"]]}', JSON, 400),
    "unpaired surrogate": ("POST", "/predict", b'{"texts": ["ok \\ud800 no"]}', JSON, 400),
    "lone low surrogate": ("POST", "/predict", b'{"texts": ["\\udfff"]}', JSON, 400),
    "too many texts": ("POST", "/predict", json.dumps({"texts": ["a"] * 51}).encode(), JSON, 413),
    "body over max-body": ("POST", "/predict", json.dumps({"texts": ["x" * 20000]}).encode(), JSON, 413),
    "top_k zero": ("POST", "/predict", b'{"texts": ["a"], "top_k": 0}', JSON, 400),
    "top_k negative": ("POST", "/predict", b'{"texts": ["a"], "top_k": -2}', JSON, 400),
    "top_k float": ("POST", "/predict", b'{"texts": ["a"], "top_k": 1.5}', JSON, 400),
    "top_k string": ("POST", "/predict", b'{"texts": ["a"], "top_k": "2"}', JSON, 400),
    "top_k bool": ("POST", "/predict", b'{"texts": ["a"], "top_k": true}', JSON, 400),
    "top_k NaN": ("POST", "/predict", b'{"texts": ["a"], "top_k": NaN}', JSON, 400),
    "top_k over labels": ("POST", "/predict", b'{"texts": ["a"], "top_k": 3}', JSON, 400),
    "unknown field": ("POST", "/predict", b'{"texts": ["a"], "text": "b"}', JSON, 400),
    "pairs on a single-text run": ("POST", "/predict", b'{"texts": ["a"], "pairs": ["b"]}', JSON, 400),
    "deeply nested": ("POST", "/predict", b"[" * 100000 + b"]" * 100000, JSON, 413),
    "nested within the limit": ("POST", "/predict", b'{"texts": ' + b"[" * 2000 + b"]" * 2000 + b"}", JSON, 400),
    "text/plain": ("POST", "/predict", b'{"texts": ["a"]}', {"Content-Type": "text/plain"}, 415),
    "form encoded": ("POST", "/predict", b"texts=a", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    "no content type": ("POST", "/predict", b'{"texts": ["a"]}', {}, 415),
    "GET /predict": ("GET", "/predict", None, {}, 405),
    "PUT /predict": ("PUT", "/predict", b'{"texts": ["a"]}', JSON, 405),
    "POST /health": ("POST", "/health", b"{}", JSON, 405),
    "DELETE /": ("DELETE", "/", None, {}, 405),
    "unknown route": ("GET", "/nope", None, {}, 404),
    "path traversal": ("GET", "/../../etc/passwd", None, {}, 404),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_answer_4xx_json(client, case):
    method, path, body, headers, status = BAD_REQUESTS[case]
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert set(payload) == {"error"} and isinstance(payload["error"], str) and payload["error"]
    assert "Traceback" not in response.text


def test_unusual_but_valid_texts_are_predicted(client):
    texts = ["", "   ", "\u0000\u0001", "\U0001F600\U0001F44D\U0001F3FD", "\u0645\u0631\u062d\u0628\u0627", "x" * 10000,
             "\ufeffbom", "a\nb\tc\r\n", "\U0010FFFF"]
    response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200 and len(response.json()["predictions"]) == len(texts)
    bom = client.post("/predict", content='\ufeff{"texts": ["a"]}'.encode(), headers=JSON)  # a UTF-8 BOM is allowed
    assert bom.status_code == 200


def test_the_server_still_answers_after_the_bad_requests(client):
    for method, path, body, headers, _ in BAD_REQUESTS.values():
        client.request(method, path, content=body, headers=headers)
    assert client.post("/predict", json={"texts": ["still fine"]}).status_code == 200


def test_api_key(run):
    with _client(run, api_key=KEY) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                        {"Authorization": f"Basic {KEY}"}, {"Authorization": f"Bearer {KEY}x"}):
            for method, path in (("post", "/predict"), ("get", "/info")):
                kwargs = {"json": {"texts": ["a"]}} if method == "post" else {}
                response = getattr(c, method)(path, headers=headers, **kwargs)
                assert response.status_code == 401, (headers, path)
                assert set(response.json()) == {"error"}
                assert response.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": f"Bearer {KEY}"}
        assert c.post("/predict", json={"texts": ["a"]}, headers=good).status_code == 200
        assert c.get("/info", headers=good).status_code == 200
        assert c.get("/health").status_code == 200  # for load balancers: no key
        page = c.get("/").text
    assert 'id="key"' in page and KEY not in page


def test_info(client, run, run_dir):
    info = client.get("/info").json()
    assert info["labels"] == run.labels
    assert info["weights_sha256"] == {"model.safetensors": sha256_file(run_dir / "model.safetensors")}
    assert info["textcls_version"] and info["pairs"] is False and info["task"] == "single"
    assert info["limits"]["max_texts"] == 50 and info["limits"]["api_key"] is False
    assert client.get("/health").json()["status"] == "ok"
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_page(client, run):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<textarea" in page and 'fetch("predict"' in page and json.dumps(run.labels) in page
    assert 'id="key"' not in page  # no key asked for without --api-key
    assert "http://" not in page and "https://" not in page  # self-contained: nothing from elsewhere


def test_options_are_checked():
    with pytest.raises(ConfigError, match="--max-batch.*--max-body|--port"):
        check_options("127.0.0.1", 70000, ServeOptions(max_batch=0, max_body=1))
    with pytest.raises(ConfigError, match="api-key"):
        check_options("127.0.0.1", 8000, ServeOptions(api_key=" "))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_server_answers_then_drains_on_sigterm(run_dir):
    port = _free_port()
    env = child_env(OMP_NUM_THREADS="1", TEXTCLS_API_KEY=KEY)
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "serve", str(run_dir), "--port", str(port),
                             "--max-wait-ms", "1500"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    assert json.load(r)["status"] == "ok"
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        request = urllib.request.Request(f"{url}/predict", data=json.dumps({"texts": TEXTS[:5]}).encode(),
                                         headers={**JSON, "Authorization": f"Bearer {KEY}"})
        # A request in flight when SIGTERM arrives still gets its answer: the 1.5 s batching wait holds it.
        answers: list = []

        def ask():
            with urllib.request.urlopen(request, timeout=60) as r:
                answers.append(json.load(r))

        ask()
        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        asker.join(60)
        assert proc.wait(60) == 0, proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(answers) == 2 and all(len(a["predictions"]) == 5 for a in answers)


def _random_run(tmp: Path, labels: list[str], **data) -> Path:
    """A run directory with random weights (what is tested is how inputs reach the model and answers leave it)."""
    import torch

    from textcls.data.tokenizer import train_tokenizer
    from textcls.run.info import save_run_files, write_run_info
    from textcls.run.load import build_model
    from textcls.run.weights import save_weights

    cfg = tiny_config(tmp / "unused.tsv", None, tmp / "run", data=data)
    tokenizer = train_tokenizer([t for t, _ in sst2_slice(300)], cfg.tokenizer)
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer, len(labels))
    save_run_files(tmp / "run", cfg, tokenizer, labels)
    digest = save_weights(model.state_dict(), tmp / "run" / "model.safetensors")
    write_run_info(tmp / "run", sha256={"model.safetensors": digest})
    return tmp / "run"


@pytest.fixture(scope="module")
def pair_run_dir(tmp_path_factory) -> Path:
    return _random_run(tmp_path_factory.mktemp("pairs"), ["entailment", "neutral", "contradiction"],
                       text_columns=["premise", "hypothesis"])


def test_a_multilabel_run_lists_the_labels_over_the_threshold(tmp_path):
    run = load_run(_random_run(tmp_path, ["a", "b", "c", "d"], task="multilabel"))
    expected = run_predictor(run).predict_proba(TEXTS[:8])
    with _client(run) as c:
        got = c.post("/predict", json={"texts": TEXTS[:8], "top_k": 4}).json()["predictions"]
    for row, prediction in zip(expected, got):
        assert prediction["labels"] == [run.labels[i] for i in np.argsort(-row, kind="stable") if row[i] >= 0.5]
        assert [t["probability"] for t in prediction["top_k"]] == pytest.approx(sorted(row, reverse=True), abs=1e-6)


def test_a_pair_run_reads_pairs(pair_run_dir):
    run = load_run(pair_run_dir)
    firsts, seconds = TEXTS[:6], TEXTS[6:12]
    expected = run_predictor(run).predict_proba(firsts, seconds)
    alone = run_predictor(run).predict_proba(firsts)
    with _client(run) as c:
        response = c.post("/predict", json={"texts": firsts, "pairs": seconds, "top_k": 3})
        assert response.status_code == 200
        got = np.array([[{t["label"]: t["probability"] for t in p["top_k"]}[label] for label in run.labels]
                        for p in response.json()["predictions"]])
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert not np.allclose(got, alone, atol=1e-4)  # the second texts were used
        missing = c.post("/predict", json={"texts": firsts})
        uneven = c.post("/predict", json={"texts": firsts, "pairs": seconds[:2]})
        info = c.get("/info").json()
    assert missing.status_code == uneven.status_code == 400 and "pairs" in missing.json()["error"]
    assert info["pairs"] is True and info["text_columns"] == ["premise", "hypothesis"]


def test_cli_refuses_bad_options_and_a_busy_port(run_dir):
    from typer.testing import CliRunner

    from textcls.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["serve", str(run_dir), "--max-batch", "0", "--max-texts", "0"])
    assert bad.exit_code == 2 and "--max-batch" in bad.output and "--max-texts" in bad.output
    missing = runner.invoke(app, ["serve", str(run_dir.parent / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = runner.invoke(app, ["serve", str(run_dir), "--port", str(busy.getsockname()[1])])
    assert taken.exit_code == 2 and "--port" in taken.output
