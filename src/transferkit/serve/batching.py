"""Micro-batching: concurrent requests wait a moment for each other and run through the model together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Job = tuple[list[Any], "asyncio.Future[list[Any]]"]


class MicroBatcher:
    """Gathers the items of concurrent requests into batches of at most ``max_batch`` items, waiting at most
    ``max_wait_s`` after the first for more, and runs ``predict`` on each batch in one worker thread (the
    model runs one batch at a time; the event loop keeps accepting requests meanwhile).

    If a combined batch fails, each request's items are run again alone, so that one bad request fails
    only itself.

    Args:
        predict: items -> one result per item, in order.
    """

    def __init__(self, predict: Callable[[list[Any]], list[Any]], *, max_batch: int, max_wait_s: float) -> None:
        self.predict, self.max_batch, self.max_wait_s = predict, max_batch, max_wait_s
        self._queue: asyncio.Queue[Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # how many batches ran (the server's /metadata shows it)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transferkit-model")
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, items: list[Any]) -> list[Any]:
        """The results of ``items``, computed in a batch with whatever other requests arrive meanwhile."""
        if self._queue is None:
            raise RuntimeError("the batcher was not started")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put((items, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0][0])
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
                jobs.append(job)
                size += len(job[0])
            await self._run_jobs(jobs)

    async def _run_jobs(self, jobs: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        live = [(items, future) for items, future in jobs if not future.done()]  # a client that went away
        if not live:
            return
        try:
            results = await loop.run_in_executor(self._executor, self.predict, [i for items, _ in live for i in items])
            self.batches += 1
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests, never raised here
            if len(live) == 1:
                live[0][1].set_exception(exc)
                return
            for job in live:  # run each alone: only the request that fails gets the error
                await self._run_jobs([job])
            return
        start = 0
        for items, future in live:
            if not future.done():
                future.set_result(results[start:start + len(items)])
            start += len(items)
