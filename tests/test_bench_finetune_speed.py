"""bench/finetune_speed.py's pure helpers: HF TrainingArguments from textcls's choices, the examples a
number of HF steps saw, and the textcls / HF ratio table (the benchmark reads the full SST-2 set; these
tests read no data)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from finetune_speed import examples_seen, format_table, hf_training_arguments, ratio_rows

CHOICES = {"max_length": 48, "lr": 1e-4, "epochs": 3.0, "warmup": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0,
           "batch_size": 32, "schedule": "linear", "seed": 0, "precision": "bf16"}
V4 = {"group_by_length", "warmup_ratio", "warmup_steps", "eval_strategy"}  # transformers 4.x field names
V5 = {"train_sampling_strategy", "warmup_steps", "eval_strategy"}  # transformers 5.x


def test_training_arguments_follow_textcls_choices():
    args = hf_training_arguments(CHOICES, "cpu", "/tmp/out", V5)
    assert args["learning_rate"] == 1e-4 and args["num_train_epochs"] == 3.0
    assert args["per_device_train_batch_size"] == 32 and args["lr_scheduler_type"] == "linear"
    assert args["weight_decay"] == 0.01 and args["max_grad_norm"] == 1.0 and args["seed"] == 0
    assert args["bf16"] is True and args["use_cpu"] is True
    assert args["train_sampling_strategy"] == "group_by_length" and args["warmup_steps"] == 0.1
    assert args["save_strategy"] == "no" and args["eval_strategy"] == "no" and args["report_to"] == []
    assert args["dataloader_num_workers"] == 0
    fp32_gpu = hf_training_arguments({**CHOICES, "precision": "fp32"}, "cuda", "/tmp/out", V5)
    assert fp32_gpu["bf16"] is False and fp32_gpu["use_cpu"] is False


def test_training_arguments_older_transformers_names():
    args = hf_training_arguments(CHOICES, "cpu", "/tmp/out", V4)
    assert args["group_by_length"] is True and "train_sampling_strategy" not in args
    assert args["warmup_ratio"] == 0.1 and "warmup_steps" not in args
    steps = hf_training_arguments({**CHOICES, "warmup": 50}, "cpu", "/tmp/out", V4)
    assert steps["warmup_steps"] == 50 and "warmup_ratio" not in steps
    with pytest.raises(ValueError, match="schedule"):
        hf_training_arguments({**CHOICES, "schedule": "inverse_sqrt"}, "cpu", "/tmp/out", V5)


def test_training_arguments_build_with_installed_transformers(tmp_path):
    pytest.importorskip("accelerate")  # TrainingArguments needs it
    transformers = pytest.importorskip("transformers")
    fields = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    kwargs = hf_training_arguments({**CHOICES, "precision": "fp32"}, "cpu", str(tmp_path), fields)
    args = transformers.TrainingArguments(**kwargs)
    assert args.learning_rate == 1e-4 and args.per_device_train_batch_size == 32 and args.use_cpu


def test_examples_seen_counts_each_epochs_partial_last_batch():
    assert examples_seen(7, 200, 32) == 200  # one epoch: 6 full batches + 8 rows
    assert examples_seen(21, 200, 32) == 600
    assert examples_seen(9, 200, 32) == 200 + 64
    assert examples_seen(0, 200, 32) == 0


def test_ratios_per_device_and_table():
    row = dict(threads=2, precision="fp32", accuracy=0.8)
    results = [{"system": "textcls", "device": "cpu", "train_ex_s": 30.0, "predict_ex_s": 400.0, "peak_rss_mb": 900,
                "predict_onnx_ex_s": 600.0, "onnx_export_seconds": 7.25, "onnx_max_difference": 2e-6, **row},
               {"system": "HF", "device": "cpu", "train_ex_s": 20.0, "predict_ex_s": 100.0, "peak_rss_mb": 1200, **row},
               {"system": "textcls", "device": "cuda", "error": "exit 2: boom"}]
    ratios = ratio_rows(results)
    assert ratios == [{"device": "cpu", "train_ex_s": 1.5, "predict_ex_s": 4.0, "peak_rss_mb": 0.75}]
    table = format_table(results)
    assert "1.50x" in table and "4.00x" in table and "0.75x" in table and "ERROR exit 2: boom" in table
    assert "predict --runtime onnx: 600.0 ex/s, 6.00x HF (export and check 7.2 s, once; max |dp| 2.0e-06)" in table
