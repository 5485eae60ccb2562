import shutil

import pytest

from conftest import sst2_slice, tiny_config, write_tsv
from textcls.config import DataConfig, TokenizerConfig
from textcls.data import pipeline
from textcls.data.pipeline import encode_texts, prepare_data, tokenize_file, truncate
from textcls.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer
from textcls.errors import ConfigError, DataError

TEXTS = [s for s, _ in sst2_slice(300)] + ["这家酒店的服务很好", "價格不是太好"]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram", "word", "char"])
def test_each_tokenizer_type_trains_encodes_and_round_trips(kind, tmp_path):
    tok = train_tokenizer(TEXTS, TokenizerConfig(type=kind, vocab_size=400, min_frequency=1))
    assert [tok.token_to_id(s) for s in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    ids = tok.encode("a charming film", add_special_tokens=False).ids
    assert ids and all(i >= 0 for i in ids)
    path = tmp_path / "tokenizer.json"
    path.write_text(tok.to_str())
    assert load_tokenizer(path).encode("a charming film", add_special_tokens=False).ids == ids


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram", "word"])
def test_cjk_characters_are_one_token_each(kind):
    tok = train_tokenizer(TEXTS, TokenizerConfig(type=kind, vocab_size=400, min_frequency=1))
    tokens = tok.encode("服务很好", add_special_tokens=False).tokens
    assert len(tokens) == 4, tokens


@pytest.mark.parametrize("kind, vocab", [("wordpiece", 9000), ("bpe", 5000), ("unigram", 5000)])
def test_split_cjk_false_learns_multi_character_words(kind, vocab):
    """Real ChnSentiCorp reviews: with split_cjk false, frequent words (酒店 hotel, 服务 service) become pieces.

    The 1,500 reviews hold ~2,800 distinct characters, which every vocabulary keeps first (wordpiece twice:
    with and without ##), so the vocabularies leave room above that for multi-character pieces."""
    from conftest import DATA

    lines = (DATA / "chnsenticorp" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:1500]
    texts = [line.split("\t")[-1] for line in lines]
    split = train_tokenizer(texts, TokenizerConfig(type=kind, vocab_size=vocab))
    words = train_tokenizer(texts, TokenizerConfig(type=kind, vocab_size=vocab, split_cjk=False))
    cjk = lambda token: sum("\u4e00" <= ch <= "\u9fff" for ch in token)  # noqa: E731
    assert max(cjk(t) for t in split.get_vocab()) == 1
    assert sum(cjk(t) >= 2 for t in words.get_vocab()) > 300
    sample = "酒店的服务很好,房间也很干净。"  # an ASCII comma: NFKC turns the full-width one into it
    pieces = words.encode(sample, add_special_tokens=False).tokens
    assert len(pieces) < len(split.encode(sample, add_special_tokens=False).tokens)
    assert "[UNK]" not in pieces
    assert "".join(p.replace("##", "").replace("</w>", "").replace("▁", "") for p in pieces) == sample


@pytest.mark.parametrize("options, text, want", [
    ({}, "Café ＡＢ", "café ab"),  # defaults: NFKC (full-width letters) and lowercase, accents kept
    ({"lowercase": False}, "Café ＡＢ", "Café AB"),
    ({"strip_accents": True}, "Café ＡＢ", "cafe ab"),
    ({"nfkc": False, "lowercase": False}, "Café ＡＢ", "Café ＡＢ"),
    ({}, "a \t\n  b", "a b"),  # runs of whitespace become one space
])
def test_normalization_options(options, text, want):
    tok = train_tokenizer(TEXTS, TokenizerConfig(vocab_size=400, min_frequency=1, **options))
    assert tok.normalizer.normalize_str(text) == want


def test_encode_adds_cls_sep_and_segments_for_pairs():
    tok = train_tokenizer(TEXTS, TokenizerConfig(vocab_size=400, min_frequency=1))
    ids, types = encode_texts(tok, ["good film"], ["bad plot twist"], max_length=64)
    assert ids[0][0] == 2 and ids[0][-1] == 3 and ids[0].count(3) == 2
    first_sep = ids[0].index(3)
    assert types[0][: first_sep + 1] == [0] * (first_sep + 1) and set(types[0][first_sep + 1:]) == {1}


def test_truncation_modes():
    ids = list(range(10))
    assert truncate(ids, 4, "head", 2) == [0, 1, 2, 3]
    assert truncate(ids, 4, "tail", 2) == [6, 7, 8, 9]
    assert truncate(ids, 4, "head+tail", 1) == [0, 7, 8, 9]


def test_labels_come_from_training_split_and_unknown_eval_label_is_named(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_slice(200))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_slice(20, "dev") + [("strange row", "7")])
    cfg = tiny_config(train, valid, tmp_path / "run")
    with pytest.raises(DataError, match=r"valid.tsv, line 22: label '7' never occurs in the training data"):
        prepare_data(cfg)


