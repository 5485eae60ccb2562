"""The server's limits (`textcls serve` options), checked before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from textcls.errors import ConfigError


@dataclass
class ServeOptions:
    max_batch: int = 64  # texts of concurrent requests predicted in one call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    max_texts: int = 1000  # per request
    max_body: int = 1 << 20  # bytes per request
    api_key: Optional[str] = None  # None: no auth


def check_options(host: str, port: int, options: ServeOptions) -> None:
    """Every problem with the options in one ConfigError."""
    problems = []
    if not host.strip():
        problems.append("--host is empty; give an address such as 127.0.0.1")
    if not 0 <= port <= 65535:
        problems.append(f"--port must be 0-65535, got {port}")
    for name, value, low in (("--max-batch", options.max_batch, 1), ("--max-texts", options.max_texts, 1),
                             ("--max-body", options.max_body, 64), ("--max-wait-ms", options.max_wait_ms, 0)):
        if value < low:
            problems.append(f"{name} must be at least {low}, got {value}")
    if options.api_key is not None and not options.api_key.strip():
        problems.append("--api-key (or TEXTCLS_API_KEY) is empty; give a key, or unset it to serve without one")
    if problems:
        raise ConfigError("; ".join(problems))
