"""The one thread that owns the SQLite connection, running queued calls in batches.

sqlite-utils is synchronous and a connection belongs to the thread that made it, so every store
call is queued here and awaited from async code: the event loop never blocks on disk. Calls that
queue up while the thread is busy (a burst of mentions) run back to back in one transaction —
one commit instead of one each, and one wake-up of the event loop to deliver all their results.
A result is delivered only after its batch has committed, so "stored" still means durable.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")

#: At most this many queued calls share one transaction.
MAX_BATCH = 256

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class DatabaseThread:
    def __init__(self, connect: Callable[[], sqlite_utils.Database], name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._db: sqlite_utils.Database | None = None
        #: True while a batch transaction is open: writes then use savepoints (see `Store`).
        self.in_batch = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection; only for code running on this thread."""
        if self._db is None:
            self._db = self._connect()
        return self._db

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, loop, future))
        return await future

    async def stop(self) -> None:
        """Finish what is queued, close the connection and end the thread."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            batch = [job]
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._run_batch(batch)
            if stopping:
                break
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run_batch(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, Any]] = []
        shared = len(batch) > 1
        if shared:
            self.db.execute("BEGIN IMMEDIATE")
            self.in_batch = True
        try:
            for fn, args, loop, future in batch:
                try:
                    outcomes.append((loop, future, fn(*args), None))
                except Exception as exc:  # that call's own savepoint was rolled back
                    outcomes.append((loop, future, None, exc))
        finally:
            if shared:
                self.in_batch = False
                try:
                    self.db.execute("COMMIT")
                except Exception as exc:  # nothing of the batch was stored: all of it failed
                    outcomes = [(loop, fut, None, exc) for loop, fut, _, _ in outcomes]
        for loop, future, result, error in outcomes:
            loop.call_soon_threadsafe(_settle, future, result, error)
