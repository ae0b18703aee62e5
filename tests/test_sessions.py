"""Sessions, status and Stop through the real bot: DM modes, agent-session status and its
fallback, Slack's Stop event, the Stop button, recovery after a crash, bad settings."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from fakes.claude import FakeClaude, Script, reply_text
from fakes.harness import CHANNEL, DM, Harness, conversation, start_harness
from fakes.slack import FakeSlack
from slackbot import messages
from slackbot.config import load_settings
from slackbot.errors import ConfigError
from slackbot.sqlite_store import SqliteStore
from slackbot.stopping import STOP_ACTION, stop_block


@contextlib.asynccontextmanager
async def bot(
    slack: FakeSlack, claude: FakeClaude, db_path: str, **overrides: Any
) -> AsyncIterator[Harness]:
    h, runner = await start_harness(slack, claude, db_path, **overrides)
    try:
        yield h
        await h.settled(timeout=20)
    finally:
        await runner.cleanup()
        await h.close()
        await h.bot.close()


def usage_rows(db_path: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return db.execute(
            "SELECT input_tokens, output_tokens, stop_reason FROM usage ORDER BY id"
        ).fetchall()


def reply_statuses(db_path: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute("SELECT status FROM messages WHERE role='assistant' ORDER BY id")
        return [row[0] for row in rows]


# -- DM modes ----------------------------------------------------------------------------------


async def test_each_top_level_dm_starts_its_own_session(harness: Harness) -> None:
    harness.claude.default = Script(text="Noted.")
    first = await harness.dm("remember 7")
    await harness.settled()
    second = await harness.dm("what did I say?")
    await harness.settled()
    assert harness.texts(DM, first["ts"]) == ["Noted."]
    assert harness.texts(DM, second["ts"]) == ["Noted."]
    # a new top-level message starts afresh: the first session is not in its history
    assert len(conversation(harness.claude.requests[-1])) == 1


async def test_reset_at_the_top_of_a_dm_gets_a_hint_in_sessions_mode(harness: Harness) -> None:
    top = await harness.dm("reset")
    await harness.settled()
    assert harness.texts(DM, top["ts"]) == [messages.RESET_HINT]
    assert harness.claude.requests == []
    assert harness.slack.sessions == {}, "a hint is no turn: no session status"


async def test_conversation_mode_keeps_top_level_dms_one_conversation_without_status(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="Top level.", ttft=0.3)
    async with bot(slack, claude, db_path, dm_mode="conversation") as h:
        await h.dm("hello")
        [placeholder] = await slack.wait_for(lambda: h.replies(DM, None))
        # chat.update with the Stop button while it streams, and no session status (no thread)
        assert any(b.get("type") == "actions" for b in placeholder["blocks"] or [])
        await h.settled()
        assert [m["thread_ts"] for m in h.replies(DM, None)] == [None]
        assert slack.calls_to("chat.startStream") == []
        assert slack.calls_to("agents.sessions.setStatus") == []
        assert slack.calls_to("assistant.threads.setStatus") == []


@pytest.mark.parametrize(
    ("name", "value"), [("SLACKBOT_STREAMING", "fast"), ("SLACKBOT_DM_MODE", "threads")]
)
def test_a_bad_streaming_or_dm_mode_is_one_line_naming_it(name: str, value: str) -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "ANTHROPIC_API_KEY": "k",
        name: value,
    }
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert name in str(raised.value) and "\n" not in str(raised.value)


# -- status ------------------------------------------------------------------------------------


async def test_without_agent_sessions_the_assistant_status_is_used_and_remembered(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.agent_sessions = False
    claude.default = Script(text="Fine.", ttft=0.2)
    async with bot(slack, claude, db_path) as h:
        first = await h.dm("one")
        await h.settled()
        second = await h.dm("two")
        await h.settled()
        assert len(slack.calls_to("agents.sessions.setStatus")) == 1, "asked once"
        for top in (first, second):
            calls = [
                c.params
                for c in slack.calls_to("assistant.threads.setStatus")
                if c.params["thread_ts"] == top["ts"]
            ]
            assert calls[0]["status"] == messages.STATUS_LOADING
            assert 1 <= len(calls[0]["loading_messages"]) <= 10
            assert calls[-1]["status"] == "", "cleared at the end"
        # the stream's stop did not name a session status it can't set
        stops = slack.calls_to("chat.stopStream")
        assert stops and all("session_status" not in c.params for c in stops)
        assert h.texts(DM, second["ts"]) == ["Fine."]


async def test_a_workspace_that_refuses_both_statuses_gets_none(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.agent_sessions = False
    slack.fail_next("assistant.threads.setStatus", "missing_scope")
    claude.default = Script(text="Fine.")
    async with bot(slack, claude, db_path) as h:
        for text in ("one", "two"):
            await h.dm(text)
            await h.settled()
        assert len(slack.calls_to("agents.sessions.setStatus")) == 1
        assert len(slack.calls_to("assistant.threads.setStatus")) == 1


async def test_a_turn_that_fails_still_sets_the_session_active(harness: Harness) -> None:
    harness.claude.default = Script(status=529)
    mention = await harness.mention("hello")
    await harness.settled()
    [text] = harness.texts(CHANNEL, mention["ts"])
    assert "overloaded" in text
    assert harness.slack.sessions[(CHANNEL, mention["ts"])]["history"] == ["processing", "active"]


async def test_a_placeholder_slack_refuses_leaves_no_spinner(harness: Harness) -> None:
    harness.slack.fail_next("chat.postMessage", "not_in_channel")
    mention = await harness.mention("hello")
    await harness.settled()
    status = harness.slack.session_status(CHANNEL, mention["ts"])
    assert status in (None, "active")


async def test_recovery_stops_a_stream_a_crash_left_open_and_sets_the_session_active(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    root = slack.add_user_message(DM, "U1", "write a lot")
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    await client.agents_sessions_setStatus(channel_id=DM, thread_ts=root["ts"], status="processing")
    started = await client.chat_startStream(
        channel=DM,
        thread_ts=root["ts"],
        recipient_user_id="U1",
        recipient_team_id="T1",
        markdown_text="Half of the answ",
    )
    store = await SqliteStore.open(db_path)
    conversation_id = await store.claim_conversation(
        "Ev1", DM, root["ts"], team="T1", thread_root=root["ts"], idle_seconds=0
    )
    assert conversation_id is not None
    reply = await store.begin_reply(conversation_id, answers_ts=root["ts"], channel=DM, first_ts="")
    await store.update_reply(
        reply, text="Half of the answ", message_ts=[started["ts"]], status="streaming"
    )
    await store.close()

    async with bot(slack, claude, db_path) as h:
        [text] = h.texts(DM, root["ts"])
        assert text.startswith("Half of the answ") and "restarted" in text
        assert not slack.is_streaming(DM, started["ts"])
        assert slack.session_status(DM, root["ts"]) == "active"


async def test_recovery_of_a_native_reply_that_showed_nothing_yet(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    root = slack.add_user_message(DM, "U1", "hello")
    store = await SqliteStore.open(db_path)
    conversation_id = await store.claim_conversation(
        "Ev1", DM, root["ts"], team="T1", thread_root=root["ts"], idle_seconds=0
    )
    assert conversation_id is not None
    await store.begin_reply(conversation_id, answers_ts=root["ts"], channel=DM, first_ts="")
    await store.close()
    async with bot(slack, claude, db_path) as h:
        [text] = h.texts(DM, root["ts"])
        assert "restarted" in text


# -- Stop ------------------------------------------------------------------------------------


async def test_slacks_stop_ends_a_native_reply_within_a_second(
    harness: Harness, db_path: str
) -> None:
    harness.claude.default = Script(text=reply_text(4000), tokens_per_second=40)
    harness.claude.by_marker["and a title?"] = Script(text="A Title.")
    slack, claude = harness.slack, harness.claude
    top = await harness.dm("write an essay")
    [start] = await slack.wait_for(lambda: slack.calls_to("chat.startStream"))
    await slack.wait_for(lambda: len(slack.calls_to("chat.appendStream")) >= 2)
    # a follow-up queued behind the reply being stopped is still answered
    await harness.dm("and a title?", thread_ts=top["ts"])
    assert start.response is not None
    stopped_at = asyncio.get_running_loop().time()
    response = await harness.stop_session(
        DM, top["ts"], streaming_message_ts=[start.response["ts"]]
    )
    assert response.status == 200
    first = claude.timeline[0]
    await slack.wait_for(lambda: first["disconnected_at"] is not None, timeout=2)
    assert first["end_at"] is None, "the model's stream never ran to its end"
    await slack.wait_for(lambda: slack.calls_to("chat.stopStream"))
    stop = slack.calls_to("chat.stopStream")[0]
    assert stop.at - stopped_at < 1.0
    await harness.settled()

    [stopped, answered] = harness.texts(DM, top["ts"])
    assert stopped.endswith(messages.STOPPED)
    partial = stopped.removesuffix(messages.STOPPED).strip()
    assert partial and reply_text(4000).startswith(partial)
    assert stop.params["session_status"] == "active"
    assert answered == "A Title."
    assert reply_statuses(db_path) == ["stopped", "done"]
    # the follow-up saw the partial text as the assistant's turn
    history = conversation(claude.requests[-1])
    assert history[1]["role"] == "assistant"
    assert history[1]["content"][0]["text"].startswith(partial[:100])
    [(input_tokens, output_tokens, reason), _] = usage_rows(db_path)
    assert reason == "stopped" and input_tokens > 0
    assert output_tokens >= len(partial) // 8, "output counted from what was produced"


async def test_a_stop_for_a_finished_reply_does_nothing(harness: Harness) -> None:
    harness.claude.default = Script(text="Done already.")
    top = await harness.dm("hi")
    await harness.settled()
    calls = len(harness.slack.calls)
    response = await harness.stop_session(DM, top["ts"])
    assert response.status == 200
    never = await harness.stop_session(DM, "1234.5678")  # a thread the bot never answered
    assert never.status == 200
    await asyncio.sleep(0.2)
    assert len(harness.slack.calls) == calls
    assert harness.texts(DM, top["ts"]) == ["Done already."]


async def test_the_stop_button_stops_a_channel_reply_for_the_asker_only(
    harness: Harness, db_path: str
) -> None:
    slack = harness.slack
    harness.claude.default = Script(text=reply_text(3000), tokens_per_second=40)
    mention = await harness.mention("write an essay", user="U1")
    [placeholder] = await slack.wait_for(lambda: harness.replies(CHANNEL, mention["ts"]))
    await slack.wait_for(lambda: len(slack.calls_to("chat.update")) >= 1)
    snapshot = dict(slack.messages[(CHANNEL, placeholder["ts"])])

    other, _ = await harness.click(CHANNEL, placeholder["ts"], STOP_ACTION, user="U2")
    assert other == 200
    await slack.wait_for(lambda: slack.ephemerals)
    [(note)] = slack.ephemerals
    assert (note["channel"], note["user"]) == (CHANNEL, "U2")
    assert note["text"] == messages.STOP_NOT_YOURS and note["thread_ts"] == mention["ts"]
    assert harness.claude.timeline[0]["disconnected_at"] is None, "still streaming"

    clicked_at = asyncio.get_running_loop().time()
    mine, _ = await harness.click(CHANNEL, placeholder["ts"], STOP_ACTION, user="U1")
    assert mine == 200
    first = harness.claude.timeline[0]
    await slack.wait_for(lambda: first["disconnected_at"] is not None, timeout=2)
    await harness.settled()
    assert asyncio.get_running_loop().time() - clicked_at < 5

    [text] = harness.texts(CHANNEL, mention["ts"])
    assert text.endswith(messages.STOPPED)
    final = slack.messages[(CHANNEL, placeholder["ts"])]
    assert not any(b.get("type") == "actions" for b in final["blocks"] or []), "button gone"
    assert reply_statuses(db_path) == ["stopped"]
    assert slack.session_status(CHANNEL, mention["ts"]) == "active"

    # a late click (from the message as it was while streaming) does nothing
    calls = len(slack.calls)
    [button] = next(b for b in snapshot["blocks"] if b["type"] == "actions")["elements"]
    payload = slack.block_actions_payload(
        CHANNEL, placeholder["ts"], user="U1", action={**button, "block_id": "x"}
    )
    late, _ = await harness.post_interaction(payload)
    assert late == 200
    await asyncio.sleep(0.2)
    assert len(slack.calls) == calls


async def test_a_stop_button_click_with_a_bad_signature_is_refused(harness: Harness) -> None:
    harness.claude.default = Script(text=reply_text(1500), tokens_per_second=40)
    mention = await harness.mention("long")
    [placeholder] = await harness.slack.wait_for(lambda: harness.replies(CHANNEL, mention["ts"]))
    message = harness.slack.messages[(CHANNEL, placeholder["ts"])]
    [button] = next(b for b in message["blocks"] if b["type"] == "actions")["elements"]
    payload = harness.slack.block_actions_payload(
        CHANNEL, placeholder["ts"], user="U1", action={**button, "block_id": "x"}
    )
    refused, _ = await harness.post_interaction(payload, secret="wrong")
    assert refused == 401
    await harness.settled(timeout=20)
    assert not harness.texts(CHANNEL, mention["ts"])[-1].endswith(messages.STOPPED)


async def test_a_stop_before_claude_answers_stops_that_reply_only(harness: Harness) -> None:
    slack = harness.slack
    harness.claude.default = Script(text="Slow to start.", ttft=1.5)
    first = await harness.mention("one")
    await slack.wait_for(lambda: harness.replies(CHANNEL, first["ts"]))
    await harness.mention("two", thread_ts=first["ts"])
    [_, waiting] = await slack.wait_for(
        lambda: (r := harness.replies(CHANNEL, first["ts"])) and len(r) == 2 and r
    )
    # the queued reply's own button: it is stopped before its turn comes
    await harness.click(CHANNEL, waiting["ts"], STOP_ACTION, user="U1")
    await harness.settled()
    texts = harness.texts(CHANNEL, first["ts"])
    assert texts == ["Slow to start.", messages.STOPPED]
    assert len(harness.claude.requests) == 1


async def test_recovery_removes_the_stop_button_a_crash_left(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    root = slack.add_user_message(CHANNEL, "U1", "<@UBOT> write")
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    posted = await client.chat_postMessage(
        channel=CHANNEL,
        thread_ts=root["ts"],
        text="Half",
        blocks=[{"type": "markdown", "text": "Half"}, stop_block(root["ts"])],
    )
    store = await SqliteStore.open(db_path)
    conversation_id = await store.claim_conversation(
        "Ev1", CHANNEL, root["ts"], team="T1", thread_root=root["ts"], idle_seconds=0
    )
    assert conversation_id is not None
    reply = await store.begin_reply(
        conversation_id, answers_ts=root["ts"], channel=CHANNEL, first_ts=posted["ts"]
    )
    await store.update_reply(reply, text="Half", message_ts=[posted["ts"]], status="streaming")
    await store.close()
    async with bot(slack, claude, db_path):
        message = slack.messages[(CHANNEL, posted["ts"])]
        assert not any(b["type"] == "actions" for b in message["blocks"] or [])
        assert "restarted" in slack.final_text(CHANNEL, posted["ts"])


async def test_an_admin_may_stop_someone_elses_reply(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text=reply_text(3000), tokens_per_second=40)
    async with bot(slack, claude, db_path, admins=("U2",)) as h:
        mention = await h.mention("write an essay", user="U1")
        [placeholder] = await slack.wait_for(lambda: h.replies(CHANNEL, mention["ts"]))
        status, _ = await h.click(CHANNEL, placeholder["ts"], STOP_ACTION, user="U2")
        assert status == 200
        await h.settled()
        assert h.texts(CHANNEL, mention["ts"])[-1].endswith(messages.STOPPED)
        assert slack.ephemerals == []
