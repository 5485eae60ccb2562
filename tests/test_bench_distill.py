"""bench/distill.py's label-only twin: the same student shape as the distilled one (these tests read no data and
run no textcls process; `cli` is replaced by a recorder)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import distill as bench_distill


def student_dir(path: Path, model: dict) -> Path:
    path.mkdir()
    cfg = {"distill": {"student_layers": 2}, "model": model, "train": {}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    (path / "run.json").write_text(json.dumps({"step": 7}))
    (path / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s}) for s in (5, 9, 9)))
    return path


def test_the_twin_of_a_layers_student_has_its_rank_width_and_steps(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench_distill, "cli", lambda *args, threads: calls.append(args) or (None, 0.0))
    student = student_dir(tmp_path / "s", {"intermediate_size": 768, "embeddings": {"word_rank": 157}})
    bench_distill.label_only(student, tmp_path / "teacher", tmp_path / "twin", 2, ["--set=data.train=x.tsv"])
    (args,) = calls
    assert args[:2] == ("distill", str(tmp_path / "teacher")) and "--set=data.train=x.tsv" in args
    assert {"--set=distill.alpha=0", "--set=distill.augment_copies=0", "--set=distill.student_layers=2",
            "--set=model.embeddings.word_rank=157", "--set=model.intermediate_size=768",
            "--set=train.max_steps=9"} <= set(args)
    calls.clear()
    whole = student_dir(tmp_path / "w", {"intermediate_size": 1536, "embeddings": {"word_rank": None}})
    bench_distill.label_only(whole, tmp_path / "teacher", tmp_path / "twin2", 2, [])
    assert {"--set=model.embeddings.word_rank=null", "--set=model.intermediate_size=1536"} <= set(calls[0])
