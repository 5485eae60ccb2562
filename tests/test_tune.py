"""`textcls tune`: budget parsing, search-space checks, and a tiny search end to end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import child_env, run_cli, tiny_model
from textcls.config import load_config
from textcls.errors import ConfigError
from textcls.tune import parse_budget, parse_space


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400),
                                           ("45", 45), ("1.5h", 5400), ("2m30s", 150)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "30x", "m", "0s", "-5m", "1h30", "2m5"])
def test_parse_budget_rejects(text):
    with pytest.raises(ConfigError, match="budget"):
        parse_budget(text)


def test_parse_space_shapes():
    params = parse_space({"train.lr": {"low": "1e-4", "high": 3e-3, "log": True},
                          "model.num_layers": {"choices": [1, 2]}}, "x.yaml")
    assert [(p.key, p.low, p.high, p.log, p.choices) for p in params] == [
        ("train.lr", 1e-4, 3e-3, True, None), ("model.num_layers", None, None, False, [1, 2])]
    with pytest.raises(ConfigError) as info:
        parse_space({"a.b": {"low": 2, "high": 1}, "c.d": [1, 2], "e.f": {"choices": []},
                     "g.h": {"low": 0, "high": 1, "log": True}}, "x.yaml")
    message = str(info.value)
    assert "4 problem(s)" in message and "`tune.a.b`" in message and "`tune.g.h`" in message


def _write_config(tmp_path, train, valid, tune: dict) -> str:
    raw = {
        "data": {"train": str(train), "valid": str(valid), "text_columns": ["sentence"], "max_length": 32},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "model": tiny_model(),
        "train": {"max_steps": 6, "eval_every": 3, "batch_size": 16, "lr": 1e-3, "log_every": 1000},
        "tune": tune,
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return str(path)


def test_tiny_search_writes_trials_and_best(tmp_path, sst2_files):
    train, valid = sst2_files
    config = _write_config(tmp_path, train, valid, {"train.lr": {"low": 1e-4, "high": 3e-3, "log": True},
                                                    "model.num_layers": {"choices": [1, 2]}})
    out = tmp_path / "tune"
    proc = run_cli("tune", config, "--budget", "5m", "--trials", "3", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = (out / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    trials = [json.loads(line) for line in lines]
    assert [t["number"] for t in trials] == [0, 1, 2]
    for t in trials:
        assert set(t["params"]) == {"train.lr", "model.num_layers"}
        assert 1e-4 <= t["params"]["train.lr"] <= 3e-3 and t["params"]["model.num_layers"] in (1, 2)
        assert t["state"] in ("complete", "pruned") and 0.0 <= t["value"] <= 1.0
    assert "train.lr" in proc.stdout and "trial" in proc.stdout  # the table
    best = load_config(out / "best.yaml")
    top = max((t for t in trials if t["state"] == "complete"), key=lambda t: t["value"])
    assert best.train.lr == pytest.approx(top["params"]["train.lr"])
    assert best.model.num_layers == top["params"]["model.num_layers"]
    assert best.tune is None and best.data.train == str(train)
    assert best.train.eval_every is not None  # the evaluations its trial picked the best weights at
    # A second search into the same folder would discard this one.
    again = run_cli("tune", config, "--budget", "5m", "--trials", "1", "--output", str(out))
    assert again.returncode == 2 and "already holds a search" in again.stderr
    assert (out / "trials.jsonl").read_text(encoding="utf-8").splitlines() == lines


def test_unknown_key_in_search_space_is_exit_2(tmp_path, sst2_files):
    train, valid = sst2_files
    config = _write_config(tmp_path, train, valid, {"model.num_layerz": {"choices": [1, 2]}})
    proc = run_cli("tune", config, "--budget", "1m", "--output", str(tmp_path / "tune"))
    assert proc.returncode == 2
    assert "model.num_layerz" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "tune" / "trials.jsonl").exists()


def test_budget_stops_new_trials(tmp_path, sst2_files):
    """With a budget shorter than one trial, only the first trial runs (and stops at its first eval)."""
    train, valid = sst2_files
    config = _write_config(tmp_path, train, valid, {"train.lr": {"low": 1e-4, "high": 3e-3, "log": True}})
    out = tmp_path / "tune"
    proc = run_cli("tune", config, "--budget", "0.01s", "--trials", "5", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(trials) == 1 and trials[0]["state"] == "stopped" and trials[0]["steps"] == 3


def test_values_that_clash_skip_their_trial_and_the_search_goes_on(tmp_path, sst2_files):
    """hidden_size 34 and num_heads 4 are each valid, not together: that trial is `invalid`, the others run."""
    train, valid = sst2_files
    config = _write_config(tmp_path, train, valid, {"model.hidden_size": {"choices": [32, 34]},
                                                    "model.num_heads": {"choices": [2, 4]}})
    out = tmp_path / "tune"
    proc = run_cli("tune", config, "--budget", "5m", "--trials", "8", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text(encoding="utf-8").splitlines()]
    invalid = [t for t in trials if t["state"] == "invalid"]
    assert invalid and all(t["params"] == {"model.hidden_size": 34, "model.num_heads": 4} for t in invalid)
    assert "must be divisible by `model.num_heads`" in invalid[0]["problem"] and "Traceback" not in proc.stderr
    assert len(trials) == 8 and (out / "best.yaml").is_file()


def _sigint_default() -> None:
    """In the child: Ctrl-C as in a terminal, even when the tests run as a background job (SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_the_finished_trials_and_writes_best(tmp_path, sst2_files):
    train, valid = sst2_files
    config = _write_config(tmp_path, train, valid, {"train.lr": {"low": 1e-4, "high": 3e-3, "log": True}})
    out = tmp_path / "tune"
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "tune", config, "--budget", "5m", "--trials", "50",
                             "--output", str(out), "--set", "train.epochs=20"],
                            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_sigint_default)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "trials.jsonl").is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "start another with a new --output" in err
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text(encoding="utf-8").splitlines()]
    assert trials[0]["state"] in ("complete", "pruned") and (out / "best.yaml").is_file()


