"""train -> eval -> predict through the real CLI on a tiny real slice."""

import json

import pytest
import yaml

from conftest import run_cli, sst2_slice, tiny_model, write_tsv


def write_config(tmp_path, **train):
    train_file = write_tsv(tmp_path / "train.tsv", sst2_slice(300))
    valid_file = write_tsv(tmp_path / "dev.tsv", sst2_slice(60, "dev"))
    cfg = {
        "data": {"train": "train.tsv", "valid": "dev.tsv", "text_columns": ["sentence"], "max_length": 48},
        "tokenizer": {"vocab_size": 300, "min_frequency": 1},
        "model": tiny_model(),
        "train": {"epochs": 2, "batch_size": 32, "lr": 2e-3, "log_every": 5, **train},
        "output": {"dir": "runs/x"},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, train_file, valid_file


@pytest.mark.slow  # 20-40 s of whole CLI runs; `make test-slow` and CI run it
def test_train_eval_predict(tmp_path):
    cfg, _, valid = write_config(tmp_path)
    run = tmp_path / "run"
    res = run_cli("train", str(cfg), "--output", str(run), "--set", "train.seed=3", "--set", "train.log_every=5")
    assert res.returncode == 0, res.stderr
    # Not a terminal: plain progress lines with loss, lr and throughput; the summary line.
    lines = [line for line in res.stderr.splitlines() if line.startswith("step ")]
    assert lines and all(" tok/s " in line and " ex/s " in line and "loss " in line for line in lines)
    assert " tokens/s, " in res.stdout + res.stderr
    for name in ("config.yaml", "tokenizer.json", "labels.json", "model.safetensors", "metrics.jsonl", "run.json",
                 "eval_report.json", "last/model.safetensors", "last/trainer_state.pt", "last/state.json"):
        assert (run / name).exists(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["seed"] == 3 and saved["data"]["train"].endswith("train.tsv")
    assert json.loads((run / "labels.json").read_text()) == ["0", "1"]
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in evals if e.get("kind") == "epoch"] == [1, 2]

    report = tmp_path / "report.json"
    res = run_cli("eval", str(run), str(valid), "--report", str(report))
    assert res.returncode == 0, res.stderr
    assert "accuracy" in res.stdout and "confusion matrix" in res.stdout
    rep = json.loads(report.read_text())
    assert rep["examples"] == 60 and sum(map(sum, rep["confusion_matrix"])) == 60
    assert set(rep["per_class"]) == {"0", "1"} and 0.0 <= rep["macro_f1"] <= 1.0
    # The run's own report is of the best weights on the same validation rows.
    best = json.loads((run / "eval_report.json").read_text())
    assert best["confusion_matrix"] == rep["confusion_matrix"] and best["per_class"] == rep["per_class"]
    assert best["accuracy"] == max(e["accuracy"] for e in evals if "accuracy" in e)

    # The same rows as JSONL with other key names, read through eval's options: the same report.
    as_jsonl = tmp_path / "dev.jsonl"
    as_jsonl.write_text("".join(json.dumps({"review": t, "y": y}) + "\n" for t, y in sst2_slice(60, "dev")))
    other = tmp_path / "other.json"
    res = run_cli("eval", str(run), str(as_jsonl), "--input-format", "jsonl", "--text-column", "review",
                  "--label-column", "y", "--report", str(other))
    assert res.returncode == 0, res.stderr
    assert json.loads(other.read_text())["confusion_matrix"] == rep["confusion_matrix"]
    res = run_cli("eval", str(run), str(as_jsonl), "--input-format", "jsonl")
    assert res.returncode == 2 and "'sentence', 'label' missing" in res.stderr and "--text-column" in res.stderr

    texts = ["a gorgeous , witty , seductive movie .", "", "the plot is nothing but boilerplate clichés"]
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(texts) + "\n")
    out = tmp_path / "pred.jsonl"
    res = run_cli("predict", str(run), str(inp), "--output", str(out), "--top-k", "2")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert row["label"] in ("0", "1") and len(row["top_k"]) == 2
        assert abs(sum(t["probability"] for t in row["top_k"]) - 1) < 1e-4

    # stdin -> stdout, TSV, and a TSV input read through the run's text column: same predictions, same order.
    res = run_cli("predict", str(run), "-", "--format", "tsv", input="\n".join(texts) + "\n")
    assert res.returncode == 0, res.stderr
    assert [line.split("\t")[0] for line in res.stdout.splitlines()] == [r["label"] for r in rows]
    res = run_cli("predict", str(run), str(valid))
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 60


