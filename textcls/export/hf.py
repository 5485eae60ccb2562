"""`textcls export RUN --format hf`: a folder that `transformers` loads as a BERT, ALBERT, RoBERTa, ELECTRA or
DistilBERT sequence classifier (textcls.model.hf_export says which model maps onto which): config.json with
id2label, model.safetensors, tokenizer.json, tokenizer_config.json; written whole or not at all (a temp
folder swapped into place)."""

from __future__ import annotations

import shutil
from pathlib import Path

from textcls.data.tokenizer import CLS, MASK, PAD, SEP, UNK
from textcls.errors import CheckpointError
from textcls.export.common import single_model, standalone_tokenizer
from textcls.io import atomic_write_json, atomic_write_text, make_temp_dir, replace_dir
from textcls.model.hf import HF_CONFIG, HF_TOKENIZER, HF_WEIGHTS
from textcls.model.hf_export import Exported, to_hf
from textcls.run.layout import CONFIG
from textcls.run.load import Run
from textcls.run.weights import save_weights

HF_TOKENIZER_CONFIG = "tokenizer_config.json"


def export_hf(run: Run, output: Path | str, overwrite: bool = False) -> Exported:
    """Write the run as an HF model folder at `output`; CheckpointError when the model does not map."""
    output = Path(output)
    model = single_model(run, "an HF export")
    if run.cfg.data.task not in ("single", "multilabel"):
        raise CheckpointError(f"task {run.cfg.data.task!r} has no HF sequence-classification equivalent")
    tok = standalone_tokenizer(run, "an HF export")
    pad_id = run.tokenizer.token_to_id(PAD)
    try:
        exported = to_hf(run.cfg.model, model.state_dict(), run.labels, run.cfg.data.task, pad_id)
    except CheckpointError as exc:  # name the run's config, whose `model` section says what the model is
        raise CheckpointError(f"{run.path / CONFIG}: {exc}") from None
    exported.config.update(transformers_version=None, textcls_run=str(run.path.resolve()))
    exported.config = {k: v for k, v in exported.config.items() if v is not None}
    _check_output(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{output.name}.", output.parent)
    try:
        save_weights(exported.state, tmp / HF_WEIGHTS)
        atomic_write_json(tmp / HF_CONFIG, exported.config)
        atomic_write_text(tmp / HF_TOKENIZER, tok.to_str())
        specials = {"pad_token": PAD, "unk_token": UNK, "cls_token": CLS, "sep_token": SEP}
        if tok.token_to_id(MASK) is not None:
            specials["mask_token"] = MASK
        inputs = ["input_ids", "attention_mask"] + ([] if exported.config["model_type"] == "distilbert"
                                                    else ["token_type_ids"])  # DistilBERT takes no token types
        atomic_write_json(tmp / HF_TOKENIZER_CONFIG, {
            "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": run.cfg.data.max_length,
            "padding_side": "right", "truncation_side": "right", "model_input_names": inputs, **specials})
        replace_dir(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return exported


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise CheckpointError(f"--output {output} is a file; an HF export is a folder: name a new folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise CheckpointError(f"--output {output} exists and is not empty; pick another folder or pass --overwrite")
