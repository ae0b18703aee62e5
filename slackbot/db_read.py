"""Read-only queries for the CLI's reports (`slackbot usage`, `feedback`, …), on either backend.

The reports run beside a live bot and never write, so they skip the store (its lock, its
migrations, its thread) and read the database directly: SQLite opened read-only, or
PostgreSQL in a read-only transaction. Queries are written once, in the SQL both accept, with
`?` placeholders.
"""

from __future__ import annotations

import contextlib
import decimal
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from slackbot.errors import UsageError


class Reader(Protocol):
    def has_table(self, name: str) -> bool: ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


def to_pyformat(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a `?` or `%` inside a quoted literal stays what it
    is: `%` is doubled, as psycopg wants it)."""
    out: list[str] = []
    quoted = False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def is_postgres(source: str) -> bool:
    return source.startswith(("postgresql://", "postgres://"))


@contextlib.contextmanager
def reading(source: str) -> Iterator[Reader]:
    """A reader on `source`: a SQLite file's path, or a PostgreSQL URL. Problems are one-line
    `UsageError`s (no such file, cannot connect, cannot read)."""
    if is_postgres(source):
        with _postgres(source) as reader:
            yield reader
    else:
        with _sqlite(source) as reader:
            yield reader


class _SqliteReader:
    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn, self.path = conn, path

    def has_table(self, name: str) -> bool:
        found = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", [name]
        ).fetchone()
        return found is not None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise UsageError(f"cannot read {self.path}: {exc}") from None


@contextlib.contextmanager
def _sqlite(path: str) -> Iterator[Reader]:
    if not Path(path).exists():
        raise UsageError(f"no database at {path}: set SLACKBOT_DB to the bot's database")
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        conn.execute("PRAGMA busy_timeout=5000")
    except sqlite3.Error as exc:
        raise UsageError(f"cannot open {path}: {exc}") from None
    try:
        yield _SqliteReader(conn, path)
    finally:
        conn.close()


class _PostgresReader:
    def __init__(self, conn: Any, where: str) -> None:
        self.conn, self.where = conn, where

    def has_table(self, name: str) -> bool:
        found = self.conn.execute("SELECT to_regclass(%s)", [name]).fetchone()
        return found is not None and found[0] is not None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            found = self.conn.execute(to_pyformat(sql), params).fetchall()
        except psycopg.Error as exc:
            raise UsageError(f"cannot read {self.where}: {str(exc).strip()}") from None
        # SUM() of a BIGINT is NUMERIC here (a Decimal), an integer on SQLite: the same numbers
        # come back as the same Python types.
        return [tuple(_plain(value) for value in row) for row in found]


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@contextlib.contextmanager
def _postgres(url: str) -> Iterator[Reader]:
    import psycopg

    from slackbot.postgres_store import ATTEMPT_SECONDS, masked, normalised

    where = masked(url)
    try:
        conn = psycopg.connect(normalised(url), connect_timeout=ATTEMPT_SECONDS)
    except psycopg.Error as exc:
        reason = masked(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        raise UsageError(f"DATABASE_URL: cannot reach {where} ({reason})") from None
    try:
        conn.read_only = True
        yield _PostgresReader(conn, where)
    finally:
        conn.close()