def test_ensemble_and_nblr_keys_cannot_be_searched():
    with pytest.raises(ConfigError, match=r"`tune.train.ensemble` cannot be searched"):
        parse_space({"train.ensemble": {"choices": [1, 3]}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"`tune.nblr.weight` cannot be searched: trials are scored without"):
        parse_space({"nblr.weight": {"low": 0.1, "high": 0.5}, "train.lr": {"low": 1e-4, "high": 1e-3}}, "x.yaml")


def test_ctrl_c_in_a_trials_last_step_still_stops_the_search(tmp_path, sst2_files, monkeypatch):
    """SIGINT during a trial's last step: that trial finishes and is kept, and no further trial starts."""
    from test_train_resume import interrupt_at
    from textcls.tune import Tuner

    train, valid = sst2_files
    cfg = load_config(_write_config(tmp_path, train, valid, {"train.lr": {"low": 1e-4, "high": 3e-3, "log": True}}))
    interrupt_at(monkeypatch, 6)  # max_steps: 6, so the signal lands in the last step of the first trial
    tuner = Tuner(cfg, tmp_path / "tune", 300, "accuracy", n_trials=5)
    tuner.run()
    assert tuner.interrupted
    assert [(r.number, r.state) for r in tuner.records] == [(0, "complete")]


def test_ctrl_c_while_a_trial_is_set_up_stops_without_a_traceback(tmp_path, sst2_files, monkeypatch, capfd):
    """SIGINT outside the training loop's handler raises KeyboardInterrupt inside the objective."""
    import textcls.train.loop as loop
    from textcls.tune import Tuner

    train, valid = sst2_files
    cfg = load_config(_write_config(tmp_path, train, valid, {"train.lr": {"low": 1e-4, "high": 3e-3, "log": True}}))
    real, calls = loop.train, []

    def train_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train", train_then_interrupt)
    tuner = Tuner(cfg, tmp_path / "tune", 300, "accuracy", n_trials=5)
    tuner.run()
    assert tuner.interrupted and len(calls) == 2
    assert [(r.number, r.state) for r in tuner.records] == [(0, "complete")]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped KeyboardInterrupt
def test_ctrl_c_swallowed_by_a_finalizer_between_trials_still_stops_the_search(tmp_path, sst2_files, monkeypatch):
    """SIGINT whose KeyboardInterrupt Python swallows (it lands in a finalizer, as in the collection after a
    trial) is still seen: no further trial starts and the search reports the interruption."""
    import signal

    import textcls.train.loop as loop
    from textcls.tune import Tuner

    train, valid = sst2_files
    cfg = load_config(_write_config(tmp_path, train, valid, {"train.lr": {"low": 1e-4, "high": 3e-3, "log": True}}))
    real, calls = loop.train, []

    class SignalsWhenCollected:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # the KeyboardInterrupt raised in here is printed and dropped

    def train_then_finalize(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 1:
            SignalsWhenCollected()  # collected at once, outside the training loop's own handler
        return result

    monkeypatch.setattr(loop, "train", train_then_finalize)
    # a background job of a non-interactive shell starts with SIGINT ignored, which textcls respects (as nohup's)
    monkeypatch.setattr(signal, "getsignal", lambda s, real=signal.getsignal: (
        signal.default_int_handler if s == signal.SIGINT and real(s) == signal.SIG_IGN else real(s)))
    tuner = Tuner(cfg, tmp_path / "tune", 300, "accuracy", n_trials=5)
    tuner.run()
    assert tuner.interrupted and len(calls) == 1
    assert [(r.number, r.state) for r in tuner.records] == [(0, "complete")]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the search's handler is gone
