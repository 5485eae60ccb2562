"""A finished run loaded for use: its config, tokenizer, labels and model with the best weights.

An adapter run (`train.trainable: adapters | head` with `model.init_from`) stores only the tensors it
trained; `run.json` then names its base, `base: {path, sha256}`, and loading merges base + own
tensors after checking that the base's weights are still the ones it was trained on.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer

from textcls.config import Config
from textcls.data.labels import load_labels
from textcls.data.tokenizer import PAD, load_tokenizer
from textcls.device import available_memory
from textcls.errors import CheckpointError, ConfigError
from textcls.io import sha256_file
from textcls.model import TextClassifier
from textcls.model.ensemble import EnsembleClassifier
from textcls.model.nblr import NblrModel
from textcls.model.quantize import METHOD, load_int8
from textcls.run.info import check_checksum, expected_checksums, load_run_config, read_run_info
from textcls.run.layout import LABELS, LAST, RUN_INFO, STEP_CHECKPOINT_RE, TOKENIZER, WEIGHTS, is_ensemble_dir
from textcls.run.members import member_dirs
from textcls.run.nblr import has_nblr_model, load_nblr_model
from textcls.run.weights import load_weights

log = logging.getLogger("textcls")


@dataclass
class Run:
    """A loaded run directory: config, tokenizer, labels and the model with its best weights."""

    path: Path
    cfg: Config
    tokenizer: Tokenizer
    labels: list[str]
    model: TextClassifier
    # An ensemble whose members use different tokenizers (`train.ensemble_variants`): one Run per
    # tokenizer (its members behind an EnsembleClassifier) and its member count. The run's predictor
    # (textcls.predictor.run_predictor) tokenizes once per group and averages the groups' probabilities
    # weighted by member count.
    groups: list[tuple["Run", int]] | None = None
    # A bag-of-n-grams model trained beside the transformer(s) (`nblr.weight`), and its share of the
    # probabilities: the run's predictor mixes it into theirs.
    nblr: tuple[NblrModel, float] | None = None


def build_model(cfg: Config, tokenizer: Tokenizer, num_labels: int, params: Optional[int] = None) -> TextClassifier:
    """The classifier with random weights, on the CPU, after checking that its fp32 weights fit in memory
    (`params`: its parameter count when known, e.g. from the weights file about to be loaded)."""
    check_model_memory(cfg, tokenizer.get_vocab_size(), num_labels, torch.device("cpu"), training=False,
                       params=params)
    return TextClassifier(cfg.model, tokenizer.get_vocab_size(), num_labels, tokenizer.token_to_id(PAD) or 0)


def stored_parameters(path: Path) -> Optional[int]:
    """The number of values in a safetensors file, from its header alone (None when the header cannot be read:
    loading the file then says what is wrong with it). Counting them here spares a process the ~1 s that
    building a model on the meta device costs the first time."""
    if not path.is_file():  # (not a FIFO or a device: load_weights refuses those)
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except (OSError, SafetensorError, ValueError):
        return None


# Bytes a parameter takes: fp32 weights; training adds its gradient and AdamW's two moments.
BYTES_PER_PARAMETER = {False: 4, True: 16}


def count_parameters(cfg: Config, vocab_size: int, num_labels: int) -> int:
    """The classifier's parameter count from its config alone: built on the meta device, nothing allocated."""
    with torch.device("meta"):
        model = TextClassifier(cfg.model, vocab_size, num_labels, 0)
    return sum(p.numel() for p in model.parameters())


def check_model_memory(cfg: Config, vocab_size: int, num_labels: int, device: torch.device, training: bool,
                       params: Optional[int] = None) -> None:
    """Refuse a model whose parameters (x 4 bytes to hold, x 16 to train with AdamW) exceed the memory
    available on `device`, before anything is allocated (a model too large is otherwise a crash or a
    machine swapping to a halt). `params`: the count when known (else counted from the config)."""
    available = available_memory(device)
    if available is None:
        return
    params = params if params is not None else count_parameters(cfg, vocab_size, num_labels)
    need = params * BYTES_PER_PARAMETER[training]
    if need > available:
        gib = lambda n: f"{n / 2**30:,.1f} GiB"  # noqa: E731
        raise ConfigError(
            f"the model has {params:,} parameters, which need about {gib(need)} to "
            f"{'train' if training else 'hold'} ({BYTES_PER_PARAMETER[training]} bytes each), but {device} has "
            f"{gib(available)} available; make it smaller (`model.hidden_size`, `model.num_layers`, "
            "`model.intermediate_size`, `tokenizer.vocab_size`) or use a machine with more memory")


