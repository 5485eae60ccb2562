"""The /predict request and response: strict parsing of what a client sends, and the answer's shape.

Parsing is by hand rather than through FastAPI's body models so that every refusal is one sentence
naming the field (`texts[3] is not a string`) under {"error": ...}, with 4xx codes chosen here; the
pydantic models below only describe the JSON for the OpenAPI page at /docs.
"""

from __future__ import annotations

import json
from typing import Optional

import numpy as np
from pydantic import BaseModel, Field


class RequestError(Exception):
    """A request the server refuses: answered as {"error": message} with `status`."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class PredictRequest(BaseModel):
    texts: list[str] = Field(description="The texts to classify (at least one).", min_length=1)
    pairs: Optional[list[str]] = Field(None, description="For a run trained on text pairs: the second text of "
                                       "each pair, one per text.")
    top_k: int = Field(1, ge=1, description="How many of the most probable labels each prediction lists.")


class LabelProbability(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    label: str = Field(description="The most probable label.")
    probability: float
    top_k: list[LabelProbability] = Field(description="The top_k most probable labels, most probable first.")
    labels: Optional[list[str]] = Field(None, description="Multi-label runs: every label at or over its threshold.")


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="One per text, in the order of the texts.")


class ErrorResponse(BaseModel):
    error: str


FIELDS = ("texts", "pairs", "top_k")


def parse_predict(body: bytes, num_labels: int, max_texts: int,
                  pair_run: bool) -> tuple[list[str], Optional[list[str]], int]:
    """(texts, pairs or None, top_k) from a /predict body; a RequestError (400) naming what is wrong."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "the request body is not UTF-8 text; send JSON encoded as UTF-8") from None
    except ValueError as exc:
        raise RequestError(400, f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise RequestError(400, "the request body is JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestError(400, 'the request body must be a JSON object such as {"texts": ["some text"]}')
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}; /predict reads {', '.join(FIELDS)}")
    if "texts" not in data:
        raise RequestError(400, 'the field "texts" is missing: send {"texts": ["some text", ...]}')
    texts = _strings(data["texts"], "texts", max_texts)
    pairs = None
    if pair_run:
        if "pairs" not in data:
            raise RequestError(400, 'this run classifies text pairs: send "pairs", the second text of each pair, '
                               'beside "texts"')
        pairs = _strings(data["pairs"], "pairs", max_texts)
        if len(pairs) != len(texts):
            raise RequestError(400, f'"pairs" holds {len(pairs)} texts and "texts" {len(texts)}; send one per text')
    elif "pairs" in data:
        raise RequestError(400, 'this run classifies single texts, not pairs; send "texts" only')
    top_k = data.get("top_k", 1)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise RequestError(400, f'"top_k" must be a positive integer, got {json.dumps(top_k)}')
    if top_k > num_labels:
        raise RequestError(400, f'"top_k" is {top_k}, but the model has {num_labels} labels')
    return texts, pairs, top_k


def _strings(value, name: str, max_texts: int) -> list[str]:
    if not isinstance(value, list):
        raise RequestError(400, f'"{name}" must be a list of strings, got {type(value).__name__}')
    if not value:
        raise RequestError(400, f'"{name}" is empty; send at least one text')
    if len(value) > max_texts:
        raise RequestError(413, f'"{name}" holds {len(value)} texts; this server takes at most {max_texts} per '
                           "request (--max-texts): split them over several requests")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise RequestError(400, f"{name}[{i}] is not a string (got {type(text).__name__})")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # JSON allows "\ud800"; no tokenizer can read it
            raise RequestError(400, f"{name}[{i}] holds an unpaired surrogate (a lone \\ud800-\\udfff escape), "
                               "which is not text") from None
    return value


def predictions(probs: np.ndarray, labels: list[str], top_k: int, task: str, threshold) -> list[dict]:
    """One prediction per row of (N, C) probabilities, as PredictResponse describes."""
    rows = []
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float32), probs.shape[1:])
    for row in probs:
        order = np.argsort(-row, kind="stable")  # ties: the earlier label, as `predict` writes them
        top = [{"label": labels[i], "probability": float(row[i])} for i in order[:top_k]]
        item = {"label": labels[order[0]], "probability": float(row[order[0]]), "top_k": top}
        if task == "multilabel":
            item["labels"] = [labels[i] for i in order if row[i] >= thresholds[i]]
        rows.append(item)
    return rows
