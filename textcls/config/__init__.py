"""YAML config -> typed dataclasses, strictly.

Each YAML section has one dataclass whose field names are the user-facing keys (schema.py). `load_config`
reads a file with `yaml.safe_load`, applies dotted `--set` overrides, type-checks every value,
runs the cross-field checks (checks.py) and raises a single `ConfigError` that lists every problem found.

Imports run one way: schema <- checks <- this module; every name is importable from `textcls.config`.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from textcls.config.checks import validate
from textcls.config.schema import (
    VARIANT_FIXED,
    VARIANT_SECTIONS,
    AdapterConfig,
    Config,
    DataConfig,
    DistillConfig,
    EmbeddingsConfig,
    ModelConfig,
    NblrConfig,
    OutputConfig,
    PretrainConfig,
    RecipeConfig,
    SharingConfig,
    TokenizerConfig,
    TrainConfig,
    build_dataclass,
    config_to_dict,
    member_raw,
    set_dotted,
    short_repr,
)
from textcls.errors import ConfigError
from textcls.io import atomic_write_text

__all__ = [
    # the schema (textcls/config/schema.py)
    "AdapterConfig", "Config", "DataConfig", "DistillConfig", "EmbeddingsConfig", "ModelConfig", "NblrConfig",
    "OutputConfig", "PretrainConfig", "RecipeConfig", "SharingConfig", "TokenizerConfig", "TrainConfig",
    "VARIANT_FIXED", "VARIANT_SECTIONS",
    "build_dataclass", "config_to_dict", "member_raw", "set_dotted", "short_repr",
    # the checks (textcls/config/checks.py)
    "validate",
    # loading and saving (here)
    "DEMO_CONFIG", "PATH_KEYS", "apply_override", "check_keys", "config_from_dict", "demo_config", "load_config",
    "merge_raw", "read_yaml", "save_config",
]

# The demo config (`textcls train` with no CONFIG): a source checkout's, else the copy an installed wheel
# puts under PREFIX/share/textcls with its data (pyproject's data-files), at the same relative paths.
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def demo_config() -> Optional[Path]:
    for path in (DEMO_CONFIG, Path(sys.prefix) / "share" / "textcls" / "configs" / "default.yaml"):
        if path.is_file():
            return path
    return None

# Keys holding file paths: relative ones in a config file are resolved against the file's folder,
# relative ones given with `--set` against the current directory.
PATH_KEYS = ("data.train", "data.valid", "data.label_names", "tokenizer.path", "model.init_from",
             "model.embeddings.pretrained", "pretrain.files", "distill.teacher", "distill.unlabelled")


# --------------------------------------------------------------------------- overrides


def merge_raw(into: dict, extra: dict) -> dict:
    """`extra`'s keys set in `into`, section by section (a nested mapping merges, anything else replaces);
    returns `into`."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_raw(into[key], value)
        else:
            into[key] = value
    return into


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `key.sub=value` assignment to the raw YAML mapping; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(
            f"override {assignment!r} is not of the form key=value; write for example "
            "`--set train.lr=3e-4`"
        )
    dotted, text = assignment.split("=", 1)
    dotted = dotted.strip()
    if not dotted or any(not p for p in dotted.split(".")):
        raise ConfigError(f"override {assignment!r} names no key; write for example `--set train.lr=3e-4`")
    try:
        value = _load_yaml(text) if text.strip() else None
    except yaml.constructor.ConstructorError as exc:  # e.g. a key twice in one mapping
        raise ConfigError(f"override {assignment!r}: {exc.problem}") from None
    except (yaml.YAMLError, ValueError, RecursionError):
        value = text
    if isinstance(value, dict) and not text.strip().startswith("{"):
        value = text  # `--set data.delimiter=::` means the text, not the YAML mapping {":": null}
    set_dotted(raw, dotted, value)


# --------------------------------------------------------------------------- public API


RENAMED_SECTIONS = {"ngram": "nblr"}  # old section -> its name now


def _renamed_sections(raw: dict, problems: list[str]) -> None:
    """A section under its old name: say what it is called now (strict loading would only call it unknown)."""
    for old, new in RENAMED_SECTIONS.items():
        if old in raw:
            problems.append(f"the `{old}:` section (the bag-of-n-grams model) is now called `{new}:`; rename it "
                            f"(its keys are unchanged, e.g. `{new}.weight`)")
            raw.pop(old)


def _named_from_set(problems: list[str], overrides: Sequence[str]) -> list[str]:
    """`problems` with each unknown key that a `--set` assignment gave marked as the command line's."""
    given = {a.split("=", 1)[0].strip() for a in overrides}
    from_set = lambda p: p.startswith("unknown key `") and p.split("`")[1] in given  # noqa: E731
    return [p.replace("` in ", "` (from --set) in ", 1) if from_set(p) else p for p in problems]


