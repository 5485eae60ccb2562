"""A HuggingFace base (`model.init_from` / `--base`): a folder, the sentence-transformers layout or hf:ORG/NAME,
converted once into the cache, its architecture taken as the model section; contradictions refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import tiny_config
from test_hf_import import bert, write_tokenizer
from textcls.errors import ConfigError
from textcls.run.bases import resolve_base, with_base
from textcls.run.load import load_run
from textcls.run.weights import load_weights
from textcls.train.loop import train

transformers = pytest.importorskip("transformers")


@pytest.fixture
def hf_dir(tmp_path):
    """A tiny random BERT saved as HuggingFace does (safetensors), with a WordPiece tokenizer.json."""
    folder = tmp_path / "hf-bert"
    bert().save_pretrained(folder)
    write_tokenizer(folder / "tokenizer.json")
    return folder


def test_a_hf_folder_base_gives_the_architecture_and_the_weights(tmp_path, sst2_files, hf_dir):
    cfg = tiny_config(*sst2_files, tmp_path / "run", model={"init_from": str(hf_dir)}, data={"max_length": 20})
    cfg.model = type(cfg.model)(init_from=str(hf_dir))  # nothing but the base: the architecture comes from it
    cfg.train.max_steps, cfg.train.lr, cfg.train.warmup = 2, 1e-7, 0
    train(cfg, quiet=True)
    run = load_run(tmp_path / "run")
    assert (run.cfg.model.hidden_size, run.cfg.model.num_layers, run.cfg.model.intermediate_size) == (32, 2, 48)
    assert run.cfg.model.layer_norm_eps == 1e-7 and run.cfg.model.pooling == "cls_tanh"
    assert run.tokenizer.get_vocab_size() == 25  # the base's tokenizer, not one trained on the data
    converted = load_weights(resolve_base(str(hf_dir)) / "model.safetensors")
    torch.testing.assert_close(run.model.state_dict()["encoder.ffn.1.up.weight"], converted["encoder.ffn.1.up.weight"],
                               rtol=0, atol=1e-4)  # started from the base (lr 1e-7: barely moved)


def test_the_conversion_is_made_once_and_redone_for_a_changed_checkpoint(tmp_path, hf_dir):
    first = resolve_base(str(hf_dir), tmp_path / "cache")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_base(str(hf_dir), tmp_path / "cache") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-5}))
    assert resolve_base(str(hf_dir), tmp_path / "cache") != first


def test_a_model_key_that_contradicts_the_base_names_both_values(tmp_path, sst2_files, hf_dir):
    cfg = tiny_config(*sst2_files, tmp_path / "run")
    cfg.model = type(cfg.model)(init_from=str(hf_dir), hidden_size=64)
    with pytest.raises(ConfigError, match=r"`model.hidden_size` is 64 here but 32 in the base"):
        with_base(cfg)
    cfg.model.hidden_size = 32  # the base's own value is no contradiction
    assert with_base(cfg).model.num_layers == 2


def test_sentence_transformers_layout(tmp_path, hf_dir):
    st = tmp_path / "st-model"
    shutil.copytree(hf_dir, st / "0_Transformer")
    (st / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    run_dir = resolve_base(str(st), tmp_path / "cache")
    assert load_run(run_dir).cfg.model.hidden_size == 32


def test_a_sentence_transformers_base_pools_as_it_was_trained(tmp_path, sst2_files, hf_dir):
    """Its Pooling module's mode becomes `model.pooling` (mean for all-MiniLM-L6-v2), the checkpoint's pooler is
    not used; a config that sets a pooling keeps it; a mode textcls lacks leaves the checkpoint's."""
    st = tmp_path / "st-model"
    shutil.copytree(hf_dir, st)  # all-MiniLM-L6-v2's layout: the Transformer at the top ("path": "")
    (st / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (st / "1_Pooling").mkdir()
    modes = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    cfg = tiny_config(*sst2_files, tmp_path / "run")
    cfg.model = type(cfg.model)(init_from=str(st))
    assert with_base(cfg).model.pooling == "mean"
    cfg.model.pooling = "max"
    assert with_base(cfg).model.pooling == "max"
    cfg.model.pooling = "cls"
    (st / "1_Pooling" / "config.json").write_text(json.dumps({**modes, "pooling_mode_mean_tokens": False,
                                                              "pooling_mode_mean_sqrt_len_tokens": True}))
    assert with_base(cfg).model.pooling == "cls_tanh"  # BERT's pooler, as for a plain HF folder
    cfg.model = type(cfg.model)(init_from=str(hf_dir))
    assert with_base(cfg).model.pooling == "cls_tanh"


def test_hub_base_comes_from_the_cache_offline(tmp_path, hf_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"hf:acme/tiny-bert could not be found in the local cache"):
        resolve_base("hf:acme/tiny-bert", tmp_path / "cache")
    # huggingface_hub's cache layout: models--ORG--NAME/{refs/main, snapshots/REVISION/...}
    repo = tmp_path / "hub" / "models--acme--tiny-bert"
    shutil.copytree(hf_dir, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    assert load_run(resolve_base("hf:acme/tiny-bert", tmp_path / "cache")).cfg.model.num_layers == 2
    with pytest.raises(ConfigError, match=r"must be hf:ORG/NAME"):
        resolve_base("hf:no-org", tmp_path / "cache")


def test_a_folder_that_is_neither_a_run_nor_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"neither a textcls run directory .* nor a HuggingFace model folder"):
        resolve_base(str(tmp_path / "empty"), tmp_path / "cache")


@pytest.mark.slow  # 20-40 s of whole CLI runs; `make test-slow` and CI run it
def test_train_a_data_file_on_a_base_in_one_command(tmp_path, hf_dir):
    """`textcls train FILE --base DIR`: the recipe's fine-tuning choices, the base's architecture and tokenizer,
    a run that eval and predict use."""
    from conftest import run_cli, sst2_slice, write_tsv

    data = write_tsv(tmp_path / "data.tsv", sst2_slice(200))
    result = run_cli("train", str(data), "--base", str(hf_dir), "--budget", "40s", "--output", str(tmp_path / "run"),
                     env={"TEXTCLS_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert "train.lr: 0.0001" in result.stderr and "hidden size 32" in result.stderr
    run = load_run(tmp_path / "run")
    assert run.cfg.model.hidden_size == 32 and run.tokenizer.get_vocab_size() == 25
    assert run_cli("eval", str(tmp_path / "run"), str(data)).returncode == 0
