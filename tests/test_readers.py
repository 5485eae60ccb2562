import json

import pytest

from textcls.config import DataConfig
from textcls.data.readers import detect_format, iter_records
from textcls.errors import DataError


def records(path, labelled=True, **cfg):
    return list(iter_records(str(path), DataConfig(**cfg), labelled=labelled))


def test_tsv_with_header_by_name(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_text('sentence\tlabel\nit \'s "fine" \t1\nbad movie \t0\n', encoding="utf-8")
    recs = records(p, text_columns=["sentence"])
    assert [(r.text, r.labels, r.line) for r in recs] == [('it \'s "fine" ', ["1"], 2), ("bad movie ", ["0"], 3)]


def test_csv_without_header_by_index_with_pairs_quotes_and_newlines(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('"3","Title one","Body, with ""quotes""\nand a newline"\n"1","T2","B2"\n', encoding="utf-8")
    recs = records(p, text_columns=[1, 2], label_column=0)
    assert recs[0].text == "Title one" and recs[0].text_pair == 'Body, with "quotes"\nand a newline'
    assert recs[0].labels == ["3"] and recs[1].line == 3


def test_bom_and_crlf_are_accepted(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes("\ufefftext,label\r\nhello,pos\r\nbye,neg\r\n".encode("utf-8"))
    recs = records(p)
    assert [(r.text, r.labels) for r in recs] == [("hello", ["pos"]), ("bye", ["neg"])]


def test_jsonl(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps({"text": "good", "label": "pos"}) + "\n\n" + json.dumps({"text": "bad", "label": 0}) + "\n")
    recs = records(p)
    assert [(r.text, r.labels, r.line) for r in recs] == [("good", ["pos"], 1), ("bad", ["0"], 3)]


def test_fasttext_single_and_multilabel(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("__label__pos great film\n__label__a __label__b two labels here\n")
    assert detect_format(str(p), DataConfig()) == "fasttext"
    multi = records(p, task="multilabel")
    assert multi[0].labels == ["pos"] and multi[1].labels == ["a", "b"] and multi[1].text == "two labels here"
    with pytest.raises(DataError, match="line 2.*multilabel"):
        records(p)


def test_plain_text_is_predict_only(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("one\n\nthree\n")
    with pytest.raises(DataError, match="line 2: the text is empty"):
        records(p, labelled=False)
    assert [r.line for r in iter_records(str(p), DataConfig(), labelled=False, allow_empty=True)] == [1, 2, 3]
    with pytest.raises(DataError, match="plain text files have no labels"):
        records(p)


def test_wrong_field_count_names_the_line_and_can_be_skipped(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_text("sentence\tlabel\nok\t1\ntoo\tmany\tfields\nfine\t0\n")
    with pytest.raises(DataError, match=r"a.tsv, line 3: expected 2 field\(s\).*on_bad_lines"):
        records(p, text_columns=["sentence"])
    skipped: list[int] = []
    recs = list(iter_records(str(p), DataConfig(text_columns=["sentence"], on_bad_lines="skip"), bad_lines=skipped))
    assert [r.text for r in recs] == ["ok", "fine"] and skipped == [3]


def test_missing_column_lists_the_header(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_text("sentence\tlabel\nok\t1\n")
    with pytest.raises(DataError, match="column 'text' not found.*'sentence', 'label'"):
        records(p)


def test_invalid_utf8_names_byte_offset_and_encoding_option(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_bytes(b"sentence\tlabel\nok\t1\nbad \xff\xfe byte\t0\n")
    with pytest.raises(DataError, match=r"byte offset 24.*data.encoding"):
        records(p, text_columns=["sentence"])
    recs = records(p, text_columns=["sentence"], encoding="latin-1")
    assert recs[1].text == "bad \xff\xfe byte"


def test_empty_text_and_missing_label(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_text("sentence\tlabel\n   \t1\n")
    with pytest.raises(DataError, match="line 2: the text is empty"):
        records(p, text_columns=["sentence"])
    q = tmp_path / "b.tsv"
    q.write_text("sentence\tlabel\nhello\t\n")
    with pytest.raises(DataError, match="line 2: the label is missing"):
        records(q, text_columns=["sentence"])


def test_bad_json_line(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(DataError, match="a.jsonl, line 2: not valid JSON"):
        records(p)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        records(tmp_path / "nope.tsv")
    p = tmp_path / "a.dat"
    p.write_text("x")
    with pytest.raises(DataError, match="data.format"):
        records(p)


def test_jsonl_labels_are_read_as_their_json_values(tmp_path):
    p = tmp_path / "a.jsonl"
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 1.0}, {"text": "c", "label": True},
            {"text": "d", "label": " pos "}, {"text": "e", "label": 2.5}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.labels for r in records(p)] == [["1"], ["1"], ["true"], ["pos"], ["2.5"]]
    p.write_text(json.dumps({"text": "a", "label": {"x": 1}}) + "\n")
    with pytest.raises(DataError, match=r"a.jsonl, line 1: a label must be a string or a number"):
        records(p)


def test_multilabel_jsonl_row_may_have_no_labels_but_a_missing_label_is_an_error(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps({"text": "a", "label": ["x", "y"]}) + "\n" + json.dumps({"text": "b", "label": []}) + "\n")
    assert [r.labels for r in records(p, task="multilabel")] == [["x", "y"], []]
    p.write_text(json.dumps({"text": "a", "label": ["x"]}) + "\n" + json.dumps({"text": "b", "label": None}) + "\n")
    with pytest.raises(DataError, match="line 2: the label is missing"):
        records(p, task="multilabel")


def test_a_label_with_a_tab_or_line_break_is_refused(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('text,label\ngood film,pos\nbad film,"ne\ng"\n')
    with pytest.raises(DataError, match=r"a.csv, line 3: the label 'ne\\ng' holds a tab or a line break"):
        records(p)


def test_labels_are_nfc_and_a_header_naming_a_column_twice_is_refused(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("text,label\ngood,caf\u00e9\nfine,cafe\u0301\n", encoding="utf-8")
    assert [r.labels for r in records(p)] == [["caf\u00e9"], ["caf\u00e9"]]  # composed and decomposed: one label
    p.write_text("text,text,label\na,b,x\n")
    with pytest.raises(DataError, match=r"a.csv: the header names column 'text' 2 times"):
        records(p)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_wide_encodings_are_split_into_lines_after_decoding(tmp_path, encoding):
    p = tmp_path / "a.tsv"
    p.write_bytes("text\tlabel\r\nbon film\tpos\nmauvais 🎬 film\tneg\n".encode(encoding))
    recs = records(p, encoding=encoding)
    assert [(r.line, r.text, r.labels) for r in recs] == [(2, "bon film", ["pos"]), (3, "mauvais 🎬 film", ["neg"])]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_classic_mac_line_ends_are_lines(tmp_path, encoding):
    # A file with carriage returns and no line feed at all used to read as one line.
    p = tmp_path / "a.tsv"
    p.write_bytes("text\tlabel\rgood film\tpos\rbad film\tneg\r".encode(encoding))
    recs = records(p, encoding=encoding)
    assert [(r.line, r.text, r.labels) for r in recs] == [(2, "good film", ["pos"]), (3, "bad film", ["neg"])]
    p = tmp_path / "b.txt"
    p.write_bytes(b"good\rfilm\nbad film\n")  # a stray CR in a file with line feeds is not a line end
    assert [r.text for r in records(p, labelled=False)] == ["good\rfilm", "bad film"]
