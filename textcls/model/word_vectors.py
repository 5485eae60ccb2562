"""Pretrained word vectors (GloVe text format) for the token embedding.

File format: one `word v1 v2 ... vD` per line, space-separated (GloVe); a word2vec text header
line `N D` is tolerated. Only lines whose word is in the tokenizer's vocabulary are parsed, so a
multi-gigabyte file costs one read. Rows of words not in the file keep their random init.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from textcls.errors import DataError


@dataclass
class VectorsLoaded:
    found: int  # vocabulary entries initialised from the file
    vocab_size: int


def _is_header(parts: list[str]) -> bool:
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def read_word_vectors(path: str | Path, vocab: dict[str, int], dim: int) -> dict[int, torch.Tensor]:
    """{token id: (dim,) vector} for the vocabulary words present in `path`.

    Raises DataError naming the file and line when a vector's size is not `dim` or a value is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"word-vector file {path} (`model.embeddings.pretrained`) does not exist; check the path")
    rows: dict[int, torch.Tensor] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            if line_no == 1 and _is_header(parts):
                if int(parts[1]) != dim:
                    raise DataError(_dim_message(path, 1, int(parts[1]), dim))
                continue
            if len(parts) < 2:
                continue  # blank line
            if len(parts) - 1 != dim:
                raise DataError(_dim_message(path, line_no, len(parts) - 1, dim))
            idx = vocab.get(parts[0])
            if idx is None or idx in rows:
                continue
            try:
                rows[idx] = torch.tensor([float(v) for v in parts[1:]], dtype=torch.float32)
            except ValueError:
                raise DataError(f"{path}, line {line_no}: the vector of {parts[0]!r} holds a value that is not a "
                                "number; the file must be GloVe text format (`word v1 v2 ...`)") from None
            if not torch.isfinite(rows[idx]).all():
                raise DataError(f"{path}, line {line_no}: the vector of {parts[0]!r} holds nan or inf; fix or drop "
                                "that line (training on it would make every loss nan)")
    return rows


def _dim_message(path: Path, line: int, got: int, dim: int) -> str:
    return (f"{path}, line {line}: word vectors have {got} dimensions but the token embedding has {dim} "
            f"(`model.embedding_size`, or `model.hidden_size` when unset); set model.embedding_size: {got} "
            "or use vectors of the right size")


def load_word_vectors(embedding: torch.nn.Embedding, path: str | Path, vocab: dict[str, int],
                      freeze: bool = False) -> VectorsLoaded:
    """Copy the file's vectors into the rows of `embedding` (V, E) for vocabulary words; optionally freeze it.

    The padding row stays zero.
    """
    rows = read_word_vectors(path, vocab, embedding.embedding_dim)
    rows.pop(embedding.padding_idx, None)
    with torch.no_grad():
        for idx, vec in rows.items():
            embedding.weight[idx] = vec
    if freeze:
        embedding.weight.requires_grad_(False)
    return VectorsLoaded(len(rows), embedding.num_embeddings)


def init_word_embeddings(embedding: torch.nn.Embedding, path: str | None, vocab: dict[str, int],
                         freeze: bool, load: bool = True) -> VectorsLoaded | None:
    """Apply `model.embeddings` to the token embedding. `load=False` (a resumed run, whose weights
    come from the checkpoint) only re-applies `freeze`. Returns the count loaded, or None."""
    if path and load:
        return load_word_vectors(embedding, path, vocab, freeze)
    if freeze:
        embedding.weight.requires_grad_(False)
    return None
