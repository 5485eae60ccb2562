"""bench/plan_timing.py: cases name a suite set, a path and a worker count; sets are read with their columns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import plan_timing


def test_a_set_is_planned_with_the_columns_the_suite_reads_it_with():
    assert plan_timing.columns(plan_timing.SETS["ag_news_demo"]) == (["1", "2"], "0")
    assert plan_timing.columns(plan_timing.SETS["sst2"]) == (["sentence"], "label")


@pytest.mark.parametrize("case", ["mr:auto", "imdb:auto:1", "mr:large:1", "mr:auto:0", "mr:auto:two"])
def test_a_bad_case_is_refused_before_anything_trains(case, capsys, monkeypatch):
    monkeypatch.setattr(plan_timing, "measure", lambda *a: pytest.fail("a case was measured"))
    with pytest.raises(SystemExit) as raised:
        plan_timing.main(["--cases", case])
    assert raised.value.code == 2 and "SET:auto|base:WORKERS" in capsys.readouterr().err