@pytest.mark.slow  # 20-40 s of whole CLI runs; `make test-slow` and CI run it
def test_user_errors_exit_2_without_traceback(tmp_path):
    cfg, _, _ = write_config(tmp_path)
    cases = [
        ("train", str(tmp_path / "missing.yaml")),
        ("train", str(cfg), "--set", "model.hiden_size=8"),
        ("train", str(cfg), "--set", "data.text_columns=[text]"),
        ("train", str(cfg), "--set", f"data.train={tmp_path / 'nope.tsv'}"),
        ("eval", str(tmp_path / "no_run"), str(cfg)),
    ]
    for args in cases:
        res = run_cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and "error:" in res.stderr, (args, res.stderr)
    empty = tmp_path / "empty.tsv"
    empty.write_text("sentence\tlabel\n")
    res = run_cli("train", str(cfg), "--set", f"data.train={empty}")
    assert res.returncode == 2 and "empty.tsv" in res.stderr and "Traceback" not in res.stderr
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("sentence\tlabel\ncaf\xe9 au lait\t1\n".encode("latin-1"))
    res = run_cli("train", str(cfg), "--set", f"data.train={latin}")
    assert res.returncode == 2 and "byte offset" in res.stderr and "data.encoding" in res.stderr


@pytest.mark.slow  # 20-40 s of whole CLI runs; `make test-slow` and CI run it
def test_resume_refuses_a_changed_plan_and_takes_runtime_keys(tmp_path):
    cfg, _, _ = write_config(tmp_path, epochs=1)
    run = tmp_path / "run"
    assert run_cli("train", str(cfg), "-o", str(run), "-q").returncode == 0
    res = run_cli("train", str(cfg), "-o", str(run), "--resume", "--set", "train.lr=0.01")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "`train.lr` is 0.01 here but 0.002 in the run" in res.stderr and "--resume` (no CONFIG" in res.stderr
    # Edited on disk: the same refusal.
    cfg.write_text(cfg.read_text().replace("epochs: 1", "epochs: 3"))
    res = run_cli("train", str(cfg), "-o", str(run), "--resume")
    assert res.returncode == 2 and "`train.epochs` is 3" in res.stderr
    # No CONFIG: the run's own config; runtime keys may differ.
    res = run_cli("train", "-o", str(run), "--resume")
    assert res.returncode == 0 and "resuming" in res.stderr + res.stdout
    cfg.write_text(cfg.read_text().replace("epochs: 3", "epochs: 1"))
    res = run_cli("train", str(cfg), "-o", str(run), "--resume", "--set", "train.num_threads=1")
    assert res.returncode == 0, res.stderr
    # No CONFIG: --set applies to the run's own config (runtime keys pass, plan keys are named).
    assert run_cli("train", "-o", str(run), "--resume", "--set", "train.num_threads=1").returncode == 0
    res = run_cli("train", "-o", str(run), "--resume", "--set", "train.lr=0.01")
    assert res.returncode == 2 and "`train.lr` is 0.01 here but 0.002" in res.stderr and "data." not in res.stderr
    # No CONFIG and no run there (a typo): refused, nothing trained.
    res = run_cli("train", "-o", str(tmp_path / "rnu"), "--resume")
    assert res.returncode == 2 and "holds no run to resume" in res.stderr and not (tmp_path / "rnu").exists()


def test_two_processes_train_the_same_tokenizer_and_weights(tmp_path):
    """The promise in the README: same config and seed, separate processes and caches, equal files."""
    cfg, _, _ = write_config(tmp_path)
    digests = []
    for k in range(2):
        run = tmp_path / f"run{k}"
        env = {"TEXTCLS_CACHE": str(tmp_path / f"cache{k}"), "PYTHONHASHSEED": str(k)}
        res = run_cli("train", str(cfg), "--output", str(run), "--set", "train.max_steps=6", "--set",
                      "train.num_threads=1", "-q", env=env)
        assert res.returncode == 0, res.stderr
        digests.append(((run / "tokenizer.json").read_text(), json.loads((run / "run.json").read_text())["sha256"]))
    assert digests[0] == digests[1]
