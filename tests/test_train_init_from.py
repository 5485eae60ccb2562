"""`model.init_from` a trained run: every tensor but the classifier head is loaded, and a line says that the
head starts fresh and why: the labels differ (both named), or they match and init_from never takes a head."""

from __future__ import annotations

import copy

import torch

from conftest import tiny_config, tiny_finished_run
from textcls.run.load import load_run
from textcls.train.loop import _init_from, train


def test_the_head_is_left_behind_and_a_line_says_why(tmp_path, capsys):
    base = tiny_finished_run(tmp_path)
    capsys.readouterr()
    source = load_run(base).model
    model = copy.deepcopy(source)
    with torch.no_grad():  # every weight away from the base's, the head's at zero
        for p in model.parameters():
            p.add_(1.0)
        model.head.weight.zero_()
    _init_from(model, str(base), labels=["0", "1"])
    note = capsys.readouterr().err.splitlines()
    assert note == [f"init_from {base}: its classifier head is not loaded although its labels match this data's "
                    "['0', '1']: model.init_from always leaves the head out, a base being a starting point for a new "
                    "task; this run's head starts fresh"]
    assert torch.equal(model.head.weight, torch.zeros_like(model.head.weight))  # as the note says: not loaded
    got, want = model.state_dict(), source.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("head."))

    _init_from(model, str(base), labels=["1", "0"])
    assert capsys.readouterr().err.strip().endswith(
        "since its labels ['0', '1'] differ from this data's ['1', '0'] (the same labels in another order); this "
        "run's head starts fresh")
    _init_from(model, str(base), labels=[f"topic {k}" for k in range(10)])
    assert "differ from this data's ['topic 0', 'topic 1', 'topic 2', 'topic 3', 'topic 4', 'topic 5', 'topic 6', " \
           "'topic 7', ... (10 in all)]; this run's head starts fresh" in capsys.readouterr().err
    _init_from(model, str(base), quiet=True, labels=["0", "1"])
    _init_from(model, str(base))  # no labels to compare (check_inputs): nothing said
    assert capsys.readouterr().err == ""


def test_a_run_started_from_another_says_it_once(tmp_path, capsys):
    base = tiny_finished_run(tmp_path)
    cfg = tiny_config(tmp_path / "train.tsv", tmp_path / "valid.tsv", tmp_path / "ft",
                      data={"cache_dir": str(tmp_path / "cache")}, model={"init_from": str(base)},
                      train={"max_steps": 1})
    capsys.readouterr()
    train(cfg)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"init_from {base}")]
    assert len(lines) == 1 and "although its labels match this data's ['0', '1']" in lines[0]
    train(cfg, tmp_path / "ft-quiet", quiet=True)
    assert "init_from" not in capsys.readouterr().err