def check_keys(overrides: Sequence[str], source: str) -> None:
    """Refuse `--set` assignments that name keys the config does not have, before their values can be checked
    against the rest of a config that is not yet complete."""
    raw: dict = {}
    for assignment in overrides:
        apply_override(raw, assignment)
    problems: list[str] = []
    _renamed_sections(raw, problems)
    build_dataclass(Config, raw, "", problems)
    unknown = [p for p in _named_from_set(problems, overrides) if p.startswith("unknown key `")]
    if unknown:
        raise ConfigError(f"{source}: {len(unknown)} problem(s) in the config: {'; '.join(unknown)}.")


def config_from_dict(raw: Any, source: str = "<config>", overrides: tuple[str, ...] = (),
                     base_dir: Optional[Path] = None) -> Config:
    """Build and validate a Config from a raw mapping (e.g. parsed YAML). Raises ConfigError.

    Relative paths in `raw` are resolved against `base_dir` (the config file's folder);
    relative paths in `overrides` against the current directory.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping of sections, got {type(raw).__name__}")
    raw = _deep_copy(raw, source)
    if base_dir is not None:
        _resolve_paths(raw, base_dir)
    for assignment in overrides:
        apply_override(raw, assignment)
    _resolve_paths(raw, Path.cwd())
    problems: list[str] = []
    _renamed_sections(raw, problems)
    _pooling_mapping(raw, problems)
    cfg = build_dataclass(Config, raw, "", problems)
    problems = _named_from_set(problems, overrides)
    try:
        validate(cfg, problems)
    except (TypeError, AttributeError):
        pass  # a value of the wrong type was already reported; cross-field checks need the right types
    if problems:
        listing = "; ".join(problems)
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the config: {listing}.")
    cfg.source = source
    return cfg


def _pooling_mapping(raw: dict, problems: list[str]) -> None:
    """`model.pooling: {type: mean, layers: k}` is the same as `pooling: mean` + `pool_layers: k`."""
    model = raw.get("model")
    pooling = model.get("pooling") if isinstance(model, dict) else None
    if not isinstance(pooling, dict):
        return
    extra = sorted(map(str, set(pooling) - {"type", "layers"}))
    if extra or "type" not in pooling:
        hint = difflib.get_close_matches(extra[0], ["type", "layers"], n=1) if extra else []
        problems.append(f"`model.pooling` as a mapping takes `type` (cls, cls_tanh, mean, max, last) and optionally "
                        f"`layers`, got keys {', '.join(map(str, pooling))}"
                        + (f" (did you mean `{hint[0]}` for `{extra[0]}`?)" if hint else ""))
        model.pop("pooling")
        return
    if "layers" in pooling and "pool_layers" in model:
        problems.append("`model.pooling.layers` and `model.pool_layers` are both set; keep one")
    model["pooling"] = pooling["type"]
    if "layers" in pooling:
        model["pool_layers"] = pooling["layers"]


def _resolve_paths(raw: dict, base: Path) -> None:
    for dotted in PATH_KEYS:
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            continue
        value = node[last]
        if isinstance(value, str) and value and value != "-":
            try:
                path = Path(value).expanduser()
            except RuntimeError:  # ~user that does not exist
                raise ConfigError(f"`{dotted}`: cannot expand {value!r} (no such user's home folder)") from None
            node[last] = str(path if path.is_absolute() else base / path)
        elif isinstance(value, list):
            node[last] = [str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v for v in value]


MAX_DEPTH, MAX_NODES = 64, 100_000


def _deep_copy(raw: Any, source: str = "<config>") -> Any:
    """Copy the YAML tree; a self-referencing or alias-bomb document is refused, not expanded."""
    budget = [MAX_NODES]

    def copy(node: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0:
            raise ConfigError(
                f"{source}: the config is nested too deeply or is too large (more than {MAX_DEPTH} levels or "
                f"{MAX_NODES:,} values; self-referencing YAML aliases?)"
            )
        if isinstance(node, dict):
            return {k: copy(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [copy(v, depth + 1) for v in node]
        return node
    return copy(raw, 0)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key repeated in one mapping (two `train:` sections) is an error
    instead of the later one silently replacing the earlier."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice (first at line {seen[key]}); keep one",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    """yaml.safe_load with the repeated-key check."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Any:
    """Read a YAML file safely; a syntax error names the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; pass a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}); it must be UTF-8 YAML") from None
    try:
        return _load_yaml(text)
    except (ValueError, RecursionError) as exc:  # e.g. a date like 2024-02-30, an int of 5000 digits
        raise ConfigError(f"config file {path} has a value YAML cannot read: {str(exc)[:120]}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None


def load_config(path: Optional[Path | str] = None, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Load a YAML config (the demo config of a source checkout when `path` is None), apply overrides."""
    if path is None:
        path = demo_config()
        if path is None:
            raise ConfigError(
                "no CONFIG was given and the demo config (configs/default.yaml) is not part of this "
                "installation; pass a config file, e.g. `textcls train my.yaml`"
            )
    path = Path(path)
    raw = read_yaml(path)
    return config_from_dict(raw, source=str(path), overrides=tuple(overrides), base_dir=path.resolve().parent)


def save_config(cfg: Config, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True))
