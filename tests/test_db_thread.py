"""The store thread survives whatever the database does: each caller gets its result or an
exception, never a hang, and the calls after a failure are served."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from slackbot.db_thread import DatabaseThread
from slackbot.errors import StoreUnavailable
from slackbot.sqlite_store import SqliteStore
from tests.processes import write_lock_held


def ts(n: int) -> str:
    return f"{1_700_000_000 + n}.{n:06d}"


@contextlib.asynccontextmanager
async def thread_busy(run: Callable[[Callable[[], Any]], Awaitable[Any]]) -> AsyncIterator[None]:
    """Keep the store thread busy: calls made in the block queue up and run as one batch."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(10)

    holding = asyncio.ensure_future(run(hold))
    await asyncio.to_thread(entered.wait, 10)
    try:
        yield
        await asyncio.sleep(0.05)  # the block's calls reach the queue
    finally:
        release.set()
        await holding


async def test_a_write_lock_held_past_the_busy_timeout_fails_calls_not_the_store(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "x.db")
    store = await SqliteStore.open(path, busy_timeout=0.5)
    try:
        c = await store.thread_conversation("T1", "C1", ts(0))
        await store.add_user_turn(c, ts=ts(0), user_id="U", user_name="A", text="before")
        async with write_lock_held(path):
            started = time.monotonic()
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        store.add_user_turn(c, ts=ts(n), user_id="U", user_name="A", text=str(n))
                        for n in range(1, 21)
                    ),
                    store.history(c, ts(99)),
                    return_exceptions=True,
                ),
                timeout=10,
            )
            elapsed = time.monotonic() - started
        writes, read = results[:20], results[20]
        assert all(isinstance(w, sqlite3.OperationalError) and "locked" in str(w) for w in writes)
        assert [t.text for t in read] == ["before"]  # reads go on under the lock (WAL)
        # one wait for the lock per batch, not one per queued call (20 × 0.5 s)
        assert elapsed < 3
        # the lock is gone: the store serves again, one call alone and a batch
        assert await store.add_user_turn(c, ts=ts(1), user_id="U", user_name="A", text="after")
        claims = [store.claim_event(f"E{n}", "C1", ts(n)) for n in range(20)]
        assert await asyncio.wait_for(asyncio.gather(*claims), 10) == [True] * 20
        assert [t.text for t in await store.history(c, ts(99))] == ["before", "after"]
    finally:
        await store.close()


async def test_a_batch_that_cannot_commit_fails_and_the_store_carries_on(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "x.db"))

    def orphan() -> None:  # a foreign key checked only at COMMIT: the batch's commit fails
        store._db.execute("PRAGMA defer_foreign_keys=ON")
        store._db.execute(
            "INSERT INTO messages (conversation_id, role, ts, sort_ts) VALUES (999, 'user', 1, 1)"
        )

    try:
        async with thread_busy(store._run):
            batch = asyncio.gather(
                store.claim_event("E1", "C1", ts(1)),
                store._run(orphan),
                store.claim_event("E2", "C1", ts(2)),
                return_exceptions=True,
            )
        results = await asyncio.wait_for(batch, 10)
        assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
        # nothing of the batch was stored, and the next calls (alone, then batched) are served
        assert await asyncio.wait_for(store.claim_event("E1", "C1", ts(1)), 10)
        again = [store.claim_event("E2", "C1", ts(2)), store.claim_event("E3", "C1", ts(3))]
        assert await asyncio.wait_for(asyncio.gather(*again), 10) == [True, True]
    finally:
        await store.close()


async def test_a_call_that_ends_the_batch_transaction_fails_the_calls_before_it(
    tmp_path: Path,
) -> None:
    """SQLite rolls a transaction back by itself on some errors (disk full, I/O): the calls
    before are reported failed, the ones after run on their own."""
    store = await SqliteStore.open(str(tmp_path / "x.db"))

    def rolled_back() -> None:
        store._db.execute("ROLLBACK")  # as SQLite does on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    try:
        async with thread_busy(store._run):
            batch = asyncio.gather(
                store.claim_event("E1", "C1", ts(1)),
                store._run(rolled_back),
                store.claim_event("E2", "C1", ts(2)),
                return_exceptions=True,
            )
        first, failed, after = await asyncio.wait_for(batch, 10)
        assert isinstance(first, sqlite3.OperationalError) and first is failed
        assert after is True
        assert await store.claim_event("E1", "C1", ts(1))  # really not stored
        assert not await store.claim_event("E2", "C1", ts(2))  # really stored
    finally:
        await store.close()


async def test_a_call_that_leaves_its_transaction_open_fails_alone(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "x.db"))

    def unfinished() -> None:
        store._db.execute("BEGIN IMMEDIATE")
        store._db.execute("INSERT INTO events (event_id, received_at) VALUES ('E1', 0)")

    try:
        with pytest.raises(RuntimeError, match="left its transaction open"):
            await asyncio.wait_for(store._run(unfinished), 10)
        assert await store.claim_event("E1", "C1", ts(1))  # rolled back, and served again
    finally:
        await store.close()


async def test_a_database_that_cannot_be_opened_fails_calls_until_it_can(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "x.db"

    def connect() -> sqlite_utils.Database:
        time.sleep(0.1)  # calls queue up meanwhile, to share a batch
        return sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))

    thread = DatabaseThread(connect, "test-store")

    def one() -> int:
        return int(thread.db.execute("SELECT 1").fetchone()[0])

    try:
        calls = [thread.run(one) for _ in range(10)]
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
        path.parent.mkdir()
        calls = [thread.run(one) for _ in range(10)]
        assert await asyncio.wait_for(asyncio.gather(*calls), 10) == [1] * 10
    finally:
        await thread.stop()


async def test_a_call_after_close_fails_at_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "x.db"))
    await store.close()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(store.claim_event("E1", "C1", ts(1)), 5)
    await store.close()  # closing twice is harmless
