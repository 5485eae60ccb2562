"""The automatic recipe: column detection, data statistics, the rules (a pure function), the n-gram share."""

from __future__ import annotations

import json

import numpy as np
import pytest

from textcls.data.detect import detect_columns
from textcls.data.readers import Record
from textcls.errors import ConfigError, DataError
from textcls.recipe.rules import BaseModel, Machine, auto_recipe, planned_loop_seconds
from textcls.recipe.stats import data_stats, pre_tokens
from textcls.train.nblr import choose_share

CPU2 = Machine("cpu", 2, False)


def fake_step(candidate) -> float:
    """Seconds per step in proportion to the work: hidden size x tokens per batch."""
    hidden = candidate.model["hidden_size"] if candidate.model else 384
    return 2e-8 * hidden * candidate.batch_size * candidate.length


def records(n: int, classes: int = 2, words: int = 12, text: str = "word") -> list[Record]:
    return [Record(i + 1, " ".join([f"{text}{i % 50}"] * words), None, [f"c{i % classes}"]) for i in range(n)]


def choices(recipe) -> dict:
    return {c.key: c.value for c in recipe.choices}


# --------------------------------------------------------------------------- detection


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_header_names_the_columns(tmp_path):
    rows = "".join(f"{i}\tpos\tthe film number {i} was fine\n" for i in range(20))
    path = write(tmp_path / "a.tsv", "id\tsentiment\treview\n" + rows)
    assert detect_columns(path) == {"format": "tsv", "text_columns": ["review"], "label_column": "sentiment",
                                    "header": True}


def test_the_longest_named_text_column_is_the_text(tmp_path):
    rows = "".join(f"label{i % 3},title {i},a much longer body of text number {i} here\n" for i in range(20))
    path = write(tmp_path / "a.csv", "category,title,body\n" + rows)
    assert detect_columns(path)["text_columns"] == ["body"]


def test_a_headerless_two_column_file_reads_short_as_label_and_long_as_text(tmp_path):
    rows = "".join(f"{'ab'[i % 2]},this is sentence number {i} of the file\n" for i in range(30))
    path = write(tmp_path / "a.csv", rows)
    assert detect_columns(path) == {"format": "csv", "text_columns": [1], "label_column": 0, "header": False}


def test_jsonl_keys_and_fasttext_lines(tmp_path):
    lines = "".join(json.dumps({"content": f"some text number {i} here", "y": i % 2}) + "\n" for i in range(20))
    assert detect_columns(write(tmp_path / "a.jsonl", lines)) == {"format": "jsonl", "text_columns": ["content"],
                                                                 "label_column": "y"}
    fasttext = "".join(f"__label__{i % 2} some text {i}\n" for i in range(10))
    assert detect_columns(write(tmp_path / "a.txt", fasttext)) == {"format": "fasttext"}


def test_ambiguous_columns_list_the_columns_and_the_flag(tmp_path):
    rows = "".join(f"{i % 4 + 1},a title {i} here,a description of item {i} that is longer\n" for i in range(30))
    path = write(tmp_path / "news.csv", rows)
    with pytest.raises(DataError, match="several columns look like text.*0.*1.*2.*--text-column"):
        detect_columns(path)
    assert detect_columns(path, ["1", "2"], "0")["text_columns"] == [1, 2]  # the flags settle it


def test_no_label_column_is_an_error(tmp_path):
    rows = "".join(f"unique text number {i} in the file\n" for i in range(30))
    with pytest.raises(DataError, match="no column looks like a label.*--label-column"):
        detect_columns(write(tmp_path / "a.csv", rows))


def test_a_named_column_that_is_missing(tmp_path):
    path = write(tmp_path / "a.tsv", "text\tlabel\n" + "".join(f"text {i} here\t{i % 2}\n" for i in range(10)))
    with pytest.raises(DataError, match="no column 'stars'.*'text'.*'label'"):
        detect_columns(path, label_column="stars")


# --------------------------------------------------------------------------- statistics