def test_valid_fraction_split_is_seeded(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_slice(200))
    cfg = tiny_config(train, None, tmp_path / "run", data={"valid_fraction": 0.25})
    a, b = prepare_data(cfg), prepare_data(cfg)
    assert len(a.valid) == 50 and len(a.train) == 150
    assert a.valid["input_ids"] == b.valid["input_ids"]


def test_valid_fraction_rows_shape_neither_the_vocabulary_nor_the_labels(tmp_path):
    """Each row has a word of its own (3 times, past min_frequency) and one row a label of its own: the
    tokenizer and the label list see only the training part, as with a separate validation file."""
    rows = [(f"w{i}x w{i}x w{i}x film", "rare" if i == 7 else "ab"[i % 2]) for i in range(40)]
    train = write_tsv(tmp_path / "train.tsv", rows)
    rare_held_out = 0
    for seed in range(12):
        cfg = tiny_config(train, None, tmp_path / "run", data={"valid_fraction": 0.25}, train={"seed": seed})
        cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency = 2000, 2
        data = prepare_data(cfg)
        held, kept = set(data.valid["line"]), set(data.train["line"])  # file lines: row i is line i + 2
        rare_held_out += 9 not in kept
        assert not held & kept and 9 not in held and len(held | kept) == 40 - (9 not in kept)
        vocab = data.tokenizer.get_vocab()
        assert all((f"w{line - 2}x" in vocab) == (line in kept) for line in range(2, 42)), seed
        assert data.labels == (["a", "b", "rare"] if 9 in kept else ["a", "b"])
    assert not rare_held_out  # the split is stratified: a class of one row always trains


def test_valid_folds_are_disjoint_stratified_and_cover_the_rows(tmp_path):
    rows = [(f"row {i} film", "a" if i % 4 else "b") for i in range(80)]  # 60 a, 20 b
    train = write_tsv(tmp_path / "train.tsv", rows)
    held = []
    for fold in range(4):
        cfg = tiny_config(train, None, tmp_path / "run", data={"valid_fraction": 0.25, "valid_fold": fold})
        data = prepare_data(cfg)
        lines = set(data.valid["line"])
        assert not lines & set(data.train["line"]) and len(lines) + len(data.train) == 80
        assert sorted(data.valid["label"]).count(data.labels.index("b")) == 5  # a quarter of each class
        held.append(lines)
    assert len(set().union(*held)) == 80 and sum(map(len, held)) == 80
    first = tiny_config(train, None, tmp_path / "run", data={"valid_fraction": 0.25})
    assert set(prepare_data(first).valid["line"]) == held[0]  # fold 0 is the split without folds


@pytest.mark.parametrize("data, message", [({"valid_fraction": 0.25, "valid_fold": 4}, r"in 0\.\.3"),
                                           ({"valid_fold": 1}, "set `data.valid_fraction`")])
def test_a_fold_outside_the_split_is_refused(tmp_path, data, message):
    train = write_tsv(tmp_path / "train.tsv", sst2_slice(50))
    with pytest.raises(ConfigError, match=message):
        tiny_config(train, None, tmp_path / "run", data=data)


def test_valid_file_and_valid_fraction_together_are_refused(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_slice(50))
    with pytest.raises(ConfigError, match="valid_fraction"):
        tiny_config(train, train, tmp_path / "run", data={"valid_fraction": 0.25})


def test_a_header_read_by_index_is_refused_until_header_is_set(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_slice(60))  # header: sentence, label
    cfg = tiny_config(train, None, tmp_path / "run", data={"text_columns": [0], "label_column": 1})
    with pytest.raises(DataError, match=r"train.tsv, line 1: its label 'label' occurs nowhere else.*data.header: true"):
        prepare_data(cfg)
    cfg.data.header = True
    assert prepare_data(cfg).labels == ["0", "1"]
    headless = write_tsv(tmp_path / "headless.tsv", sst2_slice(60), header=())
    cfg = tiny_config(headless, None, tmp_path / "run", data={"text_columns": [0], "label_column": 1})
    data = prepare_data(cfg)
    assert data.labels == ["0", "1"] and len(data.train) == 60


def test_tokenized_cache_is_reused_without_reading_the_text(tmp_path, monkeypatch):
    train, valid = write_tsv(tmp_path / "t.tsv", sst2_slice(200)), write_tsv(tmp_path / "v.tsv", sst2_slice(30, "dev"))
    cfg = tiny_config(train, valid, tmp_path / "run")
    first = prepare_data(cfg)
    assert first.labels == ["0", "1"] and set(first.train.column_names) >= {"input_ids", "length", "label"}

    def boom(*a, **k):
        raise AssertionError("the text was read again")

    monkeypatch.setattr(pipeline, "iter_records", boom)
    monkeypatch.setattr(pipeline, "train_tokenizer", boom)
    second = prepare_data(cfg)
    assert second.train["input_ids"] == first.train["input_ids"]
    assert second.labels == first.labels
    # A changed file invalidates the cache entry.
    write_tsv(train, sst2_slice(201))
    with pytest.raises(AssertionError, match="read again"):
        prepare_data(cfg)


