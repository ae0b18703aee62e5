"""The store: schema, dedup, conversation keys, history snapshots, crash safety."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import Awaitable, Callable

import pytest
import sqlite_utils

from slackbot.migrations import migrations
from slackbot.postgres_store import PostgresStore
from slackbot.sqlite_store import SqliteStore
from slackbot.store import Store, StoredDocument, StoredImage

Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def reopen(request: pytest.FixtureRequest, tmp_path) -> Opener:
    """Opens the same database again each time it is called, on each backend in turn."""
    if request.param == "sqlite":
        path = str(tmp_path / "x.db")
        return lambda: SqliteStore.open(path)
    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore.open(url)


def ts(n: int) -> str:
    return f"{1_700_000_000 + n}.{n:06d}"


def test_schema_after_migrations() -> None:
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    assert set(db.table_names()) >= {
        "conversations",
        "messages",
        "images",
        "events",
        "seen_messages",
        "dm_sessions",
        "usage",
        "documents",
    }
    assert db["conversations"].columns_dict == {
        "id": int,
        "team": str,
        "channel": str,
        "kind": str,
        "root_ts": str,
        "created_at": float,
        "kept_from_id": int,
        "images_from_id": int,
        "token_ratio": float,
        "trim_noticed_at": float,
        "synced_to": str,
    }
    assert {
        "conversation_id",
        "role",
        "ts",
        "sort_ts",
        "text",
        "status",
        "reply_ts",
        "tokens",
    } <= set(db["messages"].columns_dict)
    assert db["documents"].columns_dict == {
        "id": int,
        "message_id": int,
        "position": int,
        "name": str,
        "kind": str,
        "media_type": str,
        "data": str,
        "size": int,
        "pages": int,
        "text_chars": int,
    }
    assert db["channel_prompts"].columns_dict == {
        "team": str,
        "channel": str,
        "text": str,
        "updated_by": str,
        "updated_at": float,
    }
    assert db["prompt_audit"].columns_dict == {
        "id": int,
        "team": str,
        "channel": str,
        "user_id": str,
        "at": float,
        "old_text": str,
        "new_text": str,
    }
    assert migrations.pending(db) == []


async def test_store_uses_wal(tmp_path) -> None:
    store = await SqliteStore.open(str(tmp_path / "x.db"))
    await store.close()
    db = sqlite_utils.Database(str(tmp_path / "x.db"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_claim_event_dedupes_by_event_id_and_message(reopen: Opener) -> None:
    store = await reopen()
    assert await store.claim_event("Ev1", "C1", ts(1))
    assert not await store.claim_event("Ev1", "C1", ts(1))  # redelivery
    assert not await store.claim_event("Ev2", "C1", ts(1))  # same post, other event
    assert await store.claim_event("Ev3", "C2", ts(1))  # same ts, other channel
    await store.close()
    reopened = await reopen()
    assert not await reopened.claim_event("Ev1", "C1", ts(1))  # across a restart
    await reopened.close()


async def test_conversations_are_keyed_by_team_channel_thread(reopen: Opener) -> None:
    store = await reopen()
    a = await store.thread_conversation("T1", "C1", ts(1))
    assert a == await store.thread_conversation("T1", "C1", ts(1))
    others = {
        await store.thread_conversation("T2", "C1", ts(1)),
        await store.thread_conversation("T1", "C2", ts(1)),
        await store.thread_conversation("T1", "C1", ts(2)),
    }
    assert a not in others and len(others) == 3
    # a DM's running conversation never shares a key with a thread rooted at the same message
    assert await store.dm_conversation("T1", "C1", ts(1), 3600) != a
    await store.close()


async def test_dm_conversation_goes_idle(reopen: Opener) -> None:
    store = await reopen()
    first = await store.dm_conversation("T1", "D1", ts(0), idle_seconds=100)
    assert await store.dm_conversation("T1", "D1", ts(50), idle_seconds=100) == first
    later = await store.dm_conversation("T1", "D1", ts(500), idle_seconds=100)
    assert later != first
    await store.reset_dm("T1", "D1")
    assert await store.dm_conversation("T1", "D1", ts(501), idle_seconds=100) != later
    await store.close()


async def test_history_is_a_snapshot_at_the_mention(reopen: Opener) -> None:
    store = await reopen()
    c = await store.thread_conversation("T1", "C1", ts(1))
    await store.add_user_turn(c, ts=ts(1), user_id="U1", user_name="Alice", text="q1")
    reply = await store.begin_reply(c, answers_ts=ts(1), channel="C1", first_ts=ts(2))
    await store.add_user_turn(
        c,
        ts=ts(3),
        user_id="U2",
        user_name="Bob",
        text="q2",
        images=[StoredImage("image/png", "AAAA", "a.png")],
    )
    await store.update_reply(reply, text="a1", message_ts=[ts(2)], status="done")
    await store.add_user_turn(c, ts=ts(5), user_id="U1", user_name="Alice", text="later")

    at_q2 = await store.history(c, ts(3))
    assert [(t.role, t.text) for t in at_q2] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
    ]
    assert at_q2[2].images == (StoredImage("image/png", "AAAA", "a.png"),)
    # the reply to q2 (begun later) is not part of q2's own history
    await store.begin_reply(c, answers_ts=ts(3), channel="C1", first_ts=ts(4))
    assert [t.text for t in await store.history(c, ts(3))] == ["q1", "a1", "q2"]
    assert not await store.add_user_turn(c, ts=ts(1), user_id="U1", user_name="A", text="dup")
    await store.close()


async def test_unfinished_replies_survive_kill_9(tmp_path) -> None:
    """A reply begun by a process that is then SIGKILLed is found by the next start."""
    path = str(tmp_path / "x.db")
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from slackbot.sqlite_store import SqliteStore
        async def main():
            store = await SqliteStore.open({path!r})
            c = await store.thread_conversation("T1", "C1", "1700000000.000001")
            r = await store.begin_reply(c, answers_ts="1700000000.000001", channel="C1",
                                        first_ts="1700000000.000002")
            await store.update_reply(r, text="partial", message_ts=["1700000000.000002"],
                                     status="streaming")
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, env=dict(os.environ))
    assert await proc.wait() == -signal.SIGKILL
    store = await SqliteStore.open(path)
    unfinished = await store.unfinished_replies()
    assert [(u.text, u.message_ts) for u in unfinished] == [("partial", ("1700000000.000002",))]
    await store.close()


def old_database(path: str, *, stop_before: str) -> None:
    """A database migrated up to (not including) `stop_before`, holding one thread with one
    message from Alice: what an older release left on disk."""
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before=stop_before)
    db.execute(
        "INSERT INTO conversations (id, team, channel, kind, root_ts)"
        " VALUES (1, 'T', 'C', 'thread', ?)",
        [ts(1)],
    )
    db.execute(
        "INSERT INTO messages (conversation_id, role, ts, sort_ts, user_name, text, status)"
        " VALUES (1, 'user', ?, ?, 'Alice', 'hi', 'done')",
        [ts(1), ts(1)],
    )
    db.conn.commit()
    db.close()


async def test_upgrade_from_before_the_context_budget(tmp_path) -> None:
    """A database from the core bot (m001-m005) gains token estimates, budget state and usage."""
    path = str(tmp_path / "old.db")
    old_database(path, stop_before="m006_add_context_budget")

    store = await SqliteStore.open(path)
    (turn,) = await store.history(1, ts(1))
    assert turn.text == "hi" and turn.tokens is None
    await store.save_token_estimates({turn.id: 12})
    (turn,) = await store.history(1, ts(1))
    assert turn.tokens == 12
    state = await store.window_state(1)
    assert state.kept_from_id is None and state.token_ratio is None and not state.trim_noticed
    await store.save_window_state(1, kept_from_id=7, images_from_id=None, token_ratio=0.9)
    await store.save_window_state(1, kept_from_id=7, images_from_id=3, trim_noticed=True)
    state = await store.window_state(1)
    assert (state.kept_from_id, state.images_from_id, state.token_ratio) == (7, 3, 0.9)
    assert state.trim_noticed
    await store.close()


async def test_concurrent_calls_share_a_transaction_and_a_failure_stays_its_own(tmp_path) -> None:
    """A burst of calls runs as one batch; one failing call rolls back only itself."""
    store = await SqliteStore.open(str(tmp_path / "x.db"))
    c = await store.thread_conversation("T1", "C1", ts(1))

    async def bad() -> None:
        def _fail() -> None:
            with store._transaction():
                store._db.execute("INSERT INTO events (event_id, received_at) VALUES ('bad', 0)")
                raise RuntimeError("boom")

        await store._run(_fail)

    results = await asyncio.gather(
        *(
            store.add_user_turn(c, ts=ts(n), user_id="U", user_name="A", text=str(n))
            for n in range(50)
        ),
        bad(),
        *(store.claim_event(f"E{n}", "C1", ts(n)) for n in range(50)),
        return_exceptions=True,
    )
    assert results[:50] == [True] * 50
    assert isinstance(results[50], RuntimeError)
    assert results[51:] == [True] * 50
    await store.close()
    reopened = await SqliteStore.open(str(tmp_path / "x.db"))
    assert len(await reopened.history(c, ts(99))) == 50
    assert await reopened.claim_event("bad", "C9", ts(1))  # the failed call left nothing behind
    await reopened.close()


PDF = StoredDocument("pdf", "application/pdf", "JVBERi0=", "report.pdf", 5, 3, 120)
NOTES = StoredDocument("text", "text/plain", "a,b\n1,2\n", "data.csv", 8, None, 8)


async def test_documents_are_stored_once_and_loaded_with_their_turn(reopen: Opener) -> None:
    store = await reopen()
    c = await store.thread_conversation("T1", "C1", ts(1))
    image = StoredImage("image/png", "AAAA", "a.png")
    assert await store.add_user_turn(
        c, ts=ts(1), user_id="U1", user_name="Alice", text="q1", documents=[PDF, NOTES]
    )
    # the same message again (a redelivery, a thread sync): nothing stored twice
    assert not await store.add_user_turn(
        c, ts=ts(1), user_id="U1", user_name="Alice", text="q1", documents=[PDF]
    )
    turns, _ = await store.add_turn_and_load(
        c, ts=ts(2), user_id="U2", user_name="Bob", text="q2", images=[image], documents=[NOTES]
    )
    assert [(t.text, t.documents, t.images) for t in turns] == [
        ("q1", (PDF, NOTES), ()),
        ("q2", (NOTES,), (image,)),
    ]
    await store.close()
    reopened = await reopen()
    assert [t.documents for t in await reopened.history(c, ts(1))] == [(PDF, NOTES)]
    await reopened.close()


async def test_upgrade_adds_documents_to_an_existing_database(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    old_database(path, stop_before="m011_create_documents")

    store = await SqliteStore.open(path)
    (turn,) = await store.history(1, ts(1))
    assert turn.text == "hi" and turn.documents == ()
    await store.add_user_turn(1, ts=ts(2), user_id="U", user_name="A", text="x", documents=[PDF])
    assert (await store.history(1, ts(2)))[1].documents == (PDF,)
    await store.close()


async def test_replies_pending_messages_and_usage_on_every_backend(reopen: Opener) -> None:
    from slackbot.store import UsageRecord

    store = await reopen()
    c = await store.claim_conversation(
        "Ev1", "C1", ts(1), team="T1", thread_root=ts(1), idle_seconds=60, pending='{"m": 1}'
    )
    assert c is not None
    assert (
        await store.claim_conversation(
            "Ev1", "C1", ts(1), team="T1", thread_root=ts(1), idle_seconds=60
        )
        is None
    )
    # What the next start finds: the claim of a bot that stopped before answering it.
    await store.close()
    store = await reopen()
    [pending] = await store.pending_messages(max_age=3600)
    assert (pending.conversation_id, pending.payload) == (c, '{"m": 1}')
    await store.add_user_turn(c, ts=ts(1), user_id="U1", user_name="Alice", text="q")
    reply = await store.begin_reply(c, answers_ts=ts(1), channel="C1", first_ts=ts(2))
    assert await store.pending_messages(max_age=3600) == []  # begun: no longer pending
    await store.update_reply(reply, text="half", message_ts=[ts(2)], status="streaming")
    await store.close()
    store = await reopen()
    [unfinished] = await store.unfinished_replies()
    assert (unfinished.id, unfinished.team, unfinished.thread_ts, unfinished.text) == (
        reply,
        "T1",
        ts(1),
        "half",
    )
    await store.update_reply(
        reply, text="whole", message_ts=[ts(2), ts(3)], status="done", stop_reason="end_turn"
    )
    assert await store.unfinished_replies() == []
    assert await store.known_ts(c) == {ts(1), ts(2), ts(3)}
    assert await store.sync_point(c) is None
    await store.mark_synced(c, ts(3))
    await store.mark_synced(c, ts(2))  # never moves back
    assert await store.sync_point(c) == ts(3)
    turns = await store.history(c, ts(9))
    await store.save_token_estimates({t.id: 10 + i for i, t in enumerate(turns)})
    assert [t.tokens for t in await store.history(c, ts(9))] == [10, 11]
    await store.save_window_state(c, kept_from_id=turns[1].id, images_from_id=None)
    state = await store.window_state(c)
    assert state.kept_from_id == turns[1].id and not state.trim_noticed
    await store.record_usage(
        UsageRecord(reply, c, "T1", "C1", "U1", "claude-x", "sonnet", 5, 7, web_search_requests=1)
    )
    # A claim that never got a reply is forgotten when asked to be.
    other = await store.claim_conversation(
        "Ev2", "C1", ts(5), team="T1", thread_root=ts(1), idle_seconds=60, pending="{}"
    )
    assert other == c
    await store.forget_pending("C1", ts(5))
    assert await store.pending_messages(max_age=3600) == []
    await store.close()
    reopened = await reopen()
    assert [t.text for t in await reopened.history(c, ts(9))] == ["q", "whole"]
    await reopened.close()
