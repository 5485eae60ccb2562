from pathlib import Path

import pytest
import yaml

from textcls.config import Config, apply_override, config_from_dict, demo_config, load_config, save_config
from textcls.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_build_a_valid_config():
    cfg = config_from_dict({})
    assert isinstance(cfg, Config)
    assert cfg.model.sharing.strategy == "none"


def test_unknown_key_names_key_and_closest_valid_key():
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"model": {"hiden_size": 64}}, source="my.yaml")
    msg = str(exc.value)
    assert "my.yaml" in msg and "model.hiden_size" in msg and "model.hidden_size" in msg


def test_unknown_section_is_reported():
    with pytest.raises(ConfigError, match="unknown key `trian`.*did you mean `train`"):
        config_from_dict({"trian": {}})


def test_every_problem_is_reported_at_once():
    raw = {"model": {"hidden_size": 30, "num_heads": 4, "dropout": 1.5, "typo": 1}, "train": {"lr": -1}}
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw)
    msg = str(exc.value)
    for needle in ("model.typo", "divisible", "model.dropout", "train.lr"):
        assert needle in msg, needle


def test_wrong_types_are_named():
    with pytest.raises(ConfigError, match=r"`train.batch_size` must be int, got 'big'"):
        config_from_dict({"train": {"batch_size": "big"}})
    with pytest.raises(ConfigError, match=r"`model.pooling` must be one of .*did you mean 'mean'"):
        config_from_dict({"model": {"pooling": "meen"}})


def test_scientific_notation_without_dot_is_a_float():
    cfg = config_from_dict({"train": {"lr": "5e-4"}})
    assert cfg.train.lr == pytest.approx(5e-4)


def test_dotted_overrides_parse_values_as_yaml():
    cfg = config_from_dict({}, overrides=("train.lr=3e-4", "model.sharing.strategy=all", "data.text_columns=[a, b]",
                                          "train.max_steps=10"))
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.sharing.strategy == "all"
    assert cfg.data.text_columns == ["a", "b"]
    assert cfg.train.max_steps == 10


def test_override_of_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match=r"unknown key `train.lrr` \(from --set\) in section `train`; did you mean"):
        config_from_dict({}, overrides=("train.lrr=1",))
    with pytest.raises(ConfigError, match=r"unknown key `train.lrr` in section") as err:  # from the file
        config_from_dict({"train": {"lrr": 1}}, overrides=("train.lr=1",))
    assert "--set" not in str(err.value)


def test_each_problem_is_reported_once():
    with pytest.raises(ConfigError, match=r"1 problem\(s\).*did you mean 'accuracy'"):
        config_from_dict({"train": {"metric": "accuracyy"}})
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "train.lr")


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1, 2\nmodel: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML at line \d+, column \d+"):
        load_config(bad)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    cfg_path = tmp_path / "sub" / "c.yaml"
    cfg_path.write_text("data: {train: ../d/train.tsv}\n")
    cfg = load_config(cfg_path)
    assert Path(cfg.data.train) == (tmp_path / "sub" / "../d/train.tsv")


def test_resolved_config_round_trips(tmp_path):
    cfg = config_from_dict({"model": {"num_layers": 3, "sharing": {"strategy": "cycle", "num_unique": 2}}})
    save_config(cfg, tmp_path / "config.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again == cfg


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="group_size"):
        config_from_dict({"model": {"num_layers": 3, "sharing": {"strategy": "sequence", "group_size": 4}}})
    with pytest.raises(ConfigError, match="more positions"):
        config_from_dict({"data": {"max_length": 600}, "model": {"max_positions": 512}})


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.model.hidden_size % cfg.model.num_heads == 0