def load_run(run_dir: Path | str, weights: str = WEIGHTS, device: torch.device | None = None) -> Run:
    """The run's config, tokenizer, labels and model in eval mode, on `device` (default: CPU)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if is_ensemble_dir(run_dir):
        run = _load_ensemble(run_dir, cfg, weights)
        run.model.to(device or "cpu")
        return run
    info = read_run_info(run_dir)
    if not info:
        log.warning("%s has no %s, so the checksums of its weights cannot be checked; restore it from the run's copy "
                    "to have them checked", run_dir, RUN_INFO)
    if info.get("kind") == "pretrain":
        raise CheckpointError(f"{run_dir} is a `textcls pretrain` run (an encoder without a classifier); "
                              f"fine-tune it first: `textcls train CONFIG --set model.init_from={run_dir}`")
    if not (run_dir / weights).exists() and (run_dir / LAST).is_dir():
        raise CheckpointError(f"{run_dir} was interrupted before its first evaluation, so it has no {weights} yet; "
                              f"continue it with `textcls train --output {run_dir} --resume`")
    tokenizer, labels = _tokenizer_and_labels(run_dir, info)
    # an adapter run's file holds its adapters only: its model is counted from the config
    stored = None if info.get("base") else stored_parameters(run_dir / weights)
    model = build_model(cfg, tokenizer, len(labels), stored)
    state = load_weights(run_dir / weights, expected_checksums(info, weights))
    if info.get("base"):  # adapter run: frozen tensors come from the base it names
        own = model.state_dict()
        base = load_base_state(run_dir, info["base"])
        state = {**{k: v for k, v in base.items() if k in own and k not in state}, **state}
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise CheckpointError(f"{run_dir / weights}: tensor {bad} holds nan or inf, so every prediction would be "
                              "nan; the run diverged: train it again with a lower `train.lr`")
    head = state.get("head.bias")
    if head is not None and head.shape[0] != len(labels):
        raise CheckpointError(f"{run_dir / LABELS} lists {len(labels)} labels but the weights classify "
                              f"{head.shape[0]}; restore the run's {LABELS}")
    if info.get("quantized"):  # `textcls quantize`: int8 Linear layers, CPU only
        model = _int8_model(run_dir, info["quantized"], model, state, device, str(run_dir / weights))
    else:
        load_state(model, state, str(run_dir / weights))
    model.to(device or "cpu").eval()
    return Run(run_dir, cfg, tokenizer, labels, model, nblr=_ngram(run_dir, labels))


def _int8_model(run_dir: Path, quantized: dict, model: TextClassifier, state: dict[str, torch.Tensor],
                device: torch.device | None, source: str) -> torch.nn.Module:
    method = quantized.get("method") if isinstance(quantized, dict) else None
    if method != METHOD:
        raise CheckpointError(f"{run_dir / RUN_INFO} says the weights are quantized with {method!r}, which this "
                              f"textcls does not know (it writes {METHOD!r}); quantize the float run again")
    if device is not None and torch.device(device).type != "cpu":
        raise CheckpointError(f"{run_dir} holds int8 weights (`textcls quantize`), which run on the CPU only; "
                              "pass --device cpu, or use the float run it was made from on a GPU")
    return load_int8(model, state, source)


def _tokenizer_and_labels(run_dir: Path, info: dict) -> tuple[Tokenizer, list[str]]:
    """The run's tokenizer and labels, each checked against the sha256 run.json records for it (if any)."""
    for name in (TOKENIZER, LABELS):
        if (run_dir / name).is_file():
            check_checksum(run_dir, name, info)
    return load_tokenizer(run_dir / TOKENIZER), load_labels(run_dir / LABELS)


def _ngram(run_dir: Path, labels: list[str]) -> tuple[NblrModel, float] | None:
    return load_nblr_model(run_dir, len(labels)) if has_nblr_model(run_dir) else None


def _load_ensemble(run_dir: Path, cfg: Config, weights: str) -> Run:
    """An ensemble run: every member's best weights behind one model that averages their probabilities
    (members with another tokenizer than the top-level one form groups, see Run.groups)."""
    tokenizer, labels = _tokenizer_and_labels(run_dir, read_run_info(run_dir))
    own_tokenizers = any(k.startswith("tokenizer.") for v in cfg.train.ensemble_variants for k in v)
    by_tokenizer: dict[str, list[Run]] = {}
    for path in member_dirs(run_dir):
        member = load_run(path, weights)
        if member.labels != labels or (member.tokenizer.to_str() != tokenizer.to_str() and not own_tokenizers):
            raise CheckpointError(f"ensemble member {path} has another tokenizer or label set than {run_dir}; "
                                  "the run directory was changed by hand: train the ensemble again")
        by_tokenizer.setdefault(member.tokenizer.to_str(), []).append(member)
    groups = [(Run(run_dir, members[0].cfg, members[0].tokenizer, labels,
                   EnsembleClassifier([m.model for m in members], cfg.data.task).eval()), len(members))
              for members in by_tokenizer.values()]
    nblr = _ngram(run_dir, labels)
    if len(groups) == 1:
        return Run(run_dir, cfg, tokenizer, labels, groups[0][0].model, nblr=nblr)
    return Run(run_dir, cfg, tokenizer, labels, GroupedEnsemble([g.model for g, _ in groups]).eval(), groups, nblr)


