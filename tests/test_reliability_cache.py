"""The tokenized cache: entries are keyed by the data file's content and checked (sha256, token ids within the
vocabulary, label ids within the label list) before reuse; a damaged entry is rebuilt with a warning."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pyarrow as pa

from conftest import sst2_slice, tiny_config, write_tsv
from textcls.data import pipeline
from textcls.data.pipeline import prepare_data


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "datasets").iterdir() if (p / "meta.json").exists())


def setup(tmp_path: Path):
    train = write_tsv(tmp_path / "t.tsv", sst2_slice(80))
    cfg = tiny_config(train, None, tmp_path / "run", data={"cache_dir": str(tmp_path / "cache")})
    return train, cfg, prepare_data(cfg)


def test_a_file_edited_in_place_with_size_and_mtime_kept_is_tokenized_again(tmp_path):
    train, cfg, first = setup(tmp_path)
    st = train.stat()
    text = train.read_text()
    edited = text.replace(" the ", " zqx ", 1)
    assert len(edited) == len(text) and edited != text
    train.write_text(edited)
    os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert train.stat().st_size == st.st_size and train.stat().st_mtime_ns == st.st_mtime_ns
    pipeline._DIGESTS.clear()  # a new process
    second = prepare_data(cfg)
    assert len(entries(tmp_path / "cache")) == 2
    assert second.train["input_ids"] != first.train["input_ids"]


def corrupt_arrow(entry: Path, change) -> None:
    """Rewrite an entry's data.arrow with `change` applied to its table (keeping meta.json as it was)."""
    path = entry / "data.arrow"
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_stream(source).read_all()
    table = change(table)
    path.unlink()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def test_flipped_bytes_are_caught_by_the_checksum_and_rebuilt(tmp_path, caplog):
    _, cfg, first = setup(tmp_path)
    (entry,) = entries(tmp_path / "cache")
    data = bytearray((entry / "data.arrow").read_bytes())
    data[-200] ^= 0x01
    (entry / "data.arrow").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="textcls"):
        second = prepare_data(cfg)
    assert "damaged" in caplog.text and "sha256" in caplog.text and "rebuilding" in caplog.text
    assert second.train["input_ids"] == first.train["input_ids"]


def test_token_ids_outside_the_vocabulary_are_caught_even_with_a_matching_checksum(tmp_path, caplog):
    _, cfg, first = setup(tmp_path)
    (entry,) = entries(tmp_path / "cache")
    vocab = first.tokenizer.get_vocab_size()

    def out_of_range(table):
        ids = table.column("input_ids").to_pylist()
        ids[0][1] = vocab + 5
        return table.set_column(table.column_names.index("input_ids"), "input_ids",
                                pa.array(ids, type=table.schema.field("input_ids").type))
    corrupt_arrow(entry, out_of_range)
    meta = json.loads((entry / "meta.json").read_text())
    meta["sha256"] = pipeline.sha256_file(entry / "data.arrow")  # as if damaged before its checksum was taken
    (entry / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="textcls"):
        second = prepare_data(cfg)
    assert f"input_ids outside 0..{vocab - 1}" in caplog.text
    assert second.train["input_ids"] == first.train["input_ids"]


def test_a_damaged_meta_json_is_rebuilt(tmp_path, caplog):
    _, cfg, first = setup(tmp_path)
    (entry,) = entries(tmp_path / "cache")
    (entry / "meta.json").write_text("[1, 2]")
    with caplog.at_level(logging.WARNING, logger="textcls"):
        second = prepare_data(cfg)
    assert "damaged" in caplog.text
    assert second.labels == first.labels and second.train["input_ids"] == first.train["input_ids"]


def test_a_damaged_cached_tokenizer_is_trained_again(tmp_path, caplog):
    _, cfg, first = setup(tmp_path)
    (cached,) = (tmp_path / "cache" / "tokenizers").glob("*.json")
    spec = json.loads(cached.read_text())
    spec["model"]["vocab"] = {k: (v + 1) % len(spec["model"]["vocab"]) for k, v in spec["model"]["vocab"].items()}
    cached.write_text(json.dumps(spec))  # still a valid tokenizer, with other ids
    with caplog.at_level(logging.WARNING, logger="textcls"):
        second = prepare_data(cfg)
    assert "cached tokenizer" in caplog.text and "checksum" in caplog.text
    assert second.tokenizer.to_str() == first.tokenizer.to_str()
