"""Faults driven from outside: nothing lost, nothing stuck, and the bot answers the next mention.

Store failures are injected as real SQLite errors from a second connection (a trigger that
makes every matching write fail), the way another process or a full disk would make them fail:
nothing of the bot is patched.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections.abc import Iterator

import aiohttp

from fakes.claude import FakeClaude, Script, reply_text
from fakes.harness import CHANNEL, SIGNING_SECRET, Harness, start_harness
from fakes.slack import FakeSlack, event_callback, message_event, signed_event_request
from slackbot import messages
from slackbot.message_split import MESSAGE_LIMIT
from slackbot.sqlite_store import SqliteStore
from tests.processes import bot_process


@contextlib.contextmanager
def failing_writes(db_path: str, statement: str, table: str) -> Iterator[None]:
    """Every `statement` (INSERT/UPDATE/DELETE) on `table` fails while inside the block."""
    db = sqlite3.connect(db_path, isolation_level=None)
    name = f"fail_{statement.lower()}_{table}"
    db.execute(
        f"CREATE TRIGGER {name} BEFORE {statement} ON {table}"
        " BEGIN SELECT RAISE(FAIL, 'injected write error'); END"
    )
    try:
        yield
    finally:
        db.execute(f"DROP TRIGGER {name}")
        db.close()


def stored_replies(db_path: str) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return db.execute(
            "SELECT status, text FROM messages WHERE role='assistant' ORDER BY id"
        ).fetchall()


def edits_of(slack: FakeSlack, ts: str) -> int:
    return sum(1 for c in slack.calls_to("chat.update") if c.params.get("ts") == ts)


async def test_stream_ending_without_message_stop_is_marked_incomplete(
    harness: Harness, db_path: str
) -> None:
    harness.claude.default = Script(text="Half a thought that " * 10, end_after_chars=60)
    mention = await harness.mention("tell me")
    await harness.settled()
    [text] = harness.texts(CHANNEL, mention["ts"])
    assert text.startswith("Half a thought")
    assert "incomplete" in text and "broke off" in text
    assert stored_replies(db_path)[-1][0] == "incomplete"


async def test_recovery_keeps_its_note_on_a_long_reply(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """A crash left a reply whose text fills its one Slack message: the "interrupted" note
    needs a second message, which recovery posts in the thread."""
    store = await SqliteStore.open(db_path)
    root = slack.add_user_message(CHANNEL, "U1", "<@UBOT> write a lot")
    placeholder = slack.add_bot_message(CHANNEL, messages.PLACEHOLDER, thread_ts=root["ts"])
    conversation = await store.claim_conversation(
        "Ev1", CHANNEL, root["ts"], team="T1", thread_root=root["ts"], idle_seconds=0
    )
    assert conversation is not None
    reply = await store.begin_reply(
        conversation, answers_ts=root["ts"], channel=CHANNEL, first_ts=placeholder["ts"]
    )
    text = reply_text(MESSAGE_LIMIT - 10)
    await store.update_reply(reply, text=text, message_ts=[placeholder["ts"]], status="streaming")
    await store.close()

    harness, runner = await start_harness(slack, claude, db_path)
    try:
        texts = harness.texts(CHANNEL, root["ts"])
        assert len(texts) == 2
        assert texts[0].startswith(text[:200])
        assert "restarted" in texts[-1]
        assert "".join(texts).count("restarted") == 1
    finally:
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()


async def test_write_errors_mid_stream_never_abandon_a_reply(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """Checkpoints and the final store write fail for a while: every reply is still finished in
    Slack, stored once the store recovers, and later replies still stream progress edits (no
    budget slot leaked)."""
    answer = reply_text(400)
    claude.default = Script(text=answer, tokens_per_second=40)
    harness, runner = await start_harness(
        slack, claude, db_path, edit_budget_per_minute=600.0, edit_burst=20
    )
    try:
        with failing_writes(db_path, "UPDATE", "messages"):
            mentions = [await harness.mention(f"question {n}") for n in range(5)]
            await slack.wait_for(
                lambda: all(harness.texts(CHANNEL, m["ts"]) == [answer] for m in mentions),
                timeout=20,
            )
        await harness.settled(timeout=30)
        statuses = [status for status, _ in stored_replies(db_path)]
        assert statuses == ["done"] * 5

        claude.default = Script(text=reply_text(600), tokens_per_second=60)
        later = await harness.mention("and now?")
        await harness.settled()
        [reply] = harness.replies(CHANNEL, later["ts"])
        assert edits_of(slack, reply["ts"]) >= 3  # progress edits, then the final
    finally:
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()


async def test_a_finished_reply_whose_store_write_failed_is_not_taken_for_interrupted(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="The whole answer.")
    harness, runner = await start_harness(slack, claude, db_path)
    try:
        with failing_writes(db_path, "UPDATE", "messages"):
            mention = await harness.mention("hi")
            await slack.wait_for(
                lambda: harness.texts(CHANNEL, mention["ts"]) == ["The whole answer."]
            )
        await harness.settled(timeout=30)
    finally:
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()
    again, runner = await start_harness(slack, claude, db_path)  # a restart: recovery runs
    try:
        assert again.texts(CHANNEL, mention["ts"]) == ["The whole answer."]
    finally:
        await runner.cleanup()
        await again.close()
        await again.bot.close()


async def test_a_store_failure_at_the_claim_gets_a_note_not_silence(
    harness: Harness, db_path: str
) -> None:
    with failing_writes(db_path, "INSERT", "events"):
        mention = await harness.mention("are you there?")
        await harness.settled()
    [text] = harness.texts(CHANNEL, mention["ts"])
    assert text == messages.STORE_FAILED
    assert not harness.claude.requests  # nothing spent on an answer that can't be kept

    after = await harness.mention("and now?")
    await harness.settled()
    assert harness.texts(CHANNEL, after["ts"]) == ["Hello from fake Claude."]


async def test_a_crash_right_after_the_ack_loses_no_mention(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """Mentions are acknowledged, then the bot is SIGKILLed at once: the next start answers
    every one of them, and leaves no placeholder saying "Thinking…"."""
    claude.default = Script(text="An answer.", ttft=0.2)
    async with bot_process(slack, claude, db_path) as (proc, port):
        mentions = [slack.add_user_message(CHANNEL, "U1", f"<@UBOT> q{n}") for n in range(30)]
        url = f"http://127.0.0.1:{port}/slack/events"
        async with aiohttp.ClientSession() as session:

            async def deliver(message: dict[str, object]) -> int:
                payload = event_callback(message_event(message, type="app_mention"))
                body, headers = signed_event_request(SIGNING_SECRET, payload)
                async with session.post(url, data=body, headers=headers) as response:
                    return response.status

            statuses = await asyncio.gather(*(deliver(m) for m in mentions))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert statuses == [200] * 30

    harness, runner = await start_harness(slack, claude, db_path)
    try:

        def all_answered() -> bool:
            return all(
                (texts := harness.texts(CHANNEL, m["ts"]))
                and not any("Thinking" in t for t in texts)
                for m in mentions
            )

        await slack.wait_for(all_answered, timeout=30)
        for m in mentions:
            texts = harness.texts(CHANNEL, m["ts"])
            assert texts in (["An answer."], [messages.incomplete(messages.INTERRUPTED)])
    finally:
        await harness.settled()
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()
