"""The HTTP service of a loaded run: POST /predict, GET /health, /info, the page at / and OpenAPI at /docs.

Every answer the server gives to a bad request is 4xx with {"error": message}: the request is
parsed by textcls.serve.schema, Starlette's own 404/405 are reshaped, and a handler of last resort
turns anything unforeseen into a 500 {"error": ...} without the traceback (which goes to the log).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from textcls import __version__
from textcls.io import sha256_file
from textcls.predictor import Predictor
from textcls.run.info import read_run_info
from textcls.run.layout import NBLR_WEIGHTS, WEIGHTS, is_ensemble_dir
from textcls.run.load import Run, weights_digest
from textcls.run.members import member_dirs
from textcls.serve.batcher import MicroBatcher
from textcls.serve.options import ServeOptions
from textcls.serve.page import render_page
from textcls.serve.schema import (
    ErrorResponse,
    PredictRequest,
    PredictResponse,
    RequestError,
    parse_predict,
    predictions,
)

log = logging.getLogger("textcls.serve")

JSON_TYPES = ("application/json",)


def weights_checksums(run_dir: Path) -> dict[str, str]:
    """sha256 of every weights file the run's predictor uses, by path relative to the run directory."""
    dirs = member_dirs(run_dir) if is_ensemble_dir(run_dir) else [run_dir]
    sums = {str((d / WEIGHTS).relative_to(run_dir)): weights_digest(d) for d in dirs}
    if (run_dir / NBLR_WEIGHTS).is_file():
        sums[NBLR_WEIGHTS] = sha256_file(run_dir / NBLR_WEIGHTS)
    return sums


def run_description(run: Run) -> dict:
    """What GET /info says about the model (computed once, when the app is built)."""
    info = read_run_info(run.path)  # {} where there is none
    return {"run": run.path.name, "labels": run.labels, "task": run.cfg.data.task,
            "text_columns": [str(c) for c in run.cfg.data.text_columns],
            "pairs": len(run.cfg.data.text_columns) == 2, "max_length": run.cfg.data.max_length,
            "textcls_version": __version__, "trained_with": info.get("textcls_version"),
            "weights_sha256": weights_checksums(run.path)}


def _error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def build_app(run: Run, predictor: Predictor, options: Optional[ServeOptions] = None) -> FastAPI:
    """The app for one run; `predictor.predict_proba` runs in a worker thread, one batch at a time."""
    options = options or ServeOptions()
    batcher = MicroBatcher(predictor.predict_proba, options.max_batch, options.max_wait_ms)
    description = run_description(run)
    pair_run, task, threshold = description["pairs"], run.cfg.data.task, run.cfg.train.threshold
    page = render_page(run.path.name, run.labels, options.api_key is not None, pair_run)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="textcls", version=__version__, lifespan=lifespan,
                  description=f"Text classification with the textcls run `{run.path.name}` "
                              f"({len(run.labels)} labels).")
    app.state.batcher = batcher
    errors = {code: {"model": ErrorResponse} for code in (400, 401, 413, 415)}

    def authorize(request: Request) -> None:
        if options.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), options.api_key.encode()):
            raise RequestError(401, "this server needs an API key: send the header `Authorization: Bearer KEY`",
                               {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = {404: f"no such page: {request.url.path} (see /docs)",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"invalid request: {exc.errors()[0].get('msg', 'bad value') if exc.errors() else ''}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s: %r", request.method, request.url.path, exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.post("/predict", response_model=None, responses={200: {"model": PredictResponse}, **errors},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(request: Request) -> JSONResponse:
        """Labels and probabilities of `texts`, in order; concurrent requests are batched together."""
        authorize(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in JSON_TYPES:
            raise RequestError(415, f"send the body as application/json (got {media or 'no content type'})")
        body = await _read_body(request, options.max_body)
        texts, pairs, top_k = parse_predict(body, len(run.labels), options.max_texts, pair_run)
        probs = await batcher.submit(texts, pairs)
        return JSONResponse({"predictions": predictions(probs, run.labels, top_k, task, threshold)})

    @app.get("/health")
    async def health() -> dict:
        """Whether the server is up, and how many batches and texts it has predicted."""
        return {"status": "ok", "batches": batcher.batches, "texts": batcher.texts}

    @app.get("/info", responses={401: {"model": ErrorResponse}})
    async def info(request: Request) -> dict:
        """The model's labels, the textcls version and the sha256 of the weights, and the server's limits."""
        authorize(request)
        return {**description, "limits": asdict(options) | {"api_key": options.api_key is not None}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 once it passes `limit` bytes (checked on Content-Length first, then as it streams)."""
    too_big = RequestError(413, f"the request body is over {limit} bytes (--max-body); send fewer or shorter texts "
                                "per request")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)