def test_statistics():
    recs = [Record(1, "A good film .", None, ["pos"]), Record(2, "a good film .", None, ["pos"]),
            Record(3, "这部电影很好", None, ["neg"]), Record(4, "bad", None, ["neg"])]
    s = data_stats(recs)
    assert s.rows == 4 and s.classes == {"pos": 2, "neg": 2} and s.imbalance == 1.0
    assert s.duplicate_rate == 0.25  # "a good film ." again, whatever the case
    assert pre_tokens("这部电影很好") == 6 and pre_tokens("A good film .") == 4
    assert s.cjk_share == pytest.approx(6 / 29)  # CJK characters of the non-space characters


# --------------------------------------------------------------------------- the rules


def test_max_length_follows_the_95th_percentile():
    short = auto_recipe(data_stats(records(5000, words=10)), 600, CPU2, fake_step)
    long = auto_recipe(data_stats(records(5000, words=100)), 600, CPU2, fake_step)
    assert choices(short)["data.max_length"] == 32  # 10 tokens, the floor
    assert choices(long)["data.max_length"] == 112  # 100 * 1.1 + 2 = 112
    assert choices(long)["data.truncation"] == "head+tail" and choices(short)["data.truncation"] == "head"
    reasons = {c.key: c.reason for c in long.choices}
    assert "95% of training texts fit in 100 tokens" in reasons["data.max_length"]


def test_cjk_text_gets_one_token_per_character_and_cjk_views():
    cjk = [Record(i + 1, "这部电影很好看" * 3 + str(i), None, [f"c{i % 2}"]) for i in range(3000)]
    r = choices(auto_recipe(data_stats(cjk), 3600, CPU2, fake_step))
    assert r["tokenizer.split_cjk"] is True and r["tokenizer.vocab_size"] == 8000
    assert r["train.ensemble"] > 1 and r["train.ensemble_variants"][1]["tokenizer.split_cjk"] is False
    latin = choices(auto_recipe(data_stats(records(3000)), 3600, CPU2, fake_step))
    assert "tokenizer.split_cjk" not in latin and latin["train.ensemble_variants"][1] == {"tokenizer.vocab_size": 8000}


def test_a_bigger_budget_never_gives_fewer_epochs_members_or_a_smaller_model():
    stats = data_stats(records(20_000, words=30))
    before = (0, 0, 0)
    for budget in (40, 60, 90, 120, 200, 300, 600, 1200, 3600, 7200):
        try:
            r = choices(auto_recipe(stats, budget, CPU2, fake_step))
        except ConfigError:
            assert before == (0, 0, 0)  # only the smallest budgets are refused
            continue
        now = (r["model.hidden_size"], r["train.epochs"], r.get("train.ensemble", 1))
        assert all(a >= b for a, b in zip(now, before)), (budget, now, before)
        before = now
    assert before[2] > 1  # the largest budgets train members


def test_the_plan_fits_the_budget():
    for budget in (120, 600, 3600):
        r = auto_recipe(data_stats(records(10_000, words=20)), budget, CPU2, fake_step, elapsed=5)
        assert r.estimate["loop"] + r.estimate["reserve"] + 5 <= budget
        assert choices(r)["train.time_budget_seconds"] <= budget


def test_members_below_the_cap_leave_the_rest_of_the_budget_to_added_members():
    stats = data_stats(records(10_000, words=20))
    grown = alone = 0
    for budget in (60, 80, 90, 150, 300, 600, 1200, 3600, 20_000):
        r = auto_recipe(stats, budget, CPU2, lambda c: 10 * fake_step(c), elapsed=5)
        c = choices(r)
        if c.get("train.ensemble", 1) == 1:
            # one model: the first member of a growing ensemble (on every core) where the time left holds 1.5 of it
            if "train.ensemble_max" in c:
                assert c["train.ensemble"] == 1 and c["train.ensemble_workers"] == 1 and c["train.ensemble_max"] == 10
                assert c["train.ensemble_fill_seconds"] >= 1.5 * r.estimate["loop"]
                grown += 1
            else:
                assert "train.ensemble" not in c and "train.ensemble_fill_seconds" not in c
                alone += 1
        elif c["train.ensemble"] < 10:
            assert c["train.ensemble_max"] == 10
            # the added members' deadline: within what is left once the reserve for 10 members is set aside
            assert c["train.time_budget_seconds"] < c["train.ensemble_fill_seconds"] < budget - 5 - 2.0
        else:
            assert "train.ensemble_max" not in c and "train.ensemble_fill_seconds" not in c  # at the cap
    assert grown and alone  # both sides of the 1.5 rule were seen
    capped = choices(auto_recipe(stats, 20_000, CPU2, fake_step))
    assert capped["train.ensemble"] == 10 and "train.ensemble_max" not in capped
    with_base = choices(auto_recipe(data_stats(records(5000)), 130, CPU2, lambda c: 10 * fake_step(c),
                                    base=BaseModel("hf:org/name", 384, 6, 512, length_p95=40, length_mean=20)))
    assert 1 < with_base["train.ensemble"] < 5 and with_base["train.ensemble_max"] == 5
    assert 0 < with_base["train.ensemble_fill_seconds"] < 130