def test_pooling_mapping_names_the_type_and_the_layers():
    cfg = config_from_dict({"model": {"num_layers": 3, "pooling": {"type": "mean", "layers": 2}}})
    assert (cfg.model.pooling, cfg.model.pool_layers) == ("mean", 2)
    assert config_from_dict({"model": {"pooling": {"type": "max"}}}).model.pool_layers == 1
    with pytest.raises(ConfigError, match=r"takes `type`.*got keys kind, layers"):
        config_from_dict({"model": {"pooling": {"kind": "mean", "layers": 2}}})
    with pytest.raises(ConfigError, match=r"did you mean `layers` for `layer`"):
        config_from_dict({"model": {"pooling": {"type": "mean", "layer": 2}}})
    with pytest.raises(ConfigError, match=r"`model.pool_layers` \(4\) exceeds `model.num_layers` \(2\)"):
        config_from_dict({"model": {"num_layers": 2, "pooling": {"type": "cls", "layers": 4}}})


def test_demo_config_comes_from_the_checkout_or_the_installed_share_folder(tmp_path, monkeypatch):
    import sys

    from textcls import config as config_module

    assert demo_config() == config_module.DEMO_CONFIG  # a source checkout
    monkeypatch.setattr(config_module, "DEMO_CONFIG", tmp_path / "no" / "default.yaml")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(ConfigError, match="not part of this installation"):
        load_config(None)
    # A wheel's data-files: PREFIX/share/textcls/configs/default.yaml beside share/textcls/data/.
    share = tmp_path / "share" / "textcls"
    (share / "configs").mkdir(parents=True)
    (share / "configs" / "default.yaml").write_text((ROOT / "configs" / "default.yaml").read_text())
    assert Path(load_config(None).data.train).resolve() == share / "data" / "ag_news_demo" / "train.csv"


@pytest.mark.parametrize("section, key, value", [
    ("train", "num_threads", 0), ("train", "num_threads", -1), ("train", "pad_to_multiple_of", 0),
    ("train", "seed", -1), ("data", "split_seed", -2), ("data", "head_tokens", -1), ("tokenizer", "min_frequency", -1),
    ("train", "eps", 0), ("model", "layer_norm_eps", -1e-5), ("model", "initializer_range", 0),
    ("model", "type_vocab_size", -1),
])
def test_out_of_range_numbers_are_named(section, key, value):
    with pytest.raises(ConfigError, match=rf"1 problem\(s\).*`{section}.{key}` must be"):
        config_from_dict({section: {key: value}})


def test_a_key_twice_in_one_yaml_mapping_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 1, batch_size: 16}\nmodel: {num_layers: 2}\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"c.yaml is not valid YAML at line 3, column 1: the key 'train' appears "
                                          r"twice \(first at line 1\)"):
        load_config(path)


def test_the_label_column_cannot_be_a_text_column_and_a_pair_needs_two_columns():
    with pytest.raises(ConfigError, match=r"`data.text_columns` names 'text' twice"):
        config_from_dict({"data": {"text_columns": ["text", "text"]}})
    with pytest.raises(ConfigError, match=r"`data.label_column` \('label'\) is also in `data.text_columns`"):
        config_from_dict({"data": {"text_columns": ["label"], "label_column": "label"}})


def test_set_values_that_yaml_reads_as_a_mapping_stay_text():
    assert config_from_dict({}, overrides=("data.delimiter=:",)).data.delimiter == ":"
    with pytest.raises(ConfigError, match=r"`data.delimiter` must be one character, got '::'"):
        config_from_dict({}, overrides=("data.delimiter=::",))
    with pytest.raises(ConfigError, match=r"`data.delimiter` must be str or null, got \{"):  # braces: YAML as written
        config_from_dict({}, overrides=("data.delimiter={a: 1}",))


def test_a_text_pair_needs_five_positions():
    with pytest.raises(ConfigError, match=r"room for \[CLS\] a \[SEP\] b \[SEP\]"):
        config_from_dict({"data": {"text_columns": ["a", "b"], "max_length": 4}})


def test_yaml_anchors_and_merge_keys_work_and_their_keys_may_be_overridden(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {num_layers: 2}\ntrain:\n  ensemble: 2\n  ensemble_variants:\n"
                    "    - &base {model.dropout: 0.2, model.pooling: mean}\n    - {<<: *base, model.dropout: 0.0}\n")
    variants = load_config(path).train.ensemble_variants
    assert variants == [{"model.dropout": 0.2, "model.pooling": "mean"},
                        {"model.dropout": 0.0, "model.pooling": "mean"}]
