"""`slackbot copy-db --to postgresql://…`: move a team's memory from SQLite to PostgreSQL.

The SQLite file's lock is taken (a running bot holds it: then the copy is refused) and kept
to the end; the file is brought to the current schema by the shared migrations, then every
table the two schemas share is copied into the empty PostgreSQL database in one transaction
(`COPY`, so a large history moves in seconds), ids and all, and each id sequence is moved past
the copied ids. Processed events come along, so an old event Slack redelivers is still recognised. A
target that already holds conversations is refused: merging two memories is not a copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlite_utils

from slackbot.errors import AlreadyRunning, UsageError
from slackbot.migrations import migrations
from slackbot.postgres_store import ATTEMPT_SECONDS, PostgresStore, masked, normalised
from slackbot.sqlite_store import lock_out_others

#: Tables copied before the others, parents before the rows that point at them.
FIRST = ("conversations", "messages", "images", "documents")
#: Not copied: each backend's own bookkeeping, and the instances of the database it came from.
SKIPPED = ("instances", "slackbot_migrations")


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def copy_db(sqlite_path: str, url: str) -> list[Copied]:
    """Copy everything; the rows copied per table. Problems are one-line `UsageError`s.

    The SQLite file's lock is held from before its migration to the end of the copy, so a bot
    started meanwhile refuses to start instead of writing into a half-copied memory."""
    try:
        lock = lock_out_others(sqlite_path)
    except AlreadyRunning:
        raise UsageError(
            f"the bot is running on {sqlite_path}: stop it before copying its database"
        ) from None
    try:
        return _copy_all(sqlite_path, url)
    finally:
        if lock is not None:
            os.close(lock)


def _copy_all(sqlite_path: str, url: str) -> list[Copied]:
    with contextlib.closing(sqlite_utils.Database(sqlite_path)) as db:
        migrations.apply(db)  # the file brought to the current schema, as a start would
    asyncio.run(_create_target(url))
    with contextlib.closing(sqlite3.connect(sqlite_path)) as source:
        source_tables = _sqlite_tables(source)
        try:
            target = psycopg.connect(normalised(url), connect_timeout=ATTEMPT_SECONDS)
        except psycopg.Error as exc:
            raise UsageError(f"cannot reach {masked(url)}: {_first_line(exc)}") from None
        with target:
            target_tables = _postgres_tables(target)
            tables = [t for t in FIRST if t in source_tables and t in target_tables]
            tables += sorted((source_tables & target_tables.keys()) - set(FIRST) - set(SKIPPED))
            with target.transaction():
                if target.execute("SELECT 1 FROM conversations LIMIT 1").fetchone():
                    raise UsageError(
                        f"{masked(url)} already holds conversations: copy-db fills an empty"
                        " database only"
                    )
                return [_copy(source, target, table, target_tables[table]) for table in tables]


async def _create_target(url: str) -> None:
    """The PostgreSQL schema created (unreachable: `ConfigError`, one line)."""
    target = await PostgresStore.open(url, register=False)
    await target.close()


def _copy(
    source: sqlite3.Connection, target: psycopg.Connection[Any], table: str, columns: list[str]
) -> Copied:
    have = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
    shared = [c for c in have if c in columns]
    names = ", ".join(shared)
    rows = 0
    with target.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in source.execute(f"SELECT {names} FROM {table}"):
            copy.write_row(row)
            rows += 1
    if "id" in shared:  # the next id the bot makes comes after the copied ones
        target.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            f" COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}"
        )
    return Copied(table, rows)


def _sqlite_tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    return {name for (name,) in rows if not name.startswith(("_", "sqlite_"))}


def _postgres_tables(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for table, column in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        tables.setdefault(table, []).append(column)
    return tables


def describe(copied: list[Copied], url: str) -> str:
    lines = [f"{c.table:<16} {c.rows:>9,}" for c in copied]
    total = sum(c.rows for c in copied)
    return "\n".join([*lines, f"copied {total:,} rows into {masked(url)}"])


def _first_line(exc: BaseException) -> str:
    text = masked(str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__
