"""Safetensors weights files, written atomically with a reproducible header, read back against a sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from textcls import __version__
from textcls.errors import CheckpointError
from textcls.io import atomic_write_bytes, check_regular_file, sha256_file


def write_weights(state: dict[str, torch.Tensor], path: Path) -> str:
    """Write a safetensors file atomically; returns its sha256. Raises OSError/SafetensorError on I/O failure."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    blob = _sorted_header(save(tensors, metadata={"format": "pt", "textcls": __version__}))
    atomic_write_bytes(path, blob)
    return hashlib.sha256(blob).hexdigest()


def _sorted_header(blob: bytes) -> bytes:
    """The safetensors bytes with the JSON header's keys sorted. safetensors writes its metadata in
    hash-map order, so the same tensors could give files (and sha256s) that differ from run to run;
    sorted, equal weights give equal files. The header keeps its length, so the offsets still hold."""
    size = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
    if len(header) > size:  # not what safetensors writes; keep its bytes
        return blob
    return blob[:8] + header.ljust(size) + blob[8 + size:]


def save_weights(state: dict[str, torch.Tensor], path: Path) -> str:
    """`write_weights`, with a full disk or unwritable folder reported as a CheckpointError."""
    try:
        return write_weights(state, path)
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(
            f"cannot write {path} ({getattr(exc, 'strerror', None) or exc}); the previous file is unchanged. "
            "Free disk space or fix the folder's permissions and try again (training continues with --resume)"
        ) from None


def load_weights(path: Path, expected_sha256: str | list[str] | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file; `expected_sha256` is one checksum or a list of acceptable ones."""
    if not path.exists():
        raise CheckpointError(f"weights file {path} is missing; is {path.parent} a finished textcls run directory?")
    check_regular_file(path, CheckpointError)  # a FIFO would hang and /dev/zero never end
    accepted = [expected_sha256] if isinstance(expected_sha256, str) else [s for s in expected_sha256 or [] if s]
    if accepted and sha256_file(path) not in accepted:
        raise CheckpointError(
            f"weights file {path} does not match the checksum recorded in run.json (truncated or corrupted); "
            "restore it from a backup or train again"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"weights file {path} cannot be read ({exc}); "
                              "it is truncated or not safetensors") from None

