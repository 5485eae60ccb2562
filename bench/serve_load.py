"""Load test of `textcls serve`: N concurrent clients against a real server on localhost, next to `textcls predict`.

    PYTHONPATH=. python bench/serve_load.py --run runs/demo                      # 8 clients, 1 and 32 texts, 20 s each
    PYTHONPATH=. python bench/serve_load.py --run runs/demo --sizes 1 --seconds 20
    PYTHONPATH=. python bench/serve_load.py                                      # trains the demo first (~1 min)

What it does:
  1. `textcls predict RUN TEXTS` in a subprocess, the whole process timed (start-up included, as a user
     sees it): the reference labels and examples/s. The run's predictor in this process on the same
     texts gives the model-only examples/s beside it.
  2. `textcls serve RUN` on a free loopback port; waits for /health.
  3. For each request size (texts per request): N client threads, each with its own keep-alive
     connection, send requests of consecutive texts (client k starts at a different offset) for a
     bounded time; every answer's labels are checked against predict's.
  4. SIGTERM to the server, which must exit 0.
Prints, per request size: requests, texts/s, p50/p99 latency, and the wrong / lost / 5xx counts.
The clients run on the same machine as the server and share its cores; figures move with the load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textcls.data.readers import detect_format, iter_records
from textcls.device import machine_summary
from textcls.predictor import run_predictor
from textcls.run.info import load_run_config
from textcls.run.load import load_run

ROOT = Path(__file__).resolve().parents[1]
DEMO_TEST = ROOT / "data" / "ag_news_demo" / "test.csv"


def _textcls(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textcls", *args], check=True, **kwargs)


def read_inputs(run_dir: Path, path: Path) -> tuple[list[str], list[str] | None]:
    """The texts (and second texts of pairs) of `path`, read with the run's data options as predict reads them."""
    data = load_run_config(run_dir).data
    data.format = detect_format(str(path), data)
    data.on_bad_lines = "error"
    records = list(iter_records(str(path), data, labelled=False, allow_empty=True))
    pairs = [r.text_pair or "" for r in records] if len(data.text_columns) == 2 else None
    return [r.text for r in records], pairs


def predict_reference(run_dir: Path, path: Path, work: Path) -> tuple[list[str], float]:
    """predict's labels for every input row, and the seconds of the whole `textcls predict` process."""
    out = work / "predict.jsonl"
    start = time.perf_counter()
    _textcls("predict", str(run_dir), str(path), "--output", str(out), "--device", "cpu", capture_output=True)
    seconds = time.perf_counter() - start
    labels = [json.loads(line)["label"] for line in out.read_text(encoding="utf-8").splitlines()]
    return labels, seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, max_batch: int, max_wait_ms: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "serve", str(run_dir), "--port", str(port),
                             "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer /health within 120 s")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    texts: int = 0
    wrong: int = 0  # texts whose label differs from predict's
    lost: int = 0  # requests without a complete answer (connection error, timeout, missing predictions)
    server_errors: int = 0  # 5xx
    other: int = 0  # other non-200 answers
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(port: int, k: int, size: int, texts, pairs, expected, stop_at: float, tally: Tally) -> None:
    n = len(texts)
    offset = (k * n) // 8 + k  # clients start at different texts
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < stop_at:
        rows = [(offset + i) % n for i in range(size)]
        offset = (offset + size) % n
        body = {"texts": [texts[i] for i in rows]}
        if pairs is not None:
            body["pairs"] = [pairs[i] for i in rows]
        start = time.perf_counter()
        try:
            conn.request("POST", "/predict", json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - start
        except (OSError, http.client.HTTPException):
            with tally.lock:
                tally.lost += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        with tally.lock:
            if response.status >= 500:
                tally.server_errors += 1
            elif response.status != 200:
                tally.other += 1
            else:
                predictions = json.loads(answer).get("predictions", [])
                if len(predictions) != len(rows):
                    tally.lost += 1
                    continue
                tally.latencies.append(elapsed)
                tally.texts += len(rows)
                tally.wrong += sum(p["label"] != expected[i] for p, i in zip(predictions, rows))
    conn.close()


def load(port: int, clients: int, size: int, seconds: float, texts, pairs, expected) -> tuple[Tally, float]:
    tally = Tally()
    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(port, k, size, texts, pairs, expected, start + seconds, tally))
               for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.monotonic() - start


def model_only_rate(run_dir: Path, texts, pairs, repeats: int = 3) -> float:
    """Examples/s of the run's predictor in this process (no start-up), best of `repeats`."""
    predictor = run_predictor(load_run(run_dir))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict_proba(texts, pairs)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained run directory (default: train the demo into a temp dir)")
    parser.add_argument("--texts", type=Path, default=DEMO_TEST, help="input file, read as predict reads it")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 32], help="texts per request")
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per request size")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    if not 1 <= args.seconds <= 600 or not 1 <= args.clients <= 64:
        parser.error("--seconds must be 1-600 and --clients 1-64 (a bounded load test)")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        work = Path(tmp)
        run_dir = args.run
        if run_dir is None:
            run_dir = work / "demo"
            print("training the demo run (about a minute on 2 idle cores)...", flush=True)
            _textcls("train", "--output", str(run_dir), "--quiet", capture_output=True)
        texts, pairs = read_inputs(run_dir, args.texts)
        expected, predict_s = predict_reference(run_dir, args.texts, work)
        if len(expected) != len(texts):
            raise SystemExit(f"predict wrote {len(expected)} labels for {len(texts)} inputs")
        predict_rate = len(texts) / predict_s
        model_rate = model_only_rate(run_dir, texts, pairs)
        print(f"run {run_dir}, {len(texts)} texts from {args.texts}; {os.cpu_count()} CPUs (shared with whatever "
              "else runs: figures move with the load)")
        print(f"textcls predict (whole process): {predict_s:.2f} s = {predict_rate:.0f} ex/s; "
              f"the predictor alone, in process: {model_rate:.0f} ex/s")

        port = free_port()
        server = start_server(run_dir, port, args.max_batch, args.max_wait_ms)
        rows = []
        try:
            load(port, args.clients, args.sizes[0], 2.0, texts, pairs, expected)  # warm-up, not counted
            for size in args.sizes:
                tally, elapsed = load(port, args.clients, size, args.seconds, texts, pairs, expected)
                rows.append((size, tally, elapsed))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                code = "killed after 60 s"
        print(f"\n{args.clients} clients, server --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms}, "
              f"{args.seconds:.0f} s per request size")
        print(f"{'texts/req':>9} {'requests':>8} {'texts/s':>8} {'vs predict':>10} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'wrong':>5} {'lost':>4} {'5xx':>4} {'4xx':>4}")
        for size, tally, elapsed in rows:
            lat = np.asarray(tally.latencies) * 1000
            p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (float("nan"),) * 2
            rate = tally.texts / elapsed
            print(f"{size:>9} {len(lat):>8} {rate:>8.0f} {rate / predict_rate:>9.0%} {p50:>7.1f} {p99:>7.1f} "
                  f"{tally.wrong:>5} {tally.lost:>4} {tally.server_errors:>4} {tally.other:>4}")
        print(f"server exit code after SIGTERM: {code}")
        bad = sum(t.wrong + t.lost + t.server_errors + t.other for _, t, _ in rows)
        if bad or code != 0:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
