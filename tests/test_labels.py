"""The label list: the same order in every process, and a damaged labels.json refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import child_env
from textcls.config import DataConfig
from textcls.data.labels import build_labels, load_labels
from textcls.errors import CheckpointError

SCRIPT = ("from textcls.config import DataConfig; from textcls.data.labels import build_labels; "
          "print(build_labels([[v] for v in {VALUES!r}], DataConfig(train='t.tsv')))")


@pytest.mark.parametrize("values", [["0", "00", "1", "01", "10", "010"], ["pos", "neg", "Pos", "neu"]])
def test_label_order_does_not_depend_on_the_hash_seed(values):
    orders = set()
    for seed in ("0", "1", "2", "3", "17", "1234"):
        out = subprocess.run([sys.executable, "-c", SCRIPT.replace("{VALUES!r}", repr(values))], capture_output=True,
                             text=True, env=child_env(PYTHONHASHSEED=seed), check=True).stdout
        orders.add(out.strip())
    assert len(orders) == 1, orders


def test_integer_labels_sort_numerically_then_by_text():
    cfg = DataConfig(train="t.tsv")
    assert build_labels([["10"], ["01"], ["1"], ["0"], ["00"], ["2"]], cfg) == ["0", "00", "01", "1", "2", "10"]


def test_labels_json_with_a_repeated_label_is_refused(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(["neg", "pos", "neg"]))
    with pytest.raises(CheckpointError, match="lists the label 'neg' twice"):
        load_labels(path)