class GroupedEnsemble(torch.nn.Module):
    """The members of an ensemble with several tokenizers, for .to(device) and parameter counts. It has
    no forward of its own: one batch of token ids means nothing to members with another tokenizer, so
    the groups are run by the run's predictor (textcls.predictor.run_predictor), and nothing calls it."""

    def __init__(self, groups: list[torch.nn.Module]):
        super().__init__()
        self.groups = torch.nn.ModuleList(groups)

    def forward(self, *args, **kwargs):
        raise TypeError("an ensemble with several tokenizers is run per tokenizer group (Run.groups); "
                        "use its predictor: textcls.predictor.run_predictor(run).predict_proba(texts)")


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool = True) -> list[str]:
    """Load a state dict, turning key and shape mismatches into a CheckpointError."""
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{source}: tensor {k} has shape {tuple(state[k].shape)}, the model expects {tuple(own[k].shape)}; "
            "the config does not match the weights"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{source}: weights do not fit the model (missing {sorted(missing)[:5]}, unexpected "
            f"{sorted(unexpected)[:5]}); the config does not match the weights"
        )
    return list(missing)

# --------------------------------------------------------------------------- adapter runs on a base

MAX_BASE_CHAIN = 8  # an adapter run may itself be the base of another; a cycle stops here


def run_digest(path: Path) -> str:
    """sha256 of a run's weights: model.safetensors' for one model; for an ensemble or a run with an NB-LR model,
    the sha256 of the list of every weights file's relative path and sha256 (checkpoints left out)."""
    files = sorted(p for p in path.rglob("*.safetensors")
                   if not any(part == LAST or STEP_CHECKPOINT_RE.fullmatch(part) or part.startswith(".")
                              for part in p.relative_to(path).parts[:-1]))
    if [p.relative_to(path).as_posix() for p in files] == [WEIGHTS] and not is_ensemble_dir(path):
        return weights_digest(path)
    listing = "".join(f"{p.relative_to(path).as_posix()} {sha256_file(p)}\n" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def weights_digest(run_dir: Path | str) -> str:
    """sha256 of a run's model.safetensors: the one run.json records (load_weights verifies the file
    against it), else computed."""
    run_dir = Path(run_dir)
    path = run_dir / WEIGHTS
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no {WEIGHTS}; `model.init_from` must name a run directory")
    return read_run_info(run_dir).get("sha256", {}).get(WEIGHTS) or sha256_file(path)


def base_reference(base_dir: Path | str) -> dict:
    """What an adapter run records about its base: `{path, sha256}`."""
    return {"path": str(Path(base_dir).resolve()), "sha256": weights_digest(base_dir)}


def _checked_base(run_dir: Path, base: dict) -> Path:
    path = Path(base["path"])
    if not (path / WEIGHTS).exists():
        raise CheckpointError(
            f"{run_dir} stores adapter weights only, and its base run {path} is missing; restore the base "
            f"run directory there (or fix `base.path` in {run_dir / RUN_INFO} if it moved)"
        )
    digest = weights_digest(path)
    if digest != base.get("sha256"):
        raise CheckpointError(
            f"{run_dir} was trained on the base {path} with weights sha256 {str(base.get('sha256'))[:12]}..., "
            f"but {path / WEIGHTS} now has sha256 {digest[:12]}...; adapters only fit the exact "
            "base they were trained on: restore that base, or train the adapters again on the new one"
        )
    return path


def load_full_state(run_dir: Path | str, depth: int = 0) -> dict[str, torch.Tensor]:
    """All tensors of a run: its own file, merged over its base's (recursively) for adapter runs."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if info.get("quantized"):
        raise CheckpointError(f"{run_dir} holds int8 weights (`textcls quantize`), which only predict and eval use; "
                              "start from the float run it was made from (`quantized.from` in its run.json)")
    state = load_weights(run_dir / WEIGHTS, expected_checksums(info, WEIGHTS))
    if info.get("base"):
        state = {**load_base_state(run_dir, info["base"], depth), **state}
    return state


def load_base_state(run_dir: Path, base: dict, depth: int = 0) -> dict[str, torch.Tensor]:
    if depth >= MAX_BASE_CHAIN:
        raise CheckpointError(f"{run_dir}: the chain of base runs is longer than {MAX_BASE_CHAIN} (a cycle?)")
    return load_full_state(_checked_base(run_dir, base), depth + 1)


def base_keys(run_dir: Path | str, depth: int = 0) -> set[str]:
    """Tensor names a run provides (with its bases), read from the file headers only."""
    run_dir = Path(run_dir)
    try:
        with safe_open(str(run_dir / WEIGHTS), framework="pt") as handle:
            keys = set(handle.keys())
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{run_dir / WEIGHTS} cannot be read ({exc})") from None
    base = read_run_info(run_dir).get("base")
    if base and depth < MAX_BASE_CHAIN:
        keys |= base_keys(base["path"], depth + 1)
    return keys
