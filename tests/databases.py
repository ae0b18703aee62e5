"""A database on either backend for tests that run on both: its source string (the SQLite
file's path or the PostgreSQL URL, as the CLI takes them), a store opened on it, and rows read
from outside the store."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg

from slackbot.db_read import is_postgres, to_pyformat
from slackbot.postgres_store import PostgresStore
from slackbot.sqlite_store import SqliteStore
from slackbot.store import Store


async def open_at(source: str) -> Store:
    if is_postgres(source):
        return await PostgresStore.open(source)
    return await SqliteStore.open(source)


def rows_at(source: str, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Rows as dicts (`?` placeholders)."""
    if is_postgres(source):
        with psycopg.connect(source) as conn:
            cur = conn.execute(to_pyformat(sql), params)
            names = [c.name for c in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    with contextlib.closing(sqlite3.connect(source)) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, params).fetchall()]


def execute_at(source: str, sql: str, params: Sequence[Any] = ()) -> None:
    """One write from outside the store (`?` placeholders), committed."""
    if is_postgres(source):
        with psycopg.connect(source) as conn:
            conn.execute(to_pyformat(sql), params)
        return
    with contextlib.closing(sqlite3.connect(source)) as db:
        db.execute(sql, params)
        db.commit()
