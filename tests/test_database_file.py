"""The SQLite file on disk: readable by its owner alone."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from slackbot.sqlite_store import SqliteStore

FILES = ("", "-wal", "-shm")


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common umask 022, under which new files are readable by everyone."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(path: str) -> dict[str, int]:
    return {suffix: stat.S_IMODE(os.stat(path + suffix).st_mode) for suffix in FILES}


async def test_a_new_database_and_its_wal_files_are_private(
    tmp_path: Path, usual_umask: None
) -> None:
    path = str(tmp_path / "x.db")
    store = await SqliteStore.open(path)
    try:
        await store.claim_event("E1", "C1", "1700000000.000001")
        assert modes(path) == dict.fromkeys(FILES, 0o600)
    finally:
        await store.close()


async def test_an_existing_readable_database_is_made_private(
    tmp_path: Path, usual_umask: None
) -> None:
    path = str(tmp_path / "x.db")
    other = sqlite3.connect(path)  # open meanwhile: its -wal and -shm files exist
    try:
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("CREATE TABLE t (x)")
        other.commit()
        assert modes(path) == dict.fromkeys(FILES, 0o644)
        store = await SqliteStore.open(path)
        try:
            assert modes(path) == dict.fromkeys(FILES, 0o600)
        finally:
            await store.close()
    finally:
        other.close()
