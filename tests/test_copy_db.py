"""`slackbot copy-db`: a team moves from SQLite to PostgreSQL without losing its memory."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, conversation, start_harness
from fakes.slack import FakeSlack
from slackbot.cli import main
from slackbot.sqlite_store import SqliteStore
from slackbot.store import Vote


async def test_a_copied_database_carries_on_where_sqlite_left_off(
    slack: FakeSlack, claude: FakeClaude, db_path: str, postgres_url: str, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(str(__import__("pathlib").Path(db_path).parent))
    claude.default = Script(text="Paris is the capital of France.")
    harness, runner = await start_harness(slack, claude, db_path)
    try:
        root = await harness.mention("what is the capital of France?", event_id="EvOld")
        await harness.settled()
        await harness.bot.store.record_vote(Vote("T1", CHANNEL, root["ts"], "U1", "good", 1))
        await harness.bot.store.set_channel_prompt("T1", CHANNEL, "Answer in French.", user_id="U9")
    finally:
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()

    assert await asyncio.to_thread(main, ["copy-db", "--db", db_path, "--to", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "copied" in out and "conversations" in out
    with psycopg.connect(postgres_url) as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in (
                "conversations",
                "messages",
                "events",
                "usage",
                "feedback",
                "prompt_audit",
            )
        }
    assert counts == {
        "conversations": 1,
        "messages": 2,
        "events": 1,
        "usage": 1,
        "feedback": 1,
        "prompt_audit": 1,
    }

    # The bot on PostgreSQL: the old thread goes on, the old event is still known.
    claude.default = Script(text="Its population is about two million.")
    harness, runner = await start_harness(slack, claude, db_path, database_url=postgres_url)
    try:
        await harness.mention("and its population?", thread_ts=root["ts"])
        await harness.settled()
        request = claude.requests[-1]
        texts = [b["text"] for m in conversation(request) for b in m["content"]]
        assert texts[0] == "Alice: what is the capital of France?"
        assert texts[1] == "Paris is the capital of France."
        assert "Answer in French." in str(request["system"])
        before = len(claude.requests)
        message = harness.slack.messages[(CHANNEL, root["ts"])]
        await harness.deliver(message, event_id="EvOld", ignored=True)  # a late redelivery
        await harness.settled()
        assert len(claude.requests) == before
        # New rows get new ids (the sequences moved past the copied ones).
        assert len({row[0] for row in harness.query("SELECT id FROM messages")}) == 4
    finally:
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()

    # A second copy into a database that has conversations is refused, in one line.
    assert await asyncio.to_thread(main, ["copy-db", "--db", db_path, "--to", postgres_url]) == 2
    err = capsys.readouterr().err
    assert "already holds conversations" in err and err.count("\n") == 1


async def test_copy_db_refuses_while_the_bot_runs_and_names_bad_targets(
    db_path: str, postgres_url: str, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(str(__import__("pathlib").Path(db_path).parent))
    store = await SqliteStore.open(db_path)
    try:
        assert (
            await asyncio.to_thread(main, ["copy-db", "--db", db_path, "--to", postgres_url]) == 2
        )
        assert "stop it before copying" in capsys.readouterr().err
    finally:
        await store.close()
    assert await asyncio.to_thread(main, ["copy-db", "--db", db_path, "--to", "mysql://x/y"]) == 2
    assert "--to must be a postgresql://" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def no_bot_settings(monkeypatch) -> None:
    for name in ("SLACK_BOT_TOKEN", "ANTHROPIC_API_KEY", "SLACK_SIGNING_SECRET", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