def test_two_runs_that_tokenize_the_same_file_at_once_share_the_cache_entry(tmp_path, monkeypatch):
    """Another run publishes the same entry while this one builds it: this run keeps theirs, no error."""
    train, valid = write_tsv(tmp_path / "t.tsv", sst2_slice(100)), write_tsv(tmp_path / "v.tsv", sst2_slice(20, "dev"))
    cfg = tiny_config(train, valid, tmp_path / "run")
    real = pipeline._publish_entry
    published = []

    def other_run_first(tmp, entry):
        shutil.copytree(tmp, entry)  # the other run renamed its copy into place a moment earlier
        (entry / "theirs").touch()
        published.append(entry)
        real(tmp, entry)

    monkeypatch.setattr(pipeline, "_publish_entry", other_run_first)
    data = prepare_data(cfg)
    assert len(published) == 2 and all((e / "theirs").exists() for e in published)
    assert len(data.train) == 100 and len(data.valid) == 20
    monkeypatch.setattr(pipeline, "_publish_entry", real)
    assert prepare_data(cfg).train["input_ids"] == data.train["input_ids"]  # and later runs reuse it
    # An entry left without its metadata is replaced.
    leftover = tmp_path / "entry"
    leftover.mkdir()
    (leftover / "data.arrow").write_bytes(b"partial")
    built = tmp_path / "built"
    built.mkdir()
    (built / "meta.json").write_text("{}")
    real(built, leftover)
    assert (leftover / "meta.json").exists() and not (leftover / "data.arrow").exists() and not built.exists()


def test_label_names_file_maps_indexes(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('"2","sports news"\n"1","world news"\n')
    names = tmp_path / "classes.txt"
    names.write_text("World\nSports\n")
    cfg = DataConfig(format="csv", header=False, text_columns=[1], label_column=0, label_names=str(names),
                     label_index_base=1)
    tok = train_tokenizer(["sports news", "world news"], TokenizerConfig(vocab_size=100, min_frequency=1))
    ds, _ = tokenize_file(str(p), cfg, tok, labels=None)
    assert pipeline.split_labels(ds) == ["World", "Sports"]
    assert ds["label"] == [1, 0]


def test_a_cold_run_reads_the_training_file_once(tmp_path, monkeypatch):
    train, valid = write_tsv(tmp_path / "t.tsv", sst2_slice(120)), write_tsv(tmp_path / "v.tsv", sst2_slice(20, "dev"))
    cfg = tiny_config(train, valid, tmp_path / "run")
    reads: list[str] = []
    real = pipeline.iter_records

    def counting(path, *args, **kwargs):
        reads.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "iter_records", counting)
    prepare_data(cfg)  # trains the tokenizer and tokenizes both splits
    assert reads.count(str(train)) == 1 and reads.count(str(valid)) == 1


def test_one_label_only_is_refused(tmp_path):
    rows = [(text, "pos") for text, _ in sst2_slice(30)]
    cfg = tiny_config(write_tsv(tmp_path / "train.tsv", rows), None, tmp_path / "run")
    with pytest.raises(DataError, match=r"train.tsv: every training row has the label 'pos'; a classifier needs"):
        prepare_data(cfg)


def test_label_names_with_a_bom_and_an_index_base_that_misses(tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("\ufeffWorld\nSports\n", encoding="utf-8")
    train = write_tsv(tmp_path / "train.tsv", [("match report", "2"), ("election news", "1")] * 10)
    cfg = tiny_config(train, None, tmp_path / "run", data={"label_names": str(names)})
    with pytest.raises(DataError, match=r"line 2: label 2 names no line of .*classes.txt \(2 names: with "
                                        r"`data.label_index_base: 0` the values 0..1 name them\)"):
        prepare_data(cfg)
    cfg.data.label_index_base = 1
    data = prepare_data(cfg)
    assert data.labels == ["World", "Sports"] and data.train["label"][:2] == [1, 0]


def test_a_valid_fraction_that_leaves_no_training_rows(tmp_path):
    cfg = tiny_config(write_tsv(tmp_path / "train.tsv", sst2_slice(20)), None, tmp_path / "run",
                      data={"valid_fraction": 0.99})
    with pytest.raises(DataError, match=r"valid_fraction 0.99 holds out all 20 rows"):
        prepare_data(cfg)


@pytest.mark.parametrize("text, problem", [("World\n\nSports\n", "line 2 is blank"),
                                           ("World\nSci\tTech\n", "line 2 holds a tab")])
def test_label_name_files_number_names_by_line(tmp_path, text, problem):
    from textcls.data.labels import read_label_names

    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=rf"classes.txt \(`data.label_names`\), {problem}"):
        read_label_names(str(path))
    path.write_text("World\nSports\n\n\n")  # trailing blank lines are fine
    assert read_label_names(str(path)) == ["World", "Sports"]
