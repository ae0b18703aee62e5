"""Retention and deletions: idle conversations purged (at start, daily, on demand), deleted
messages erased from the store and edited ones updated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, DM, Harness, conversation, make_settings, start_harness
from fakes.slack import FakeSlack
from slackbot import retention
from slackbot.cli import main
from slackbot.events import Incoming
from slackbot.server import create_bot, prepare
from slackbot.sqlite_store import SqliteStore
from slackbot.store import StoredDocument, StoredImage, UsageRecord
from tests.databases import execute_at, open_at, rows_at

DAY = 86400


async def purge(*args: str) -> int:
    """`slackbot purge …` (a command with its own event loop: run beside the test's)."""
    return await asyncio.to_thread(main, ["purge", *args])


def ts(n: int) -> str:
    return f"{1_700_000_000 + n}.{n:06d}"


async def seed(path: str) -> None:
    """Two conversations: an old one (a thread with an image, a document and a reply, and a
    pending message) and a recent one (a DM)."""
    store = await open_at(path)
    old = await store.thread_conversation("T1", "C1", ts(1))
    await store.add_user_turn(
        old,
        ts=ts(1),
        user_id="U1",
        user_name="Alice",
        text="an old secret",
        images=[StoredImage("image/png", "AAAA", "a.png")],
        documents=[StoredDocument("text", "text/plain", "notes", "n.txt", 5, None, 5)],
    )
    reply = await store.begin_reply(old, answers_ts=ts(1), channel="C1", first_ts=ts(2))
    await store.update_reply(reply, text="an old answer", message_ts=[ts(2)], status="done")
    await store.record_usage(
        UsageRecord(reply, old, "T1", "C1", "U1", "claude-sonnet-5-5", "sonnet", 10, 5)
    )
    await store.claim_conversation(
        "E9",
        "C1",
        ts(3),
        team="T1",
        thread_root=ts(1),
        idle_seconds=0,
        pending=Incoming("T1", "C1", ts(3), "U1", "x", thread_ts=ts(1)).to_json(),
    )
    new = await store.dm_conversation("T1", "D1", ts(4), idle_seconds=3600)
    await store.add_user_turn(new, ts=ts(4), user_id="U1", user_name="Alice", text="recent")
    await store.close()
    long_ago = time.time() - 40 * DAY
    execute_at(path, "UPDATE conversations SET created_at=? WHERE id=?", [long_ago, old])
    execute_at(path, "UPDATE messages SET created_at=? WHERE conversation_id=?", [long_ago, old])
    execute_at(path, "UPDATE pending SET received_at=?", [long_ago])


def table(path: str, sql: str) -> list[tuple]:
    return [tuple(row.values()) for row in rows_at(path, sql)]


def texts(path: str) -> list[str]:
    """The stored turns' texts in the conversation's order (each reply after its message)."""
    sql = "SELECT text FROM messages ORDER BY sort_ts, role='assistant', id"
    return [row[0] for row in table(path, sql)]


def assert_old_one_gone(path: str) -> None:
    assert texts(path) == ["recent"]
    assert table(path, "SELECT channel FROM conversations") == [("D1",)]
    for name in ("images", "documents", "pending"):
        assert table(path, f"SELECT * FROM {name}") == []
    # usage stays (it feeds the limits and `slackbot usage`), without its links
    assert table(path, "SELECT message_id, conversation_id, input_tokens FROM usage") == [
        (None, None, 10)
    ]


async def test_purge_dry_run_then_for_real(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    db_path = source  # a SQLite file, then a PostgreSQL URL
    await seed(db_path)
    assert await purge("--older-than", "30d", "--dry-run", "--db", db_path) == 0
    printed = capsys.readouterr().out
    assert "Would remove 1 conversation(s) idle for more than 30d" in printed
    assert f"C1  thread {ts(1)}: 2 message(s), 2 file(s)" in printed
    assert len(texts(db_path)) == 3  # nothing removed

    assert await purge("--older-than", "30d", "--db", db_path) == 0
    assert "Removed 1 conversation(s)" in capsys.readouterr().out
    assert_old_one_gone(db_path)

    assert await purge("--older-than", "30d", "--db", db_path) == 0
    assert "nothing removed" in capsys.readouterr().out
    assert await purge("--older-than", "0d", "--db", db_path) == 0  # everything idle now
    assert "Removed 1 conversation(s)" in capsys.readouterr().out
    assert texts(db_path) == []


@pytest.mark.parametrize("age", ["30", "2w", "-1d", "all"])
def test_purge_refuses_a_bad_age(db_path: str, age: str, capsys) -> None:
    assert main(["purge", f"--older-than={age}", "--db", db_path]) == 2
    assert "--older-than must look like 30d" in capsys.readouterr().err


def test_ages() -> None:
    assert retention.parse_age("30d") == 30 * DAY
    assert retention.parse_age("12h") == 12 * 3600
    assert retention.parse_age("90m") == 90 * 60
    assert retention.parse_age("0d") == 0


async def test_purge_refuses_while_the_bot_runs(db_path: str, capsys) -> None:
    store = await SqliteStore.open(db_path)
    try:
        assert await purge("--older-than", "1d", "--db", db_path) == 2
        assert "the bot is running on this database" in capsys.readouterr().err
    finally:
        await store.close()


async def test_retention_at_start_and_daily(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    await seed(db_path)
    settings = make_settings(slack, claude, db_path, retention_days=30.0)
    bot = await create_bot(settings, anthropic_max_retries=0)
    try:
        await prepare(bot)
        assert_old_one_gone(db_path)
        # and again while running: the DM ages past the limit, the next round removes it
        pruning = asyncio.create_task(retention.keep_pruning(bot.store, 30.0, every=0.05))
        try:
            execute_at(db_path, "UPDATE conversations SET created_at=0")
            execute_at(db_path, "UPDATE messages SET created_at=0")
            await slack.wait_for(lambda: texts(db_path) == [], timeout=5)
        finally:
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
    finally:
        await bot.close()


async def test_no_retention_keeps_everything(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    await seed(db_path)
    bot = await create_bot(make_settings(slack, claude, db_path), anthropic_max_retries=0)
    try:
        await prepare(bot)
        assert len(texts(db_path)) == 3
    finally:
        await bot.close()


# -- deleted and edited messages ------------------------------------------------------------


@pytest.fixture
async def dm_conversation(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> AsyncIterator[Harness]:
    """SLACKBOT_DM_MODE=conversation: a DM's top-level messages are one running conversation."""
    h, runner = await start_harness(slack, claude, db_path, dm_mode="conversation")
    try:
        yield h
    finally:
        await h.settled()
        await runner.cleanup()
        await h.close()
        await h.bot.close()


async def test_a_deleted_dm_message_and_its_reply_are_erased(dm_conversation: Harness) -> None:
    harness = dm_conversation
    harness.claude.default = Script(text="Noted: you are in Lisbon.")
    secret = await harness.dm("I'm in Lisbon this week")
    await harness.settled()
    harness.claude.default = Script(text="Hi again.")
    await harness.dm("hello")
    await harness.settled()
    path = harness.bot.store.path
    assert len(texts(path)) == 4

    await harness.revise(harness.slack.delete_message(DM, secret["ts"]))
    assert texts(path) == ["hello", "Hi again."]
    await harness.dm("where am I?")
    await harness.settled()
    sent = str(conversation(harness.claude.requests[-1]))
    assert "Lisbon" not in sent and "Hi again." in sent
    assert len(harness.claude.requests) == 3  # the deletion was not answered


async def test_an_edited_dm_message_updates_the_stored_turn(dm_conversation: Harness) -> None:
    harness = dm_conversation
    question = await harness.dm("what is 2+2?")
    await harness.settled()
    posts = len(harness.slack.calls_to("chat.postMessage"))
    await harness.revise(harness.slack.edit_message(DM, question["ts"], "what is <@U2> + 3?"))
    assert texts(harness.bot.store.path)[0] == "what is @Bob + 3?"
    assert len(harness.claude.requests) == 1  # not answered again
    assert len(harness.slack.calls_to("chat.postMessage")) == posts

    await harness.dm("and?")
    await harness.settled()
    first = conversation(harness.claude.requests[-1])[0]["content"][0]["text"]
    assert first == "Alice: what is @Bob + 3?"


async def test_the_bots_own_edits_and_deletions_are_not_followed(harness: Harness) -> None:
    await harness.dm("hello")
    await harness.settled()
    (reply,) = harness.replies(DM, None)
    path = harness.bot.store.path
    before = texts(path)
    changed = {
        "type": "message",
        "subtype": "message_changed",
        "channel": DM,
        "ts": harness.slack.next_ts(),
        "message": {"user": "UBOT", "bot_id": "BBOT", "text": "changed", "ts": reply["ts"]},
        "previous_message": {"user": "UBOT", "bot_id": "BBOT", "text": "x", "ts": reply["ts"]},
    }
    await harness.revise(changed)
    deleted = {
        "type": "message",
        "subtype": "message_deleted",
        "channel": DM,
        "ts": harness.slack.next_ts(),
        "deleted_ts": reply["ts"],
        "previous_message": {"user": "UBOT", "bot_id": "BBOT", "text": "x", "ts": reply["ts"]},
    }
    await harness.revise(deleted)
    assert texts(path) == before


async def test_channel_messages_follow_when_subscribed(harness: Harness) -> None:
    root = await harness.mention("first in the thread")
    await harness.settled()
    await harness.revise(
        harness.slack.edit_message(CHANNEL, root["ts"], "<@UBOT> edited in the thread"),
        channel_type="channel",
    )
    path = harness.bot.store.path
    people = "SELECT text FROM messages WHERE role='user'"
    assert table(path, people) == [("edited in the thread",)]
    await harness.revise(harness.slack.delete_message(CHANNEL, root["ts"]), channel_type="channel")
    assert table(path, "SELECT text FROM messages") == []
