"""What only the PostgreSQL store has to get right: the same schema as SQLite, claims that hold
across instances, a database that is down or drops away. Against a real server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest
import sqlite_utils

from fakes.postgres_server import running_postgres
from slackbot.config import load_settings
from slackbot.errors import ConfigError
from slackbot.migrations import POSTGRES, migrations
from slackbot.postgres_store import PostgresStore, masked, normalised
from tests.processes import free_port
from tests.test_config import BASE, run_slackbot

TYPES = {
    "INTEGER": "int",
    "TEXT": "str",
    "FLOAT": "float",
    "REAL": "float",
    "bigint": "int",
    "text": "str",
    "double precision": "float",
}


def ts(n: int) -> str:
    return f"{1_700_000_000 + n}.{n:06d}"


def sqlite_schema() -> dict[str, Any]:
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    schema: dict[str, Any] = {}
    for name in db.table_names():
        if name.startswith("_"):
            continue
        table = db[name]
        columns = {}
        for cid, column, kind, notnull, _default, pk in db.execute(
            f"PRAGMA table_info({name})"
        ).fetchall():
            del cid
            columns[column] = (TYPES[kind], bool(notnull) and not pk)
        indexes = {
            (tuple(index.columns), bool(index.unique))
            for index in table.indexes
            if not index.name.startswith("sqlite_autoindex")
        }
        schema[name] = {"columns": columns, "pk": tuple(table.pks), "indexes": indexes}
    return schema


def postgres_schema(url: str) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema='public' AND table_name <> 'slackbot_migrations'"
            )
        ]
        for name in tables:
            columns = {
                column: (TYPES[kind], nullable == "NO")
                for column, kind, nullable in conn.execute(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                    " WHERE table_name=%s ORDER BY ordinal_position",
                    [name],
                )
            }
            pk = tuple(
                row[0]
                for row in conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = %s::regclass AND i.indisprimary"
                    " ORDER BY array_position(i.indkey, a.attnum)",
                    [name],
                )
            )
            for column in pk:  # SQLite reports primary-key columns as nullable: compare alike
                columns[column] = (columns[column][0], False)
            indexes = set()
            for index_columns, unique in conn.execute(
                "SELECT array_agg(a.attname ORDER BY array_position(i.indkey, a.attnum)),"
                " i.indisunique FROM pg_index i JOIN pg_attribute a"
                " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = %s::regclass AND NOT i.indisprimary"
                " GROUP BY i.indexrelid, i.indisunique",
                [name],
            ):
                indexes.add((tuple(index_columns), bool(unique)))
            schema[name] = {"columns": columns, "pk": pk, "indexes": indexes}
    return schema


async def test_both_backends_migrate_to_the_same_schema(postgres_url: str) -> None:
    assert list(POSTGRES) == [m.name for m in migrations._migrations]  # one list, one order
    store = await PostgresStore.open(postgres_url)
    await store.close()
    expected = sqlite_schema()
    # SQLite lists an INTEGER PRIMARY KEY as nullable; PostgreSQL as NOT NULL.
    for table in expected.values():
        for column in table["pk"]:
            table["columns"][column] = (table["columns"][column][0], False)
    assert postgres_schema(postgres_url) == expected


async def test_instances_starting_together_migrate_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(postgres_url) for _ in range(3)))
    for store in stores:
        await store.close()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT name FROM slackbot_migrations ORDER BY name").fetchall()
    assert [r[0] for r in rows] == sorted(POSTGRES)


async def test_a_claim_is_won_by_exactly_one_instance(postgres_url: str) -> None:
    a, b = PostgresStore.open(postgres_url), PostgresStore.open(postgres_url)
    one, two = await asyncio.gather(a, b)
    try:
        for n in range(30):
            # The same event delivered to both, and the same message under a second event id.
            results = await asyncio.gather(
                one.claim_conversation(
                    f"E{n}", "C1", ts(n), team="T1", thread_root=ts(0), idle_seconds=60
                ),
                two.claim_conversation(
                    f"E{n}", "C1", ts(n), team="T1", thread_root=ts(0), idle_seconds=60
                ),
                two.claim_conversation(
                    f"F{n}", "C1", ts(n), team="T1", thread_root=ts(0), idle_seconds=60
                ),
            )
            assert sum(r is not None for r in results) == 1, results
        # Two first messages of one DM, at once on two instances: one conversation.
        dms = await asyncio.gather(
            one.claim_conversation("D1", "D9", ts(1), team="T1", thread_root=None, idle_seconds=60),
            two.claim_conversation("D2", "D9", ts(2), team="T1", thread_root=None, idle_seconds=60),
        )
        assert dms[0] == dms[1] is not None
    finally:
        await one.close()
        await two.close()


async def test_an_unreachable_database_stops_the_start_quickly_with_the_password_masked() -> None:
    url = f"postgres://bot:s3cret@127.0.0.1:{free_port()}/slackbot"
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        await PostgresStore.open(url, connect_seconds=2)
    message = str(raised.value)
    assert time.monotonic() - started < 5
    assert message.startswith("DATABASE_URL: cannot reach postgresql://bot:***@127.0.0.1")
    assert "s3cret" not in message and "\n" not in message


async def test_a_database_that_drops_fails_calls_meanwhile_and_comes_back() -> None:
    with running_postgres() as server:
        url = server.create_database()
        store = await PostgresStore.open(url)
        try:
            c = await store.thread_conversation("T1", "C1", ts(1))
            await store.add_user_turn(c, ts=ts(1), user_id="U1", user_name="A", text="before")
            server.kill()
            assert not await store.healthy()
            with pytest.raises(psycopg.Error):  # the pool's timeout is an OperationalError
                await store.add_user_turn(c, ts=ts(2), user_id="U1", user_name="A", text="lost")
            server.restart()
            for _ in range(50):  # the pool re-makes its connections by itself
                if await store.healthy():
                    break
                await asyncio.sleep(0.2)
            await store.add_user_turn(c, ts=ts(3), user_id="U1", user_name="A", text="after")
            assert [t.text for t in await store.history(c, ts(9))] == ["before", "after"]
        finally:
            await store.close()


def test_urls_are_masked_and_heroku_spelling_accepted() -> None:
    assert masked("postgresql://u:p@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert masked("postgresql://h/d") == "postgresql://h/d"
    assert normalised("postgres://u@h/d") == "postgresql://u@h/d"


def test_the_bot_stops_within_15_seconds_on_an_unreachable_database(tmp_path) -> None:
    url = f"postgresql://bot:s3cret@127.0.0.1:{free_port()}/slackbot"
    started = time.monotonic()
    proc = run_slackbot(tmp_path, {**BASE, "DATABASE_URL": url}, timeout=40)
    took = time.monotonic() - started
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "DATABASE_URL" in proc.stderr and "bot:***@" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert took < 20


def test_a_database_url_that_is_not_postgresql_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL must be a postgresql://"):
        load_settings({**BASE, "DATABASE_URL": "mysql://x@h/d"})


OWNER = """
import asyncio, sys
from slackbot.postgres_store import PostgresStore
async def main():
    store = await PostgresStore.open(sys.argv[1], instance_timeout=1.0)
    c = await store.claim_conversation(
        "E1", "C1", "1700000001.000001", team="T1", thread_root="1700000001.000001",
        idle_seconds=60, pending="{}")
    await store.claim_conversation(
        "E2", "C1", "1700000002.000002", team="T1", thread_root="1700000001.000001",
        idle_seconds=60, pending='{"second": true}')
    r = await store.begin_reply(c, answers_ts="1700000001.000001", channel="C1",
                                first_ts="1700000001.000009")
    await store.update_reply(r, text="partial", message_ts=["1700000001.000009"],
                             status="streaming")
    print("ready", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_a_silent_instances_work_is_taken_over_once_and_a_live_ones_never(
    postgres_url: str,
) -> None:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, postgres_url, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    one = await PostgresStore.open(postgres_url, instance_timeout=1.0)
    two = await PostgresStore.open(postgres_url, instance_timeout=1.0)
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
        await asyncio.sleep(1.5)  # longer than the timeout: the owner is alive, beating
        assert await one.unfinished_replies() == []
        assert await one.pending_messages(3600) == []
        proc.kill()  # kill -9: no sign-off
        await proc.wait()
        await asyncio.sleep(1.5)
        taken = await asyncio.gather(
            one.unfinished_replies(), two.unfinished_replies(), one.unfinished_replies()
        )
        assert sorted(len(t) for t in taken) == [0, 0, 1]
        [reply] = [r for t in taken for r in t]
        assert (reply.text, reply.message_ts) == ("partial", ("1700000001.000009",))
        pending = await asyncio.gather(one.pending_messages(3600), two.pending_messages(3600))
        assert sorted(len(p) for p in pending) == [0, 1]
        [message] = [m for p in pending for m in p]
        assert message.payload == '{"second": true}'  # the first one's reply was begun
        # What a live instance now owns stays its own.
        await asyncio.sleep(1.5)
        assert await two.unfinished_replies() == [] and await one.unfinished_replies() == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await one.close()
        await two.close()


async def test_a_mention_waits_while_another_instance_answers_an_earlier_one(
    postgres_url: str,
) -> None:
    one, two = await asyncio.gather(
        PostgresStore.open(postgres_url), PostgresStore.open(postgres_url)
    )
    try:
        first = await one.claim_conversation(
            "E1", "C1", ts(1), team="T1", thread_root=ts(1), idle_seconds=60, pending="{}"
        )
        second = await two.claim_conversation(
            "E2", "C1", ts(2), team="T1", thread_root=ts(1), idle_seconds=60, pending="{}"
        )
        assert first == second is not None
        waiting = asyncio.create_task(two.wait_for_earlier(second, ts(2)))
        await asyncio.sleep(0.4)
        assert not waiting.done()  # the earlier message is claimed by a live instance
        reply = await one.begin_reply(first, answers_ts=ts(1), channel="C1", first_ts=ts(3))
        await asyncio.sleep(0.4)
        assert not waiting.done()  # its reply is streaming
        await one.update_reply(reply, text="done", message_ts=[ts(3)], status="done")
        await asyncio.wait_for(waiting, 2)
        # Nothing earlier: no wait; an instance's own earlier work is its sequencer's business.
        await asyncio.wait_for(one.wait_for_earlier(first, ts(1)), 1)
        await asyncio.wait_for(two.wait_for_earlier(second, ts(2)), 1)
    finally:
        await one.close()
        await two.close()


async def test_a_stop_announced_on_one_instance_reaches_every_instance_at_once(
    postgres_url: str,
) -> None:
    one, two = await asyncio.gather(
        PostgresStore.open(postgres_url), PostgresStore.open(postgres_url)
    )
    heard: asyncio.Queue[str] = asyncio.Queue()

    async def listen() -> None:
        async for key in two.stop_requests():
            await heard.put(key)

    listening = asyncio.create_task(listen())
    try:
        await asyncio.sleep(0.5)  # LISTEN is in place
        started = time.monotonic()
        await one.announce_stop('{"channel": "D1", "thread_ts": "1.2"}')
        assert await asyncio.wait_for(heard.get(), 2) == '{"channel": "D1", "thread_ts": "1.2"}'
        assert time.monotonic() - started < 1.0
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await one.close()
        await two.close()
