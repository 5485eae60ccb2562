"""`train.ensemble`: members with their own seeds, one tokenizer and split, probabilities averaged."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from conftest import child_env, run_cli, sst2_slice, tiny_config, tiny_model, write_tsv
from textcls.errors import CheckpointError, ConfigError, DataError
from textcls.model.ensemble import EnsembleClassifier
from textcls.predict import predict_probabilities
from textcls.run.load import load_run, weights_digest
from textcls.run.members import read_ensemble
from textcls.run.weights import load_weights
from textcls.train.loop import train


class Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.logits


def test_ensemble_logits_give_the_mean_probability():
    a, b = [[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]], [[-1.0, 0.0, 4.0], [1.0, 1.0, 1.0]]
    out = EnsembleClassifier([Fixed(a), Fixed(b)])(torch.zeros(2, 3, dtype=torch.long))
    want = (torch.softmax(torch.tensor(a), -1) + torch.softmax(torch.tensor(b), -1)) / 2
    torch.testing.assert_close(torch.softmax(out, -1), want)
    multi = EnsembleClassifier([Fixed(a), Fixed(b)], task="multilabel")(torch.zeros(2, 3, dtype=torch.long))
    want = (torch.sigmoid(torch.tensor(a)) + torch.sigmoid(torch.tensor(b))) / 2
    torch.testing.assert_close(torch.sigmoid(multi), want)


def test_ensemble_trains_members_and_averages_them(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    out = tmp_path / "ens"
    result = train(tiny_config(train_file, valid_file, out, train={"ensemble": 2, "seed": 5}), quiet=True)
    info = read_ensemble(out)
    assert info["members"] == ["members/0", "members/1"] == info["finished"] and info["seeds"] == [5, 6]
    assert result.best_metric == pytest.approx(info["valid"]["accuracy"])
    for name in ("config.yaml", "tokenizer.json", "labels.json", "run.json", "eval_report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "eval_report.json").read_text())
    assert report["accuracy"] == info["valid"]["accuracy"] and report["members"] == 2
    assert sum(map(sum, report["confusion_matrix"])) == report["examples"]
    members = [load_run(out / m) for m in info["members"]]
    assert [m.cfg.train.seed for m in members] == [5, 6]
    assert all(m.tokenizer.to_str() == (out / "tokenizer.json").read_text() for m in members)
    assert weights_digest(out / "members/0") != weights_digest(out / "members/1")

    ensemble = load_run(out)
    texts = [t for t, _ in sst2_slice(20, "dev")]
    got = predict_probabilities(ensemble, texts)
    want = np.mean([predict_probabilities(m, texts) for m in members], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(predict_probabilities(members[0], texts), predict_probabilities(members[1], texts))

    res = run_cli("eval", str(out), str(valid_file))
    assert res.returncode == 0, res.stderr
    assert f"{info['valid']['accuracy']:.4f}" in res.stdout


def test_members_hold_out_the_same_validation_rows(tmp_path):
    train_file = write_tsv(tmp_path / "train.tsv", sst2_slice(300))
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, None, out, data={"valid_fraction": 0.2}, train={"ensemble": 2, "max_steps": 2})
    train(cfg, quiet=True)
    from textcls.data.pipeline import prepare_data

    held_out = [prepare_data(load_run(out / m).cfg, None).valid["input_ids"] for m in ("members/0", "members/1")]
    assert held_out[0] == held_out[1] and len(held_out[0]) == 60


def test_cross_fit_members_hold_out_their_own_folds_and_report_out_of_fold(tmp_path):
    rows = sst2_slice(200)
    train_file = write_tsv(tmp_path / "train.tsv", rows)
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, None, out, data={"valid_fraction": 0.25},
                      train={"ensemble": 3, "max_steps": 3, "ensemble_folds": 3})
    result = train(cfg, quiet=True)
    from textcls.data.pipeline import prepare_data

    members = [load_run(out / m) for m in read_ensemble(out)["members"]]
    assert [m.cfg.data.valid_fold for m in members] == [0, 1, 2]
    held = [prepare_data(m.cfg, m.tokenizer).valid["line"] for m in members]
    assert all(len(h) == 50 for h in held) and len(set(held[0]) | set(held[1]) | set(held[2])) == 150
    # The report: each row scored by the member that held it out (file line n is row n - 2).
    right = sum(int(np.argmax(predict_probabilities(m, [rows[n - 2][0] for n in h]), axis=1)[i]
                    == m.labels.index(rows[n - 2][1])) for m, h in zip(members, held) for i, n in enumerate(h))
    report = json.loads((out / "eval_report.json").read_text())
    assert report["examples"] == 150 and report["accuracy"] == pytest.approx(right / 150)
    assert result.best_metric == pytest.approx(right / 150)


def test_cross_fit_chooses_the_ngram_share_out_of_fold_and_fits_it_on_every_row(tmp_path):
    train_file = write_tsv(tmp_path / "train.tsv", sst2_slice(200))
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, None, out, data={"valid_fraction": 0.25}, nblr={"weight": 0.5, "choose_weight": True},
                      train={"ensemble": 4, "max_steps": 2, "ensemble_folds": 2})
    train(cfg, quiet=True)
    from textcls.data.pipeline import labelled_rows
    from textcls.model.nblr import fit_nblr_model
    from textcls.run.nblr import load_nblr_model

    assert [load_run(out / m).cfg.data.valid_fold for m in read_ensemble(out)["members"]] == [0, 1, 0, 1]
    report = json.loads((out / "eval_report.json").read_text())
    assert report["examples"] == 100 and "without_nblr" in report  # folds 0 and 1, each scored by two members
    saved, share = load_nblr_model(out, 2)
    assert share == report["nblr"]["weight"]
    rows, _ = labelled_rows(str(train_file), cfg.data, load_run(out).labels)
    n = cfg.nblr
    whole = fit_nblr_model(rows.texts, None, rows.targets, "single", n.max_order, n.min_count, n.max_features, n.c,
                           n.lowercase)
    assert saved.vocab == whole.vocab and torch.equal(saved.weight, whole.weight)


def test_folds_take_turns_after_each_round_of_the_variants(sst2_files, tmp_path):
    from textcls.train.ensemble import member_fold

    cfg = tiny_config(sst2_files[0], None, tmp_path / "e", data={"valid_fraction": 0.1},
                      train={"ensemble": 8, "ensemble_folds": 2,
                             "ensemble_variants": [{}, {"tokenizer.vocab_size": 400}]})
    assert [member_fold(cfg, k) for k in range(8)] == [0, 0, 1, 1, 0, 0, 1, 1]  # each fold: both views


def test_folds_need_a_held_out_fraction_and_members(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    for data, keys in [({}, {"ensemble": 2, "ensemble_folds": 2}),  # a validation file: no rows held out
                       ({"valid_fraction": 0.2}, {"ensemble": 4, "ensemble_folds": 6}),  # 0.2 makes 5 folds
                       ({"valid_fraction": 0.2}, {"ensemble": 4, "ensemble_folds": 1})]:
        with pytest.raises(ConfigError, match="ensemble_folds"):
            tiny_config(train_file, valid_file if not data else None, tmp_path / "e", data=data, train=keys)
    # One model ignores it (`--set train.ensemble=1` on a recipe that cross-fits its members).
    assert tiny_config(train_file, None, tmp_path / "e", data={"valid_fraction": 0.2},
                       train={"ensemble_folds": 2}).train.ensemble == 1


def test_members_say_how_many_are_done(tmp_path, capsys):
    train_file = write_tsv(tmp_path / "train.tsv", sst2_slice(100))
    cfg = tiny_config(train_file, None, tmp_path / "ens", train={"ensemble": 2, "max_steps": 1})
    train(cfg)
    lines = capsys.readouterr().err.splitlines()
    assert "members: 1/2 done" in lines and "members: 2/2 done" in lines
    assert lines.index("ensemble member 2/2 (seed 1)") > lines.index("members: 1/2 done")


def test_resume_trains_only_unfinished_members_and_unfinished_runs_refuse_to_load(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, valid_file, out, train={"ensemble": 3, "max_steps": 4})
    train(cfg, quiet=True)
    first = weights_digest(out / "members/0")
    info = read_ensemble(out)
    info["finished"] = ["members/0"]  # as if the run stopped during member 1
    (out / "ensemble.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="1 of 3 members done.*--resume"):
        load_run(out)
    res = run_cli("predict", str(out), str(valid_file))
    assert res.returncode == 2 and "--resume" in res.stderr and "Traceback" not in res.stderr

    mtime = (out / "members/0/model.safetensors").stat().st_mtime_ns
    train(cfg, out, resume=True, quiet=True)
    assert read_ensemble(out)["finished"] == ["members/0", "members/1", "members/2"]
    assert (out / "members/0/model.safetensors").stat().st_mtime_ns == mtime
    assert weights_digest(out / "members/0") == first
    assert load_run(out).model.members.__len__() == 3


def test_a_budget_with_time_left_adds_members_and_one_without_adds_none(sst2_files, tmp_path, capsys):
    train_file, valid_file = sst2_files
    fill = {"ensemble": 2, "ensemble_max": 4, "max_steps": 2, "seed": 3}
    out = tmp_path / "filled"
    train(tiny_config(train_file, valid_file, out, train={**fill, "ensemble_fill_seconds": 600}))
    info = read_ensemble(out)
    assert info["members"] == info["finished"] == [f"members/{k}" for k in range(4)]  # the cap, not more
    assert info["seeds"] == [3, 4, 5, 6] and info["added"] == 2
    assert [load_run(out / m).cfg.train.seed for m in info["members"]] == [3, 4, 5, 6]
    assert len(load_run(out).model.members) == 4 and json.loads((out / "eval_report.json").read_text())["members"] == 4
    err = capsys.readouterr().err
    assert "member 3 added (at most 4)" in err and "members: 4/4 done" in err

    out = tmp_path / "tight"  # no member is expected to end within a millisecond: the two planned ones only
    train(tiny_config(train_file, valid_file, out, train={**fill, "ensemble_fill_seconds": 0.001}), quiet=True)
    info = read_ensemble(out)
    assert info["finished"] == ["members/0", "members/1"] and "added" not in info


def test_one_planned_model_grows_into_an_ensemble_while_time_is_left(sst2_files, tmp_path, capsys):
    """`train.ensemble: 1` with `train.ensemble_max`: the model is the first member, trained on every core, and
    more members join as they do a planned ensemble; with no time left it stays a one-member ensemble."""
    train_file, valid_file = sst2_files
    grow = {"ensemble": 1, "ensemble_max": 3, "max_steps": 2, "seed": 5,
            "ensemble_variants": [{}, {"tokenizer.vocab_size": 200}]}
    out = tmp_path / "grown"
    train(tiny_config(train_file, valid_file, out, train={**grow, "ensemble_fill_seconds": 600}))
    info = read_ensemble(out)
    assert info["members"] == info["finished"] == ["members/0", "members/1", "members/2"]
    assert info["seeds"] == [5, 6, 7] and info["added"] == 2
    sizes = [load_run(out / f"members/{k}").tokenizer.get_vocab_size() for k in range(3)]
    assert sizes[1] <= 200 < sizes[0] == sizes[2]  # the added members take the views in turn
    assert json.loads((out / "eval_report.json").read_text())["members"] == 3
    assert "member 2 added (at most 3)" in capsys.readouterr().err

    out = tmp_path / "alone"
    train(tiny_config(train_file, valid_file, out, train={**grow, "ensemble_fill_seconds": 0.001}), quiet=True)
    info = read_ensemble(out)
    assert info["finished"] == ["members/0"] and "added" not in info
    assert json.loads((out / "eval_report.json").read_text())["members"] == 1
    assert predict_probabilities(load_run(out), ["a fine film"]).shape == (1, 2)  # an ordinary run to predict with


def test_parallel_workers_take_added_members_and_a_resume_adds_none(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, valid_file, out, train={"ensemble": 2, "ensemble_workers": 2, "num_threads": 2,
                                                          "ensemble_max": 3, "ensemble_fill_seconds": 600,
                                                          "max_steps": 2})
    train(cfg, quiet=True)
    info = read_ensemble(out)
    assert info["finished"] == ["members/0", "members/1", "members/2"] and info["seeds"] == [0, 1, 2]
    assert (out / "members/2.log").is_file()  # trained by a worker process like the planned members
    info["finished"] = ["members/0", "members/1"]  # as if stopped while the added member trained
    (out / "ensemble.json").write_text(json.dumps(info))
    mtime = (out / "members/0/model.safetensors").stat().st_mtime_ns
    train(cfg, out, resume=True, quiet=True)
    info = read_ensemble(out)
    assert info["finished"] == info["members"] == ["members/0", "members/1", "members/2"]  # none added on resume
    assert (out / "members/0/model.safetensors").stat().st_mtime_ns == mtime


def test_fill_settings_are_validated(sst2_files, tmp_path):
    from textcls.errors import ConfigError

    for train_keys, message in [({"ensemble": 3, "ensemble_max": 2, "ensemble_fill_seconds": 60}, "ensemble_max"),
                                ({"ensemble": 1, "ensemble_max": 1, "ensemble_fill_seconds": 60}, "and 2"),
                                ({"ensemble": 2, "ensemble_max": 4}, "needs `train.ensemble_fill_seconds`"),
                                ({"ensemble": 2, "ensemble_max": 4, "ensemble_fill_seconds": 0}, "positive")]:
        with pytest.raises(ConfigError, match=message):
            tiny_config(*sst2_files, tmp_path / "x", train=train_keys)


def test_ensemble_size_is_validated(sst2_files, tmp_path):
    from textcls.errors import ConfigError

    with pytest.raises(ConfigError, match="train.ensemble"):
        tiny_config(*sst2_files, tmp_path / "x", train={"ensemble": 0})


def test_parallel_members_equal_sequential_members(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    digests = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        cfg = tiny_config(train_file, valid_file, out,
                          train={"ensemble": 2, "ensemble_workers": workers, "num_threads": workers, "max_steps": 6})
        result = train(cfg, quiet=True)
        assert result.steps == 12 and read_ensemble(out)["finished"] == ["members/0", "members/1"]
        digests[workers] = [load_weights(out / f"members/{k}/model.safetensors") for k in range(2)]
    assert (tmp_path / "w2/members/1.log").is_file()
    for one, two in zip(digests[1], digests[2]):  # one thread per member either way: the same weights
        assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    for k in range(2):  # down to the bytes: safetensors' metadata order is per process, textcls sorts it
        files = [(tmp_path / f"w{w}/members/{k}/model.safetensors").read_bytes() for w in (1, 2)]
        assert files[0] == files[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_members_stop_when_the_ensemble_process_is_killed(sst2_files, tmp_path):
    """`kill -9` of the parent: its member processes get SIGTERM, save `last/` and exit, instead of training on
    beside a resumed ensemble."""
    psutil = pytest.importorskip("psutil")
    train_file, valid_file = sst2_files
    raw = {"data": {"train": str(train_file), "valid": str(valid_file), "text_columns": ["sentence"], "max_length": 48},
           "tokenizer": {"vocab_size": 300, "min_frequency": 1}, "model": tiny_model(),
           "train": {"epochs": 5000, "batch_size": 16, "ensemble": 2, "ensemble_workers": 2, "num_threads": 2,
                     "eval_every": 10, "log_every": 1000}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "ens"
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "train", str(config), "--output", str(out), "--quiet"],
                            env=child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not all((out / f"members/{k}/last/state.json").exists() for k in range(2)):
        time.sleep(0.05)
    members = psutil.Process(proc.pid).children()
    assert len(members) == 2
    proc.kill()
    proc.wait()
    started = time.time()
    _, alive = psutil.wait_procs(members, timeout=60)
    assert not alive and time.time() - started < 30
    for k in range(2):  # stopped part-way, at a resumable checkpoint
        state = json.loads((out / f"members/{k}/last/state.json").read_text())
        assert 0 < state["step"] < state["total_steps"]


@pytest.mark.slow  # two parallel members, a signal, a resume and a whole run: about 40 s each
@pytest.mark.parametrize("when", ["started", "checkpointed"])
def test_parallel_ensemble_stops_on_sigterm_and_resumes_to_the_same_weights(sst2_files, tmp_path, when):
    train_file, valid_file = sst2_files
    raw = {"data": {"train": str(train_file), "valid": str(valid_file), "text_columns": ["sentence"],
                    "max_length": 48},
           "tokenizer": {"vocab_size": 300, "min_frequency": 1},
           "model": tiny_model(),
           "train": {"epochs": 30, "batch_size": 16, "ensemble": 2, "ensemble_workers": 2, "num_threads": 2,
                     "eval_every": 20, "log_every": 1000}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "ens"
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "train", str(config), "--output", str(out), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # "started": the children may not have set up their signal handlers yet; "checkpointed": they have
    ready = (lambda: (out / "members/1.log").exists()) if when == "started" else \
        (lambda: all((out / f"members/{k}/last/state.json").exists() for k in range(2)))
    deadline = time.time() + 120
    while time.time() < deadline and not ready():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert read_ensemble(out)["finished"] == [] and "--resume" in err and "failed" not in err
    res = run_cli("train", str(config), "--output", str(out), "--resume", "--quiet", timeout=600)
    assert res.returncode == 0, res.stderr
    assert read_ensemble(out)["finished"] == ["members/0", "members/1"]

    whole = tmp_path / "whole"
    res = run_cli("train", str(config), "--output", str(whole), "--quiet", "--set", "train.ensemble_workers=1",
                  "--set", "train.num_threads=1", timeout=600)
    assert res.returncode == 0, res.stderr
    for k in range(2):
        got, want = (load_weights(d / f"members/{k}/model.safetensors") for d in (out, whole))
        assert all(torch.equal(got[name], want[name]) for name in want)


def test_plot_on_an_ensemble_draws_its_report_and_names_a_member(sst2_files, tmp_path):
    out = tmp_path / "ens"
    train(tiny_config(*sst2_files, out, train={"ensemble": 2, "max_steps": 2}), quiet=True)
    res = run_cli("plot", str(out), "--output", str(tmp_path / "c.png"))
    assert res.returncode == 0 and "members/0" in res.stderr  # the curves are the members'
    assert not (tmp_path / "c.png").exists() and (tmp_path / "c-confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_init_from_an_ensemble_names_a_member(sst2_files, tmp_path):
    from textcls.errors import ConfigError

    out = tmp_path / "ens"
    train(tiny_config(*sst2_files, out, train={"ensemble": 2, "max_steps": 2}), quiet=True)
    cfg = tiny_config(*sst2_files, tmp_path / "ft", model=tiny_model(init_from=str(out)), train={"max_steps": 2})
    with pytest.raises(ConfigError, match="is an ensemble.*members/0"):
        train(cfg, quiet=True)
    member = tiny_config(*sst2_files, tmp_path / "ft2", model=tiny_model(init_from=str(out / "members/0")),
                         train={"max_steps": 2})
    assert train(member, quiet=True).steps == 2


def test_ensemble_from_a_base_run_keeps_the_base_tokenizer(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    base = tmp_path / "base"
    train(tiny_config(train_file, valid_file, base, train={"max_steps": 2}), quiet=True)
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, valid_file, out, tokenizer={"vocab_size": 120},  # would train another vocabulary
                      model=tiny_model(init_from=str(base)), train={"ensemble": 2, "max_steps": 2})
    train(cfg, quiet=True)
    want = (base / "tokenizer.json").read_text()
    assert (out / "tokenizer.json").read_text() == want
    assert all((out / f"members/{k}/tokenizer.json").read_text() == want for k in range(2))
    assert len(load_run(out).model.members) == 2


def test_variants_with_their_own_tokenizer_are_averaged_per_tokenizer(sst2_files, tmp_path):
    """Members 0 and 2 keep the shared wordpiece tokenizer, member 1 trains a word-level one."""
    from textcls.evaluation import evaluate_file
    from textcls.predict import predict_windowed

    train_file, valid_file = sst2_files
    out = tmp_path / "mixed"
    cfg = tiny_config(train_file, valid_file, out, train={
        "ensemble": 3, "seed": 2, "ensemble_variants": [{}, {"tokenizer.type": "word", "model.dropout": 0.2}]})
    result = train(cfg, quiet=True)
    members = [load_run(out / "members" / str(k)) for k in range(3)]
    shared = (out / "tokenizer.json").read_text()
    assert [m.tokenizer.to_str() == shared for m in members] == [True, False, True]
    assert members[1].cfg.tokenizer.type == "word" and members[1].cfg.model.dropout == 0.2
    assert members[2].cfg.model.dropout == 0.0 and [m.cfg.train.seed for m in members] == [2, 3, 4]

    ensemble = load_run(out)
    assert [n for _, n in ensemble.groups] == [2, 1]
    texts = [t for t, _ in sst2_slice(40, "dev")]
    each = [predict_probabilities(m, texts) for m in members]
    np.testing.assert_allclose(predict_probabilities(ensemble, texts), np.mean(each, 0), atol=1e-5)
    windows = [predict_windowed(m, texts, stride=4) for m in members]
    np.testing.assert_allclose(predict_windowed(ensemble, texts, stride=4), np.mean(windows, 0), atol=1e-5)
    with pytest.raises(TypeError, match="per tokenizer group"):
        ensemble.model(torch.zeros(1, 3, dtype=torch.long))

    rows = sst2_slice(100, "dev")
    truth = np.array([int(y) for _, y in rows])
    mean = np.mean([predict_probabilities(m, [t for t, _ in rows]) for m in members], 0)
    columns = [ensemble.labels.index(str(c)) for c in (0, 1)]
    want = float((mean[:, columns].argmax(1) == truth).mean())
    report = evaluate_file(ensemble, str(valid_file))
    assert report["accuracy"] == pytest.approx(want)
    assert result.best_metric == pytest.approx(want)
    proc = run_cli("predict", str(out), str(valid_file), "-o", str(tmp_path / "p.jsonl"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 100


def test_variants_are_validated(sst2_files, tmp_path):
    from textcls.errors import ConfigError

    train_file, valid_file = sst2_files
    for variant, message in (({"data.max_length": 8}, "may set tokenizer"), ({"train.seed": 3}, "not train.seed"),
                             ({"tokenizer.typ": "word"}, "did you mean `tokenizer.type`"),
                             ({"model.num_heads": 5}, r"ensemble_variants\[1\].*divisible")):
        with pytest.raises(ConfigError, match=message):
            tiny_config(train_file, valid_file, tmp_path / "x",
                        train={"ensemble": 2, "ensemble_variants": [{}, variant]})
    # A base run fixes the tokenizer: a variant asking for its own is refused (unless it drops init_from).
    base = {"model": {**tiny_model(), "init_from": str(tmp_path / "base")}}
    with pytest.raises(ConfigError, match=r"ensemble_variants\[0\].*fixes the tokenizer"):
        tiny_config(train_file, valid_file, tmp_path / "x", **base,
                    train={"ensemble": 2, "ensemble_variants": [{"tokenizer.type": "bpe"}, {}]})
    cfg = tiny_config(train_file, valid_file, tmp_path / "x", **base, train={
        "ensemble": 2, "ensemble_variants": [{"tokenizer.type": "bpe", "model.init_from": None}, {}]})
    assert cfg.train.ensemble_variants[0]["model.init_from"] is None
    # A problem of the config itself is said once, not again for every variant that inherits it.
    with pytest.raises(ConfigError, match=r"1 problem\(s\) in the config: `nblr.weight`") as caught:
        tiny_config(train_file, valid_file, tmp_path / "x", nblr={"weight": 2.0},
                    train={"ensemble": 2, "ensemble_variants": [{}, {"model.dropout": 0.2}]})
    assert "ensemble_variants" not in str(caught.value)


def test_a_member_with_bad_input_stops_the_ensemble_before_any_member_trains(sst2_files, tmp_path):
    """Member inputs are checked up front: an ensemble replacing a run keeps that run when a variant's
    input is bad, and no member has started."""
    train_file, valid_file = sst2_files
    out = tmp_path / "run"
    train(tiny_config(train_file, valid_file, out, train={"max_steps": 2}), quiet=True)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("film 0.1 0.2 0.3\n")  # 3 dimensions, the tiny model embeds in more
    cfg = tiny_config(train_file, valid_file, out, train={"ensemble": 2, "max_steps": 2,
                                                          "ensemble_variants": [{}, {"model.embeddings.pretrained":
                                                                                     str(vectors)}]},
                      output={"dir": str(out), "overwrite": True})
    with pytest.raises(DataError, match=r"vectors.txt, line 1: word vectors have 3 dimensions"):
        train(cfg, quiet=True)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before and not (out / "members").exists()


def test_a_signal_in_a_members_last_step_stops_before_the_next_member(sst2_files, tmp_path, monkeypatch):
    from test_train_resume import interrupt_at
    from textcls.train.loop import Interrupted

    train_file, valid_file = sst2_files
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, valid_file, out, train={"ensemble": 3, "max_steps": 4})
    with monkeypatch.context() as m:
        interrupt_at(m, 4)  # the first member's last step
        with pytest.raises(Interrupted):
            train(cfg, quiet=True)
    assert read_ensemble(out)["finished"] == ["members/0"]
    train(cfg, out, resume=True, quiet=True)
    assert read_ensemble(out)["finished"] == ["members/0", "members/1", "members/2"]


def test_one_planned_model_that_may_grow_trains_alone_under_torchrun(sst2_files, tmp_path, monkeypatch):
    """Members do not run under torchrun: there a config of one model with `train.ensemble_max` trains that model
    (a planned ensemble is refused with a message instead)."""
    from textcls.train import distributed
    from textcls.train.loop import trains_members

    grow = tiny_config(*sst2_files, tmp_path / "g",
                       train={"ensemble": 1, "ensemble_max": 3, "ensemble_fill_seconds": 60})
    planned = tiny_config(*sst2_files, tmp_path / "p", train={"ensemble": 2})
    single = tiny_config(*sst2_files, tmp_path / "s")
    assert trains_members(grow) and trains_members(planned) and not trains_members(single)
    monkeypatch.setattr(distributed, "launched", lambda: True)
    assert not trains_members(grow) and trains_members(planned) and not trains_members(single)
