"""The one thread that owns the SQLite connection, running queued calls in batches.

sqlite-utils is synchronous and a connection belongs to the thread that made it, so every store
call is queued here and awaited from async code: the event loop never blocks on disk. Calls that
queue up while the thread is busy (a burst of mentions) run back to back in one transaction —
one commit instead of one each, and one wake-up of the event loop to deliver all their results.
A result is delivered only after its batch has committed, so "stored" still means durable.

Nothing a call or the database does ends the thread: every caller gets its result or an
exception, and the next calls are served. When a batch cannot begin its transaction (another
process held the write lock past the busy timeout), its calls run one by one without waiting for
the lock again: reads still succeed (WAL), writes fail at once instead of each waiting out the
busy timeout in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlite_utils

from slackbot.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: At most this many queued calls share one transaction.
MAX_BATCH = 256

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]]
#: A call's result, or the exception its caller gets.
_Outcome = tuple[Any, BaseException | None]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled: the caller stopped waiting (e.g. a health check timed out)
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, StopIteration):  # a future refuses it, and the caller would hang
        future.set_exception(RuntimeError(repr(error)))
    else:
        future.set_exception(error)


class DatabaseThread:
    def __init__(self, connect: Callable[[], sqlite_utils.Database], name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._db: sqlite_utils.Database | None = None
        self._stopping = False
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

    @property
    def alive(self) -> bool:
        """False once the thread has ended (after `stop`)."""
        return self._thread.is_alive() and not self._stopping

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.alive:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, loop, future))
        return await future

    async def stop(self) -> None:
        """Finish what is queued, close the connection and end the thread."""
        if not self._stopping:
            self._stopping = True
            self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            for (_, _, loop, future), (result, error) in zip(
                batch, self._outcomes(batch), strict=True
            ):
                with contextlib.suppress(RuntimeError):  # the caller's event loop is closed
                    loop.call_soon_threadsafe(_settle, future, result, error)
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def _next_batch(self) -> tuple[list[_Job], bool]:
        """Wait for a call, then take the ones queued behind it; True once `stop` was asked."""
        job = self._queue.get()
        if job is None:
            return [], True
        batch = [job]
        while len(batch) < MAX_BATCH:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return batch, True
            batch.append(more)
        return batch, False

    def _outcomes(self, batch: list[_Job]) -> list[_Outcome]:
        if not batch:
            return []
        try:
            return self._run_batch(batch)
        except BaseException as exc:  # a fault of this module's: still answer every caller
            log.exception("store thread: a batch of %d call(s) failed", len(batch))
            self.in_batch = False
            self._rollback()
            return [(None, exc)] * len(batch)

    def _run_batch(self, batch: list[_Job]) -> list[_Outcome]:
        try:
            db = self.db
        except Exception as exc:  # these calls fail; the next ones try to connect again
            log.error("store: cannot open the database: %s", exc)
            return [(None, exc)] * len(batch)
        if len(batch) == 1:
            return [self._call_alone(batch[0])]
        try:
            db.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            log.warning(
                "store: %d queued calls could not share a transaction (%s); running them one"
                " by one, without waiting for the lock again",
                len(batch),
                exc,
            )
            return self._run_without_waiting(batch)
        return self._run_shared(batch)

    def _call(self, job: _Job) -> _Outcome:
        fn, args, _, _ = job
        try:
            return fn(*args), None
        except Exception as exc:  # in a batch, that call's own savepoint was rolled back
            return None, exc

    def _call_alone(self, job: _Job) -> _Outcome:
        """A call outside any batch: it runs its own transactions."""
        result, error = self._call(job)
        if self.db.conn.in_transaction:  # left open, it would make every later BEGIN fail
            self._rollback()
            return None, error or RuntimeError("a store call left its transaction open")
        return result, error

    def _run_shared(self, batch: list[_Job]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        self.in_batch = True
        try:
            for index, job in enumerate(batch):
                outcome = self._call(job)
                outcomes.append(outcome)
                if not self.db.conn.in_transaction:
                    # SQLite ended the batch's transaction. A call that failed made it roll
                    # back (disk full, I/O error): the calls before it lost their writes. One
                    # that succeeded committed it (sqlite-utils' insert() does): theirs stand.
                    error = outcome[1]
                    if error is not None:
                        outcomes = [(None, e or error) for _, e in outcomes]
                    self.in_batch = False
                    return outcomes + [self._call_alone(rest) for rest in batch[index + 1 :]]
        finally:
            self.in_batch = False
        try:
            self.db.execute("COMMIT")
        except Exception as exc:  # nothing of the batch was stored: all of it failed
            log.error("store: a batch of %d calls could not commit: %s", len(batch), exc)
            self._rollback()  # a failed COMMIT can leave the transaction open
            return [(None, e or exc) for _, e in outcomes]
        return outcomes

    def _run_without_waiting(self, batch: list[_Job]) -> list[_Outcome]:
        """Each call in its own transaction, failing at once if the write lock is still held."""
        db = self.db
        (busy_ms,) = db.execute("PRAGMA busy_timeout").fetchone()
        db.execute("PRAGMA busy_timeout=0")
        try:
            return [self._call_alone(job) for job in batch]
        finally:
            db.execute(f"PRAGMA busy_timeout={int(busy_ms)}")

    def _rollback(self) -> None:
        if self._db is not None and self._db.conn.in_transaction:
            with contextlib.suppress(Exception):
                self._db.execute("ROLLBACK")
