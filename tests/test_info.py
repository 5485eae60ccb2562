"""`textcls info`: unique vs effective counts, the depth map and FLOPs per token, on a config and a run."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from conftest import tiny_model
from textcls.cli import app
from textcls.config import TokenizerConfig, config_from_dict
from textcls.data.tokenizer import train_tokenizer
from textcls.info import model_info
from textcls.run.info import save_run_files

H, I, E, L, T, V = 32, 64, 16, 4, 20, 300  # noqa: E741 (I: the intermediate size)


def write_config(tmp_path, **model) -> str:
    raw = {"data": {"max_length": T}, "tokenizer": {"vocab_size": V},
           "model": tiny_model(num_layers=L, embedding_size=E, pooling="cls_tanh", **model)}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_counts_and_flops_on_a_config(tmp_path):
    info = model_info(write_config(tmp_path, sharing={"strategy": "cycle", "num_unique": 2, "share": "ffn"}))
    attn, ffn = 4 * H * H + 6 * H, 2 * H * I + I + 3 * H
    assert info.counts.unique["embeddings"] == V * E + 64 * E + 2 * E + 2 * E + E * H + H
    assert info.counts.unique["encoder"] == L * attn + 2 * ffn
    assert info.counts.effective["encoder"] == L * (attn + ffn)
    assert info.counts.unique["pooler + head"] == H * H + H + 2 * H + 2
    assert info.counts.effective["embeddings"] == info.counts.unique["embeddings"]
    assert info.counts.trainable == info.counts.unique_total and info.counts.adapters == 0
    assert info.attention_schedule == [0, 1, 2, 3] and info.ffn_schedule == [0, 1, 0, 1]
    assert info.flops["embeddings"] == 2 * E * H
    assert info.flops["encoder"] == L * (2 * 4 * H * H + 2 * 2 * H * I + 4 * T * H)
    assert info.flops["pooler + head"] == (2 * H * H + 2 * H * 2) / T


def test_sharing_changes_unique_not_effective_or_flops(tmp_path):
    shared = model_info(write_config(tmp_path, sharing={"strategy": "all"}))
    unshared = model_info(write_config(tmp_path))
    assert shared.counts.unique_total < unshared.counts.unique_total
    assert shared.counts.effective_total == unshared.counts.effective_total == unshared.counts.unique_total
    assert shared.flops == unshared.flops


def test_info_cli_on_config_and_run_dir(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["info", write_config(tmp_path, sharing={"strategy": "sequence", "group_size": 2})])
    assert result.exit_code == 0, result.output
    assert "encoder.attention.1" in result.output and "effective" in result.output
    assert "FLOPs" in result.output

    cfg = config_from_dict({"model": tiny_model(), "data": {"max_length": T}})
    tok = train_tokenizer(["a tiny corpus of words", "more words"], TokenizerConfig(vocab_size=60, min_frequency=1))
    save_run_files(tmp_path / "run", cfg, tok, ["x", "y", "z"])
    info = model_info(tmp_path / "run")
    assert info.vocab_size == tok.get_vocab_size() and info.num_labels == 3
    assert info.counts.unique["pooler + head"] == H * 3 + 3
    path = Path(write_config(tmp_path))
    raw = yaml.safe_load(open(path))
    raw["model"]["init_from"] = str(tmp_path / "run")  # the vocabulary then comes from that run's tokenizer
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(raw))
    assert model_info(tmp_path / "ft.yaml").vocab_size == tok.get_vocab_size()
    result = runner.invoke(app, ["info", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_info_counts_ngram_table_and_names_the_ensemble(tmp_path):
    plain = model_info(write_config(tmp_path))
    path = write_config(tmp_path, embeddings={"ngram_orders": [2, 3], "ngram_buckets": 100})
    raw = yaml.safe_load(open(path))
    raw["train"] = {"ensemble": 3}
    (tmp_path / "ens.yaml").write_text(yaml.safe_dump(raw))
    info = model_info(tmp_path / "ens.yaml")
    assert info.counts.unique["embeddings"] - plain.counts.unique["embeddings"] == 101 * E  # one table, row 0 = none
    result = CliRunner().invoke(app, ["info", str(tmp_path / "ens.yaml")])
    assert result.exit_code == 0, result.output
    assert f"3 members like this one: {3 * info.counts.unique_total:,} parameters" in result.output
    raw["train"].update(ensemble_max=8, ensemble_fill_seconds=300)  # members added while the budget holds them
    (tmp_path / "fill.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["info", str(tmp_path / "fill.yaml")])
    assert "3 members (more while the budget holds them, up to 8) like this one" in result.output
    raw["train"].update(ensemble=1)  # one planned model that may grow
    (tmp_path / "grow.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["info", str(tmp_path / "grow.yaml")])
    assert "ensemble: 1 member (more while the budget holds them, up to 8) like this one" in result.output


def test_info_on_an_ensemble_run_counts_its_added_members(sst2_files, tmp_path):
    from conftest import tiny_config
    from textcls.train.loop import train

    out = tmp_path / "ens"
    train(tiny_config(*sst2_files, out, train={"ensemble": 2, "ensemble_max": 3, "ensemble_fill_seconds": 600,
                                               "max_steps": 1}), quiet=True)
    info = model_info(out)
    assert info.members == 3 and info.up_to == 0 and info.cfg.train.ensemble == 2


def test_config_head_is_sized_by_its_label_names(tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("World\nSports\nBusiness\nSci/Tech\n")
    path = Path(write_config(tmp_path))
    raw = yaml.safe_load(path.read_text())
    raw["data"]["label_names"] = str(names)
    path.write_text(yaml.safe_dump(raw))
    four, two = model_info(path), model_info(path, num_labels=2)
    assert (four.num_labels, two.num_labels) == (4, 2)
    hidden = four.cfg.model.hidden_size
    assert four.counts.unique["pooler + head"] - two.counts.unique["pooler + head"] == 2 * (hidden + 1)


def test_the_vocabulary_of_a_config_is_an_upper_bound(tmp_path):
    config = write_config(tmp_path)
    assert model_info(config).vocab_bound
    said = " ".join(CliRunner().invoke(app, ["info", config]).stdout.split())
    assert f"vocab up to {V}," in said
    assert f"`tokenizer.vocab_size` {V} is an upper bound; the tokenizer trainer may learn fewer tokens" in said

    cfg = config_from_dict({"model": tiny_model(), "data": {"max_length": T}})
    tok = train_tokenizer(["a tiny corpus of words"], TokenizerConfig(vocab_size=V, min_frequency=1))
    save_run_files(tmp_path / "run", cfg, tok, ["x", "y"])
    assert tok.get_vocab_size() < V  # what the bound is about: small data, fewer tokens
    said = " ".join(CliRunner().invoke(app, ["info", str(tmp_path / "run")]).stdout.split())
    assert f"vocab {tok.get_vocab_size()}," in said and "upper bound" not in said  # a run's vocabulary is known
    raw = yaml.safe_load(open(config))
    raw["model"]["init_from"] = str(tmp_path / "run")
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(raw))
    assert not model_info(tmp_path / "ft.yaml").vocab_bound  # the base run's tokenizer is used as it is
