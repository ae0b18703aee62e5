"""Feedback: 👍/👎 under finished replies, votes kept once per person and message, the 👎
modal's reason, and `slackbot feedback` — all through the real Bolt app over signed HTTP."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import sqlite_utils

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, DM, Harness, make_settings
from fakes.slack import FakeSlack, FakeSocketModeServer, event_callback, message_event
from slackbot import feedback
from slackbot.cli import main
from slackbot.feedback_report import report
from slackbot.migrations import migrations
from slackbot.server import create_bot, prepare, start_socket_mode
from slackbot.sqlite_store import SqliteStore
from slackbot.store import Vote
from tests.databases import open_at, rows_at
from tests.test_end_to_end import long_markdown
from tests.test_store import old_database


def votes(source: str) -> list[dict[str, Any]]:
    return rows_at(source, "SELECT * FROM feedback ORDER BY created_at")


def reply_ids(db_path: str) -> list[int]:
    conn = sqlite3.connect(db_path)
    try:
        return [r[0] for r in conn.execute("SELECT id FROM messages WHERE role='assistant'")]
    finally:
        conn.close()


def reason_values(text: str) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        feedback.REASON_BLOCK_ID: {
            feedback.REASON_ACTION_ID: {"type": "plain_text_input", "value": text}
        }
    }


async def answered(harness: Harness, text: str = "A fine answer.") -> tuple[str, str]:
    """A mention answered with `text`; returns (the mention's ts, the reply's last ts)."""
    harness.claude.default = Script(text=text)
    mention = await harness.mention("a question")
    await harness.settled()
    return mention["ts"], harness.replies(CHANNEL, mention["ts"])[-1]["ts"]


async def test_a_finished_reply_carries_feedback_buttons(harness: Harness) -> None:
    root, ts = await answered(harness, "**Yes**, that works.")
    assert harness.texts(CHANNEL, root) == ["**Yes**, that works."]
    buttons = harness.slack.feedback_buttons(CHANNEL, ts)
    assert buttons is not None and buttons["action_id"] == feedback.ACTION_ID
    good = json.loads(buttons["positive_button"]["value"])
    bad = json.loads(buttons["negative_button"]["value"])
    [reply_id] = reply_ids(harness.bot.store.path)
    model = harness.claude.requests[0]["model"]
    assert good == {"vote": "good", "reply": reply_id, "model": model}
    assert bad == {**good, "vote": "bad"}
    # the final edit carries the text in a markdown block beside the buttons (no markdown_text)
    final = harness.slack.calls_to("chat.update")[-1].params
    assert "markdown_text" not in final
    assert final["blocks"][0] == {"type": "markdown", "text": "**Yes**, that works."}
    assert final["text"] == "**Yes**, that works."


async def test_a_long_reply_carries_them_on_its_last_message_only(harness: Harness) -> None:
    harness.claude.default = Script(text=long_markdown(30_000), chars_per_token=40)
    mention = await harness.mention("write a lot")
    await harness.settled(timeout=30)
    messages = harness.replies(CHANNEL, mention["ts"])
    assert len(messages) >= 3
    with_buttons = [m["ts"] for m in messages if harness.slack.feedback_buttons(CHANNEL, m["ts"])]
    assert with_buttons == [messages[-1]["ts"]]
    assert all(len(t) <= feedback.MARKDOWN_BLOCK_LIMIT for t in harness.texts(CHANNEL, None))


async def test_error_notes_and_refusals_carry_none(harness: Harness) -> None:
    harness.claude.fail_next(529)
    failed = await harness.mention("hello?")
    await harness.settled()
    harness.claude.queue.append(Script(text="Half of an answer " * 20, break_after_chars=100))
    broken = await harness.mention("again")
    await harness.settled()
    harness.claude.queue.append(Script(text="I can't help with that.", stop_reason="refusal"))
    refused = await harness.mention("something bad")
    await harness.settled()
    for root in (failed, broken, refused):
        [message] = harness.replies(CHANNEL, root["ts"])
        assert harness.slack.feedback_buttons(CHANNEL, message["ts"]) is None
        assert "Thinking" not in harness.slack.final_text(CHANNEL, message["ts"])
    # and a normal reply after them still gets its buttons
    _, ts = await answered(harness)
    assert harness.slack.feedback_buttons(CHANNEL, ts) is not None


async def test_a_dm_reply_carries_them_too(harness: Harness) -> None:
    harness.claude.default = Script(text="Hi there.")
    await harness.dm("hello")
    await harness.settled()
    [message] = harness.replies(DM, None)
    assert harness.slack.feedback_buttons(DM, message["ts"]) is not None


async def test_a_click_is_acknowledged_at_once_and_stored_once(harness: Harness) -> None:
    _, ts = await answered(harness)
    harness.slack.delay("views.open", 1.0)  # work beside the ack must not hold it up
    started = time.monotonic()
    status, body = await harness.click_feedback(CHANNEL, ts, user="U2", good=True)
    assert status == 200 and body == b""
    assert time.monotonic() - started < 0.5
    await harness.slack.wait_for(lambda: len(votes(harness.bot.store.path)) == 1)
    # Slack resends a click on an already-selected button; then the person switches
    await harness.click_feedback(CHANNEL, ts, user="U2", good=True)
    status, _ = await harness.click_feedback(CHANNEL, ts, user="U2", good=False)
    assert status == 200
    await harness.slack.wait_for(
        lambda: [r["vote"] for r in votes(harness.bot.store.path)] == ["bad"]
    )
    [row] = votes(harness.bot.store.path)
    [reply_id] = reply_ids(harness.bot.store.path)
    assert row["team"] == "T1" and row["channel"] == CHANNEL and row["message_ts"] == ts
    assert row["user_id"] == "U2" and row["reply_id"] == reply_id
    assert row["model"] == harness.claude.requests[0]["model"]
    # another person's vote on the same reply is a row of its own
    await harness.click_feedback(CHANNEL, ts, user="U1", good=True)
    await harness.slack.wait_for(lambda: len(votes(harness.bot.store.path)) == 2)
    await harness.slack.wait_for(lambda: len(harness.slack.calls_to("views.open")) == 1)


async def test_thumbs_down_opens_a_modal_whose_answer_is_kept(harness: Harness) -> None:
    _, ts = await answered(harness)
    status, _ = await harness.click_feedback(CHANNEL, ts, user="U1", good=False)
    assert status == 200
    opened = await harness.slack.wait_for(lambda: harness.slack.calls_to("views.open"))
    assert opened[0].error is None
    [view_id] = harness.slack.views
    view = harness.slack.views[view_id]
    assert view["callback_id"] == feedback.REASON_CALLBACK_ID and view["user"] == "U1"
    assert len(view["title"]["text"]) <= 24

    status, body = await harness.submit_view(view_id, reason_values("It missed the point."))
    assert status == 200 and body == b""  # an empty answer closes the modal
    await harness.slack.wait_for(
        lambda: [r["reason"] for r in votes(harness.bot.store.path)] == ["It missed the point."]
    )
    [row] = votes(harness.bot.store.path)
    assert row["vote"] == "bad" and row["message_ts"] == ts and row["user_id"] == "U1"

    # switching to 👍 drops the reason; no modal for a 👍
    await harness.click_feedback(CHANNEL, ts, user="U1", good=True)
    await harness.slack.wait_for(
        lambda: [r["vote"] for r in votes(harness.bot.store.path)] == ["good"]
    )
    assert votes(harness.bot.store.path)[0]["reason"] is None
    assert len(harness.slack.calls_to("views.open")) == 1


async def test_an_expired_trigger_keeps_the_vote(harness: Harness) -> None:
    _, ts = await answered(harness)
    harness.slack.fail_next("views.open", "expired_trigger_id")
    await harness.click_feedback(CHANNEL, ts, user="U1", good=False)
    await harness.slack.wait_for(lambda: harness.slack.calls_to("views.open"))
    await harness.slack.wait_for(lambda: votes(harness.bot.store.path))
    assert votes(harness.bot.store.path)[0]["vote"] == "bad"


async def test_unsigned_or_forged_clicks_are_refused(harness: Harness) -> None:
    _, ts = await answered(harness)
    payload = harness.slack.feedback_click(CHANNEL, ts, user="U1", good=False)
    status, _ = await harness.post_interaction(payload, secret="not-the-secret")
    assert status == 401
    # a click whose value isn't ours is acknowledged and ignored
    payload["actions"][0]["value"] = "drop table"
    status, _ = await harness.post_interaction(payload)
    assert status == 200
    await harness.settled()
    assert votes(harness.bot.store.path) == []
    assert harness.slack.calls_to("views.open") == []


async def test_store_keeps_one_row_per_person_and_message(source: str) -> None:
    store = await open_at(source)
    try:
        vote = Vote("T1", "C1", "1.000001", "U1", "bad", reply_id=7, model="claude-x")
        await store.record_vote_reason(vote, "too long")  # the reason can land first
        await store.record_vote(vote)
        assert [(r["vote"], r["reason"]) for r in votes(source)] == [("bad", "too long")]
        await store.record_vote(Vote("T1", "C1", "1.000001", "U1", "good"))
        [row] = votes(source)
        assert (row["vote"], row["reason"], row["reply_id"], row["model"]) == (
            "good",
            None,
            7,
            "claude-x",
        )
    finally:
        await store.close()


# -- slackbot feedback ----------------------------------------------------------------------


async def seeded(db_path: str) -> None:
    store = await open_at(db_path)
    try:
        await store.record_vote(Vote("T1", "C1", "1.1", "U1", "good", 1, "claude-sonnet-5-5"))
        await store.record_vote(Vote("T1", "C1", "1.1", "U2", "good", 1, "claude-sonnet-5-5"))
        await store.record_vote_reason(
            Vote("T1", "C2", "2.2", "U1", "bad", 2, "claude-opus-5-5"), "Wrong   year\ngiven."
        )
        await store.record_vote(Vote("T1", "C2", "3.3", "U2", "bad", 3, "claude-sonnet-5-5"))
    finally:
        await store.close()


async def test_feedback_report_counts_per_group_with_latest_reasons(source: str) -> None:
    await seeded(source)
    text = report(source, since_text="7d", by="model")
    lines = text.splitlines()
    assert lines[0].split() == ["model", "👍", "👎", "👎", "share"]
    assert lines[2].split() == ["claude-sonnet-5-5", "2", "1", "33%"]
    assert lines[3].split() == ["claude-opus-5-5", "0", "1", "100%"]
    assert lines[5].split() == ["total", "2", "2", "50%"]
    assert "Latest 👎 reasons" in text
    assert "C2  U1  claude-opus-5-5" in text and "  Wrong year given." in text

    by_user = report(source, since_text="all", by="user")
    assert any(line.split() == ["U2", "1", "1", "50%"] for line in by_user.splitlines())
    by_channel = report(source, since_text="30m", by="channel")
    assert any(line.split() == ["C1", "2", "0", "0%"] for line in by_channel.splitlines())


async def test_feedback_command_reads_only_the_database(db_path: str, capsys, monkeypatch) -> None:
    for name in ("SLACK_BOT_TOKEN", "ANTHROPIC_API_KEY", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(str(__import__("pathlib").Path(db_path).parent))
    await seeded(db_path)
    assert main(["feedback", "--db", db_path, "--since", "24h", "--by", "channel"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["channel", "👍", "👎"]
    assert "Wrong year given." in out
    assert main(["feedback", "--db", db_path, "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err
    empty = str(__import__("pathlib").Path(db_path).with_name("empty.db"))
    store = await SqliteStore.open(empty)
    await store.close()
    assert main(["feedback", "--db", empty]) == 0
    assert "No feedback recorded" in capsys.readouterr().out


def test_feedback_table_schema() -> None:
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    assert db["feedback"].columns_dict == {
        "team": str,
        "channel": str,
        "message_ts": str,
        "user_id": str,
        "reply_id": int,
        "model": str,
        "vote": str,
        "reason": str,
        "created_at": float,
        "updated_at": float,
    }
    assert db["feedback"].pks == ["team", "channel", "message_ts", "user_id"]


async def test_upgrade_adds_feedback_to_an_existing_database(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    old_database(path, stop_before="m012_create_feedback")
    store = await SqliteStore.open(path)
    try:
        await store.record_vote(Vote("T1", "C1", "1.1", "U1", "good"))
    finally:
        await store.close()
    assert [r["vote"] for r in votes(path)] == ["good"]


async def test_a_click_over_socket_mode_is_acked_and_kept(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async with FakeSocketModeServer() as socket_server:
        slack.socket_url = socket_server.url
        settings = make_settings(slack, claude, db_path, slack_app_token=slack.app_token)
        bot = await create_bot(settings, anthropic_max_retries=0)
        await prepare(bot)
        handler = await start_socket_mode(bot)
        try:
            await socket_server.wait_connected()
            message = slack.add_user_message(CHANNEL, "U1", "<@UBOT> hello over a socket")
            await socket_server.push(event_callback(message_event(message, type="app_mention")))
            [reply] = await slack.wait_for(
                lambda: [
                    m
                    for m in slack.bot_messages(CHANNEL, message["ts"])
                    if slack.feedback_buttons(CHANNEL, m["ts"])
                ]
            )
            click = slack.feedback_click(CHANNEL, reply["ts"], user="U2", good=False)
            envelope = await socket_server.push(click, type="interactive")
            await socket_server.wait_ack(envelope)
            await slack.wait_for(lambda: slack.calls_to("views.open"))
            await slack.wait_for(lambda: votes(db_path))
            [view_id] = slack.views
            submitted = slack.view_submission_payload(view_id, reason_values("Too vague."))
            await socket_server.wait_ack(await socket_server.push(submitted, type="interactive"))
            await slack.wait_for(lambda: votes(db_path)[0]["reason"] == "Too vague.")
            assert votes(db_path)[0]["user_id"] == "U2"
        finally:
            await handler.close_async()
            await bot.close()
