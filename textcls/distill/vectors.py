"""The student's word vectors from the teacher (`distill.teacher_vectors`, on by default).

A student trained from scratch knows only the words of the training rows, and only as well as those rows teach
them; the teacher learned its words from a pretraining corpus and the task. Each token of the student's
vocabulary is read alone by the teacher (its tokenizer, its encoder, the pooled vector its head reads), and the
vectors, centred and reduced by PCA to the student's embedding width, start the student's word embedding,
which then trains with the rest of the student. Model2Vec (Tulkens and van Dongen, 2024) makes static
vectors of a sentence encoder the same way; here the encoder is the fine-tuned teacher, so the vectors already
lean towards its classes.

The teacher is one model: a single-model run, or an ensemble's first member (with its tokenizer). Special
tokens keep their random rows. The components are scaled to a root mean square of 1 over the vectors (the
LayerNorm after the embeddings reads directions, not norms), and a student wider than the teacher's vectors
keeps random values in its remaining columns.
"""

from __future__ import annotations

import numpy as np
import torch

from textcls.data.subword import BPE_SUFFIX
from textcls.data.tokenizer import SPECIAL_TOKENS
from textcls.distill.teacher import Teacher, pooled_vectors

MAX_TOKEN_LENGTH = 16  # the teacher's tokens for one student token, with [CLS] and [SEP]


def token_text(token: str) -> str:
    """The text a sub-word stands for: a wordpiece continuation's `##`, a BPE word end's `</w>` and a unigram
    piece's `▁` removed."""
    return token.removeprefix("##").removesuffix(BPE_SUFFIX).replace("\u2581", " ").strip()


def teacher_vectors(teacher: Teacher, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """(N, H_teacher) float32: the pooled vector of each text read alone by the teacher's one model."""
    model, tokenizer, data = teacher.single()
    model.eval()
    return pooled_vectors(model, tokenizer, texts, min(MAX_TOKEN_LENGTH, data.max_length), "head", None,
                          torch.device("cpu"), batch_size)


def reduce(vectors: np.ndarray, width: int) -> np.ndarray:
    """(N, min(width, H, N - 1)) float32: the centred (N, H) vectors' first principal components (N vectors
    centred span at most N - 1 directions), scaled to an RMS of 1."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # rows of vt: components, by variance
    reduced = centred @ vt[:min(width, len(vectors) - 1)].T
    rms = float(np.sqrt(np.mean(reduced ** 2)))
    return (reduced / rms if rms > 0 else reduced).astype(np.float32)


@torch.no_grad()
def init_from_teacher(embedding: torch.nn.Embedding, vocab: dict[str, int], teacher: Teacher) -> int:
    """Set the rows of `embedding` (V, E) of the student's vocabulary `vocab` (token -> id) from the teacher;
    the number of rows set (special tokens and tokens that stand for no text keep theirs)."""
    rows = sorted((i, token_text(t)) for t, i in vocab.items()
                  if t not in SPECIAL_TOKENS and i < embedding.num_embeddings and token_text(t))
    if len(rows) < 2:
        return 0
    reduced = reduce(teacher_vectors(teacher, [text for _, text in rows]), embedding.embedding_dim)
    ids = torch.tensor([i for i, _ in rows])
    embedding.weight[ids, :reduced.shape[1]] = torch.from_numpy(reduced).to(embedding.weight.dtype)
    return len(rows)
