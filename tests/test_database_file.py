"""The SQLite file on disk: readable by its owner alone, served by one bot at a time."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, bot_env
from fakes.slack import FakeSlack
from slackbot.errors import AlreadyRunning
from slackbot.messages import INTERRUPTED
from slackbot.sqlite_store import SqliteStore
from tests.processes import bot_process, free_port, mention_over_http, wait_healthy

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


async def slackbot(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run `python -m slackbot` to its end: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slackbot",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_second_bot_on_the_same_database_refuses_to_start(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """Its start-up recovery would close the first one's live replies as a crash's leftovers."""
    answer = "A complete answer, " * 30
    claude.default = Script(text=answer, tokens_per_second=30)
    env = bot_env(slack, claude, db_path)
    async with bot_process(slack, claude, db_path) as (_, port):
        message, _ = await mention_over_http(slack, port, "question")
        await slack.wait_for(lambda: claude.requests, timeout=10)

        code, _, err = await slackbot({**env, "PORT": str(free_port())})
        assert (code, err) == (
            2,
            f"slackbot: another slackbot is already running on {db_path}"
            " (several instances need PostgreSQL: DATABASE_URL)\n",
        )
        # `slackbot usage` only reads: it runs beside the live bot
        code, _, err = await slackbot(env, "usage", "--since", "all")
        assert code == 0 and err == ""

        # the first bot serves on, and its reply ends as it should, not as a crash's leftover
        await wait_healthy(port)
        [reply] = slack.bot_messages(CHANNEL, message["ts"])
        await slack.wait_for(lambda: slack.final_text(CHANNEL, reply["ts"]) == answer, timeout=20)
        edits = [c.params for c in slack.calls_to("chat.update") if c.params["ts"] == reply["ts"]]
        assert not any(INTERRUPTED in str(edit) for edit in edits)


async def test_the_lock_goes_with_the_store(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    store = await SqliteStore.open(path)
    with pytest.raises(AlreadyRunning):
        await SqliteStore.open(path)
    await store.close()
    reopened = await SqliteStore.open(path)  # closed, or its process gone (kill -9 included)
    await reopened.close()