def test_a_student_gets_epochs_where_a_trainer_gets_members():
    stats = data_stats(records(30_000, words=20))  # one epoch by the rows (30,000 / 27,000)
    plain = choices(auto_recipe(stats, 1200, CPU2, fake_step))
    assert plain["train.epochs"] == 1 and plain["train.ensemble"] > 1
    student = auto_recipe(stats, 1200, CPU2, fake_step, most_epochs=20)
    c = choices(student)
    assert 1 < c["train.epochs"] <= 20 and "train.ensemble" not in c and "at most 20" in \
        next(x.reason for x in student.choices if x.key == "train.epochs")
    assert student.estimate["loop"] + student.estimate["reserve"] <= 1200  # still within the budget
    longer = choices(auto_recipe(stats, 20_000, CPU2, fake_step, most_epochs=20))
    assert longer["train.epochs"] == 20  # the cap


def test_validation_rows_are_held_out_only_without_a_validation_file():
    stats = data_stats(records(50_000))
    assert choices(auto_recipe(stats, 600, CPU2, fake_step))["data.valid_fraction"] == 0.04  # at most 2,000 rows
    assert "data.valid_fraction" not in choices(auto_recipe(stats, 600, CPU2, fake_step, valid_rows=1000))


def test_members_hold_out_two_folds_when_the_held_out_rows_are_a_sizeable_share_and_it_costs_no_member():
    small = data_stats(records(9_000))
    plan = auto_recipe(small, 600, CPU2, fake_step)
    c = choices(plan)
    assert c["train.ensemble"] >= 4 and c["train.ensemble_folds"] == 2 and c["data.valid_fraction"] == 0.1
    without = auto_recipe(small, 600, CPU2, fake_step, valid_rows=900)  # a validation file: no folds to hold out
    assert "train.ensemble_folds" not in choices(without)
    big = choices(auto_recipe(data_stats(records(60_000)), 3600, CPU2, fake_step))
    assert big["data.valid_fraction"] < 0.05 and big["train.ensemble"] > 1 and "train.ensemble_folds" not in big
    # Its NB-LR fits (one per fold the members cover) are in the reserve; the plan stays within the budget.
    for budget in (60, 120, 300, 600, 3600):
        r = auto_recipe(small, budget, CPU2, fake_step)
        assert r.estimate["loop"] + r.estimate["reserve"] <= budget


def test_bad_data_and_budgets_are_refused():
    with pytest.raises(ConfigError, match="single class"):
        auto_recipe(data_stats(records(100, classes=1)), 600, CPU2, fake_step)
    with pytest.raises(ConfigError, match="at least two rows per class"):
        auto_recipe(data_stats(records(5, classes=3)), 600, CPU2, fake_step)
    with pytest.raises(ConfigError, match="too small to train one epoch of the smallest model.*--budget"):
        auto_recipe(data_stats(records(100_000, words=50)), 20, CPU2, fake_step)


