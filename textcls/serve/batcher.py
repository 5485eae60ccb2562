"""Dynamic micro-batching: the texts of concurrent requests go through the predictor in one call.

One worker task takes requests off an asyncio queue. From the first request on, it gathers more until
the batch holds `max_batch` texts or `max_wait_ms` have passed since that first request arrived, runs
the predictor once in a thread (so the event loop keeps accepting and answering requests), and hands
each request its own rows. A request larger than `max_batch` runs alone: it is never split.
While a batch runs, the next requests queue up, so under load batches fill without waiting.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

PredictFn = Callable[[list[str], Optional[list[str]]], np.ndarray]


@dataclass
class _Request:
    texts: list[str]
    pairs: Optional[list[str]]
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """`await submit(texts, pairs)` -> (N, C) probabilities of those texts, computed together with the
    texts of the requests that arrived around the same time. `start()` and `stop()` run inside the
    event loop (the app's lifespan); `batches` and `texts` count what the predictor was given."""

    def __init__(self, predict: PredictFn, max_batch: int = 64, max_wait_ms: float = 5.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch} and {max_wait_ms}")
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self.batches = 0
        self.texts = 0
        self._queue: Optional[asyncio.Queue[_Request]] = None
        self._held: Optional[_Request] = None  # taken off the queue, but it did not fit the last batch
        self._worker: Optional[asyncio.Task] = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="textcls-batcher")

    async def stop(self) -> None:
        """Cancel the worker; requests still waiting are failed (the server drains before this is called)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        waiting = [self._held] if self._held else []
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for request in waiting:
            if not request.future.done():
                request.future.set_exception(RuntimeError("the server is shutting down"))

    async def submit(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() has not run (the app's lifespan starts it)")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(texts, pairs, future))
        return await future

    async def _next_batch(self) -> list[_Request]:
        first = self._held or await self._queue.get()
        self._held = None
        batch, size = [first], len(first.texts)
        deadline = first.arrived + self.max_wait
        while size < self.max_batch:
            try:
                if self._queue.empty():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                else:
                    request = self._queue.get_nowait()
            except asyncio.TimeoutError:
                break
            if size + len(request.texts) > self.max_batch:
                self._held = request  # first of the next batch
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            live = [r for r in batch if not r.future.done()]  # a client that went away cancelled its future
            if not live:
                continue
            texts = [t for r in live for t in r.texts]
            pairs = [p for r in live for p in r.pairs] if live[0].pairs is not None else None
            try:
                probs = await asyncio.to_thread(self.predict, texts, pairs)
            except Exception as exc:  # handed to each request, which answers 500 without the traceback
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for r in live:
                if not r.future.done():
                    r.future.set_result(probs[start:start + len(r.texts)])
                start += len(r.texts)
