"""`textcls serve`: a run's predictor behind an HTTP JSON API (FastAPI + uvicorn, the `serve` extra).

    app.py      the routes (/predict, /health, /info, the page at /), auth, every error as JSON
    options.py  the limits (--max-batch, --max-texts, ...) and their checks
    batcher.py  dynamic micro-batching of concurrent requests
    schema.py   strict parsing of a /predict body, the answer's shape
    page.py     the self-contained HTML page
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Callable, Optional

import torch

from textcls.errors import ConfigError
from textcls.export.runtime import with_runtime
from textcls.predictor import run_predictor
from textcls.run.load import load_run
from textcls.serve.options import ServeOptions, check_options

try:
    import uvicorn

    from textcls.serve.app import build_app
except ImportError as exc:  # the optional extra is missing: say how to get it when serve is asked for
    _MISSING: Optional[ImportError] = exc
else:
    _MISSING = None

GRACE_S = 30  # on SIGTERM, how long requests in flight may take to finish


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 8000, options: Optional[ServeOptions] = None,
          device: torch.device = torch.device("cpu"), precision: str = "fp32", runtime: str = "torch",
          announce: Callable[[str], None] = print) -> None:
    """Load the run and serve it until SIGTERM (which lets requests in flight finish, then returns) or Ctrl+C.
    `runtime="onnx"`: its transformers run in onnxruntime (textcls.export.runtime)."""
    if _MISSING is not None:
        raise ConfigError(f"serve needs the optional packages of textcls[serve] ({_MISSING.name} is missing); "
                          "install them with `pip install 'textcls[serve]'`")
    options = options or ServeOptions()
    check_options(host, port, options)
    run = load_run(run_dir, device=device)
    predictor = with_runtime(run_predictor(run, device=device, precision=precision), run, runtime)
    app = build_app(run, predictor, options)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=GRACE_S, server_header=False)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    announce(f"serving {run_dir} on http://{shown}:{port}/ (API docs at /docs); SIGTERM or Ctrl+C stops it")
    # uvicorn drains on SIGTERM, then raises the signal again once its own handler is gone; with this one
    # in place that second SIGTERM is ignored and the process exits 0 instead of being killed by it.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if main else None
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind, after logging why
        raise ConfigError(f"the server could not listen on {host}:{port} (the reason is above: the port may be in "
                          "use, or the address not this machine's); pick another --port or --host") from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