def test_with_a_base_lr_follows_its_size_and_epochs_the_rows():
    def base(hidden):
        return BaseModel("hf:org/name", hidden, 6, 512, length_p95=40, length_mean=20)

    stats = data_stats(records(5000))
    small = choices(auto_recipe(stats, 3600, CPU2, fake_step, base=base(384)))
    large = choices(auto_recipe(stats, 3600, CPU2, fake_step, base=base(768)))
    assert small["train.lr"] == 1e-4 and large["train.lr"] == 2e-5
    assert small["model.init_from"] == "hf:org/name" and small["train.epochs"] == 3
    assert small["data.max_length"] == 48 and small["train.batch_size"] == 32  # 40 + 2, a multiple of 16
    assert "model.hidden_size" not in small  # the base's architecture
    assert small["train.ensemble"] == 5 and small["train.ensemble_workers"] == 2  # an hour holds the most copies
    def slow(candidate):
        return 10 * fake_step(candidate)

    tight = choices(auto_recipe(stats, 46, CPU2, slow, base=base(384)))
    assert tight["train.epochs"] == 3 and "train.ensemble" not in tight  # one copy is what 46 s holds
    grows = choices(auto_recipe(stats, 56, CPU2, slow, base=base(384)))  # one copy planned, part of another left
    assert grows["train.ensemble"] == 1 and grows["train.ensemble_max"] == 5 and grows["train.ensemble_workers"] == 1
    some = choices(auto_recipe(stats, 130, CPU2, slow, base=base(384)))
    assert 1 < some["train.ensemble"] < 5
    big = choices(auto_recipe(data_stats(records(150_000)), 3600, CPU2, lambda c: 1e-4, base=base(384)))
    assert big["train.epochs"] == 1


def test_a_base_is_timed_at_the_mean_length_of_its_own_tokens():
    """Length-bucketed batches pad to about the mean; the base's lengths are already in its tokens, so unlike
    the word counts without a base they take no allowance for sub-words (only the special tokens)."""
    timed = []

    def recording(candidate):
        timed.append(candidate)
        return fake_step(candidate)

    for mean, p95 in ((20.0, 40.0), (46.8, 75.0), (120.0, 300.0)):
        timed.clear()
        auto_recipe(data_stats(records(3000)), 600, CPU2, recording,
                    base=BaseModel("hf:org/name", 384, 6, 512, length_p95=p95, length_mean=mean))
        (candidate,) = timed
        assert candidate.model is None  # the base's own architecture
        assert mean + 2 <= candidate.length < mean + 2 + 8, (mean, candidate.length)  # + [CLS] and [SEP]


def test_the_ngram_model_reads_unit_length_vectors_and_word_pieces_with_or_without_a_base():
    stats = data_stats(records(5000))
    alone = choices(auto_recipe(stats, 600, CPU2, fake_step))
    based = choices(auto_recipe(stats, 3600, CPU2, fake_step,
                                base=BaseModel("hf:org/name", 384, 6, 512, length_p95=40, length_mean=20)))
    for c in (alone, based):
        assert c["nblr.weight"] > 0 and c["nblr.normalize"] is True and c["nblr.c"] == 10.0
        assert c["nblr.chars"] == [3, 5]


def test_the_ngram_share_is_chosen_on_validation_rows():
    targets = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
    base = np.array([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4], [0.2, 0.8]], dtype=np.float32)  # 3 of 4 right
    nblr = np.array([[0.6, 0.4], [0.1, 0.9], [0.7, 0.3], [0.3, 0.7]], dtype=np.float32)  # all right
    assert choose_share(base, nblr, targets, ["a", "b"], "single", 0.5, "accuracy") == 0.5  # ties: nearest 0.5
    assert choose_share(base, base, targets, ["a", "b"], "single", 0.5, "accuracy") == 0.5
    wrong = 1 - targets
    assert choose_share(base, wrong, targets, ["a", "b"], "single", 0.5, "accuracy") == 0.0


def test_the_planned_loop_of_a_case_is_the_loop_the_recipe_planned_with():
    """bench/plan_timing.py sets planned_loop_seconds against a real run: it must be the recipe's own figure."""
    for rows, budget in ((3000, 600), (10_000, 600), (10_000, 3600), (30_000, 1200)):
        stats = data_stats(records(rows, words=20))
        r = auto_recipe(stats, budget, CPU2, fake_step, elapsed=5)
        c = choices(r)
        members = c.get("train.ensemble", 1)
        planned = planned_loop_seconds(stats, CPU2, r.estimate["step_seconds"], c["train.epochs"],
                                       c["train.batch_size"], members, c.get("train.ensemble_workers", 1))
        assert planned == pytest.approx(r.estimate["loop"], rel=0.01), (rows, budget)  # the step is rounded there
