"""A pretrained base for `--base BASE` / `model.init_from: BASE`, resolved to a textcls run directory.

BASE is one of:
  - a textcls run directory (a finished `train`, `pretrain` or `import-hf` run): used as it is;
  - a HuggingFace model folder (`config.json`, `model.safetensors`, `tokenizer.json`), also in the
    sentence-transformers layout (`modules.json` naming the folder of its Transformer module);
  - `hf:ORG/NAME[@REVISION]`: a model on the HuggingFace Hub, fetched through `huggingface_hub`'s cache
    (offline, from the cache alone, when HF_HUB_OFFLINE=1).
A HuggingFace folder is converted once (as `textcls import-hf` does) into the textcls cache,
`$TEXTCLS_CACHE/bases/<sha256 of its weights>/`, and later runs reuse that conversion.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from textcls.config import Config, ModelConfig, config_from_dict
from textcls.data.pipeline import cache_root
from textcls.errors import CheckpointError, ConfigError
from textcls.io import make_temp_dir
from textcls.model import TextClassifier
from textcls.model.hf import (
    HF_CONFIG,
    HF_PICKLE,
    HF_TOKENIZER,
    HF_WEIGHTS,
    HF_WEIGHTS_INDEX,
    Converted,
    convert,
    hf_tokenizer,
    read_hf_dir,
)
from textcls.run.info import load_run_config, save_run_files, write_run_info
from textcls.run.layout import WEIGHTS, is_run_dir
from textcls.run.load import load_state
from textcls.run.weights import save_weights

HUB_PREFIX = "hf:"
ST_MODULES = "modules.json"


def is_base_spec(spec: str) -> bool:
    """Whether `spec` names a base that is not a textcls run directory (a HF folder or `hf:ORG/NAME`)."""
    if spec.startswith(HUB_PREFIX):
        return True
    path = Path(spec)
    return path.is_dir() and not is_run_dir(path) and (hf_model_dir(path) / HF_CONFIG).is_file()


def resolve_base(spec: str, cache: Path | None = None) -> Path:
    """The textcls run directory of BASE, converting (once) a HuggingFace folder or Hub model."""
    if not spec.startswith(HUB_PREFIX) and is_run_dir(Path(spec)):
        return Path(spec)
    folder = hub_folder(spec[len(HUB_PREFIX):]) if spec.startswith(HUB_PREFIX) else Path(spec)
    if not folder.is_dir():
        raise ConfigError(f"base {spec} does not exist; pass a HuggingFace model folder, a textcls run directory "
                          "or hf:ORG/NAME")
    model_dir = hf_model_dir(folder)
    if not (model_dir / HF_CONFIG).is_file():
        raise ConfigError(f"base {spec} is neither a textcls run directory (no config.yaml and tokenizer.json) nor a "
                          f"HuggingFace model folder (no {HF_CONFIG}); pass the folder that holds the checkpoint")
    target = (cache or cache_root()) / "bases" / _weights_digest(model_dir)[:32]
    if not (target / WEIGHTS).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:  # import_hf writes a temp folder and renames it: `target` is whole or absent
            import_hf(model_dir, target)
        except (CheckpointError, OSError):
            if not (target / WEIGHTS).is_file():  # not a conversion another process finished first
                raise
    return target


def hf_model_dir(folder: Path) -> Path:
    """The folder holding the Transformer of a sentence-transformers model (its `modules.json` names it), or
    `folder` itself."""
    modules = folder / ST_MODULES
    if not modules.is_file() or (folder / HF_CONFIG).is_file():
        return folder
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{modules} cannot be read ({exc})") from None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("type", "")).endswith("Transformer"):
            return folder / str(entry.get("path", ""))
    return folder


# sentence-transformers' Pooling modes, as textcls poolings (mean_sqrt_len and weighted means have none).
ST_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
              "pooling_mode_lasttoken": "last"}


def declared_pooling(spec: str) -> str | None:
    """The pooling a sentence-transformers base was trained with (its `modules.json` names a Pooling module whose
    config.json sets one mode), as a textcls pooling; None for other bases or a mode textcls lacks."""
    if not spec or not is_base_spec(spec):
        return None
    folder = hub_folder(spec[len(HUB_PREFIX):]) if spec.startswith(HUB_PREFIX) else Path(spec)
    try:
        entries = json.loads((folder / ST_MODULES).read_text(encoding="utf-8"))
        pool = next(e for e in entries if str(e.get("type", "")).endswith(".Pooling"))
        modes = json.loads((folder / str(pool.get("path", "")) / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, AttributeError, StopIteration):
        return None
    chosen = [ours for key, ours in ST_POOLING.items() if modes.get(key) is True]
    others = [k for k, v in modes.items() if k.startswith("pooling_mode") and v is True and k not in ST_POOLING]
    return chosen[0] if len(chosen) == 1 and not others else None


def _weights_digest(model_dir: Path) -> str:
    """sha256 over the config and weights files (names and bytes), so an edited checkpoint converts anew."""
    digest = hashlib.sha256()
    for name in (HF_CONFIG, HF_WEIGHTS, HF_WEIGHTS_INDEX, HF_PICKLE, HF_TOKENIZER):
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def hub_folder(name: str) -> Path:
    """A Hub model's snapshot folder via huggingface_hub's cache; offline when HF_HUB_OFFLINE=1."""
    repo, _, revision = name.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ConfigError(f"base hf:{name} must be hf:ORG/NAME (optionally @REVISION), e.g. "
                          "hf:sentence-transformers/all-MiniLM-L6-v2")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ConfigError("an hf:ORG/NAME base needs the huggingface_hub package; pip install huggingface_hub, "
                          "or pass a local model folder") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        # HF_HUB_CACHE is read here, not when huggingface_hub was imported (it may have been, by transformers)
        return Path(snapshot_download(repo, revision=revision or None, local_files_only=offline,
                                      cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                                      allow_patterns=["*.json", "*.safetensors", "*.txt", "*/*.json"]))
    except Exception as exc:  # huggingface_hub raises many kinds: not found, offline, network, auth
        where = "in the local cache (HF_HUB_OFFLINE=1)" if offline else "on the Hub or in the local cache"
        raise ConfigError(f"base hf:{name} could not be found {where} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); check the name, or download it "
                          "once while online, or pass a local folder") from None


# The keys that describe a base's architecture: they come from the checkpoint, and a config that sets one
# to another value contradicts it.
ARCHITECTURE_KEYS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "embedding_size",
                     "max_positions", "position", "position_offset", "scale_embeddings", "type_vocab_size",
                     "activation", "norm", "layer_norm_eps", "causal", "sharing")
# Keys the checkpoint suggests (its pooler, its dropout) and a config may change.
SUGGESTED_KEYS = ("pooling", "dropout", "attention_dropout", "classifier_dropout", "initializer_range")


def with_base(cfg: Config) -> Config:
    """`cfg` with a HuggingFace base (`model.init_from` a HF folder or hf:ORG/NAME) resolved: `init_from`
    becomes the converted run directory and the `model` section takes the base's architecture. A key the
    config sets to a value other than both its default and the base's is an error naming both values.
    A sentence-transformers base pools as its Pooling module says (mean, for all-MiniLM-L6-v2) unless the
    config sets `model.pooling`. A textcls run directory as `init_from` is left as it is (its `model` section
    must match, as before)."""
    spec = cfg.model.init_from
    if not spec or not is_base_spec(spec):
        return cfg
    base_dir = resolve_base(spec)
    ours, theirs, default = cfg.model, load_run_config(base_dir).model, ModelConfig()
    clashes = [f"`model.{k}` is {_show(getattr(ours, k))} here but {_show(getattr(theirs, k))} in the base"
               for k in ARCHITECTURE_KEYS
               if getattr(ours, k) != getattr(default, k) and getattr(ours, k) != getattr(theirs, k)]
    if clashes:
        raise ConfigError(f"{'; '.join(clashes)} ({spec}). The architecture comes from the base: remove "
                          f"{'that key' if len(clashes) == 1 else 'those keys'} from the `model` section, or train "
                          "from scratch without `model.init_from`")
    merged = copy.deepcopy(theirs)
    declared = declared_pooling(spec)  # a sentence-transformers base pools the way it was trained to
    if declared and ours.pooling == default.pooling:
        merged.pooling = declared
    for key in SUGGESTED_KEYS:
        if getattr(ours, key) != getattr(default, key):
            setattr(merged, key, getattr(ours, key))
    merged.embeddings, merged.adapters, merged.pool_layers = ours.embeddings, ours.adapters, ours.pool_layers
    merged.padding_free = ours.padding_free  # how batches run, not architecture
    merged.init_from = str(base_dir)
    cfg = copy.deepcopy(cfg)
    cfg.model = merged
    return cfg


def _show(value) -> str:
    return repr(dataclasses.asdict(value)) if dataclasses.is_dataclass(value) else repr(value)


def import_hf(hf_dir: Path | str, output: Path | str, allow_pickle: bool = False) -> Converted:
    """`textcls import-hf`: a HuggingFace checkpoint folder written as a textcls run directory (whole or not at
    all: a temp folder renamed at the end)."""
    hf_dir, output = Path(hf_dir), Path(output)
    if output.exists() and any(output.iterdir()):
        raise CheckpointError(f"output directory {output} exists and is not empty; pick another --output")
    hf, state = read_hf_dir(hf_dir, allow_pickle)
    conv = convert(hf, state)
    if not (hf_dir / HF_TOKENIZER).exists():
        raise CheckpointError(f"{hf_dir} has no tokenizer.json; save the checkpoint's fast tokenizer there "
                              "(tokenizer.save_pretrained writes it)")
    tok = hf_tokenizer(hf_dir / HF_TOKENIZER)
    tok.no_truncation()  # textcls truncates and adds [CLS]/[SEP] itself (data/pipeline.py encode_texts)
    tok.no_padding()
    vocab, word = tok.get_vocab_size(), conv.state["embeddings.word.weight"]
    if vocab > word.shape[0]:
        raise CheckpointError(f"tokenizer.json has {vocab} tokens but the model only {word.shape[0]} embeddings")
    conv.state["embeddings.word.weight"] = word[:vocab].clone()  # rows no token can reach are dropped
    max_length = min(512, conv.model["max_positions"] - conv.model["position_offset"])
    # The checkpoint's tokenizer, as it is: the tokenizer section records its kind and size, nothing to train.
    kind = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}.get(type(tok.model).__name__, "wordpiece")
    cfg = config_from_dict({"model": conv.model, "tokenizer": {"type": kind, "vocab_size": vocab},
                            "data": {"text_columns": ["text"], "max_length": max_length, "task": conv.task}},
                           source=str(hf_dir / HF_CONFIG))
    torch.manual_seed(0)  # a checkpoint without classifier gets a reproducible fresh head
    model = TextClassifier(cfg.model, vocab, len(conv.labels))
    load_state(model, conv.state, str(hf_dir), strict=conv.has_head)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{output.name}.", output.parent)
    try:
        save_run_files(tmp, cfg, tok, conv.labels)
        digest = save_weights(model.state_dict(), tmp / WEIGHTS)
        write_run_info(tmp, sha256={WEIGHTS: digest},
                       imported_from={"path": str(hf_dir.resolve()), "model_type": hf["model_type"],
                                      "architectures": hf.get("architectures"),
                                      "head": "imported" if conv.has_head else "random"})
        if output.exists():
            output.rmdir()
        tmp.rename(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return conv
