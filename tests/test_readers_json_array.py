"""A `.json` file holding one array of objects reads like JSONL: item N is record N, errors name the item,
and column detection (`textcls train data.json`) reads its keys."""

import json

import pytest

from textcls.config import DataConfig
from textcls.data.detect import detect_columns
from textcls.data.readers import iter_records
from textcls.errors import DataError

ROWS = [{"review": "good film", "stars": "pos", "id": 1}, {"review": "dull", "stars": 0, "id": 2},
        {"review": "fine, really", "stars": ["pos", "neg"], "id": 3}]


def records(path, labelled=True, **cfg):
    cfg = DataConfig(text_columns=["review"], label_column="stars", task="multilabel", **cfg)
    return list(iter_records(str(path), cfg, labelled=labelled))


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_reads_like_jsonl(tmp_path, indent):
    array, lines = tmp_path / "a.json", tmp_path / "a.jsonl"
    array.write_text("\n" + json.dumps(ROWS, indent=indent) + "\n", encoding="utf-8")
    lines.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    got, want = records(array), records(lines)
    assert [(r.text, r.labels, r.label_set) for r in got] == [(r.text, r.labels, r.label_set) for r in want]
    assert [r.line for r in got] == [1, 2, 3]  # the item number
    assert [r.text for r in records(array, labelled=False)] == ["good film", "dull", "fine, really"]


def test_a_bom_and_an_empty_array(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS[:1]).encode())
    assert [r.text for r in records(p)] == ["good film"]
    p.write_text("[]")
    assert records(p) == []


def test_json_array_errors_name_the_item(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([ROWS[0], {"review": "no label"}]))
    with pytest.raises(DataError, match=r"a.json, item 2: key\(s\) 'stars' missing"):
        records(p)
    assert [r.line for r in records(p, on_bad_lines="skip")] == [1]
    p.write_text(json.dumps([ROWS[0], "just a string"]))
    with pytest.raises(DataError, match="item 2: each item of the array must be a JSON object"):
        records(p)
    p.write_text(json.dumps([ROWS[0], {"review": "x", "stars": {"a": 1}}]))
    with pytest.raises(DataError, match="item 2: a label must be a string or a number"):
        records(p)
    p.write_text('[{"review": "x", "stars": "pos"},\n {"review": ')
    with pytest.raises(DataError, match="a.json: not valid JSON .*line 2"):
        records(p)


def test_column_detection_reads_the_array_keys(tmp_path):
    p = tmp_path / "reviews.json"
    rows = [{"id": i, "text": f"a review number {i} with some words", "label": ["pos", "neg"][i % 2]}
            for i in range(40)]
    p.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    found = detect_columns(str(p))
    assert found["format"] == "jsonl" and found["text_columns"] == ["text"] and found["label_column"] == "label"
