"""The bot as a user meets it: a mention or DM in, a streamed reply out, memory in between.

Every test here runs on both stores: SQLite, and a real PostgreSQL (`DATABASE_URL`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fakes.claude import FakeClaude, Script
from fakes.harness import (
    CHANNEL,
    DM,
    Harness,
    conversation,
    make_settings,
    running_harness,
    start_harness,
)
from fakes.slack import FakeSlack, FakeSocketModeServer, event_callback, message_event
from slackbot.server import create_bot, prepare, start_socket_mode


@pytest.fixture(params=["sqlite", "postgres"])
async def harness(
    request: pytest.FixtureRequest, slack: FakeSlack, claude: FakeClaude, db_path: str
) -> AsyncIterator[Harness]:
    overrides = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    async with running_harness(slack, claude, db_path, **overrides) as h:
        yield h


async def test_mention_gets_streamed_reply_in_thread(harness: Harness) -> None:
    harness.claude.default = Script(
        text="Two plus two is **4**.\n\n```python\nprint(2 + 2)\n```", tokens_per_second=200
    )
    mention = await harness.mention("what is 2+2?")
    await harness.settled()

    replies = harness.replies(CHANNEL, mention["ts"])
    assert len(replies) == 1
    assert harness.texts(CHANNEL, mention["ts"]) == [
        "Two plus two is **4**.\n\n```python\nprint(2 + 2)\n```"
    ]
    posts = harness.slack.calls_to("chat.postMessage")
    assert posts[0].params["thread_ts"] == mention["ts"]
    assert "Thinking" in posts[0].shown
    # streamed: edited in place more than once (intermediate + final)
    assert len(harness.slack.calls_to("chat.update")) >= 2

    request = harness.claude.requests[-1]
    marked = {"type": "text", "text": "Alice: what is 2+2?", "cache_control": {"type": "ephemeral"}}
    assert conversation(request) == [{"role": "user", "content": [marked]}]
    assert "Slack" in request["system"]
    assert request["stream"] is True


async def test_follow_up_sees_whole_thread(harness: Harness) -> None:
    harness.claude.default = Script(text="First answer.")
    first = await harness.mention("remember the number 7")
    await harness.settled()
    harness.slack.add_user_message(CHANNEL, "U2", "and also 8", thread_ts=first["ts"])
    harness.claude.default = Script(text="7 and 8.")
    await harness.mention("which numbers?", thread_ts=first["ts"], user="U1")
    await harness.settled()

    messages = conversation(harness.claude.requests[-1])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0]["text"] == "Alice: remember the number 7"
    assert messages[1]["content"][0]["text"] == "First answer."
    assert [b["text"] for b in messages[2]["content"]] == [
        "Bob: and also 8",
        "Alice: which numbers?",
    ]


@pytest.fixture(params=["sqlite", "postgres"])
async def dm_conversation(
    request: pytest.FixtureRequest, slack: FakeSlack, claude: FakeClaude, db_path: str
) -> AsyncIterator[Harness]:
    """The bot with SLACKBOT_DM_MODE=conversation: top-level DMs are one running conversation."""
    overrides: dict[str, object] = {"dm_mode": "conversation"}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    async with running_harness(slack, claude, db_path, **overrides) as h:
        yield h


async def test_dm_top_level_is_one_running_conversation(dm_conversation: Harness) -> None:
    harness = dm_conversation
    harness.claude.default = Script(text="Hi!")
    await harness.dm("hello")
    await harness.settled()
    await harness.dm("second message")
    await harness.settled()

    top_level = harness.replies(DM, None)
    assert len(top_level) == 2
    assert all(m.get("thread_ts") is None for m in top_level)
    assert [m["role"] for m in conversation(harness.claude.requests[-1])] == [
        "user",
        "assistant",
        "user",
    ]

    await harness.dm("reset")
    await harness.settled()
    assert "fresh" in harness.texts(DM, None)[-1]
    await harness.dm("new topic")
    await harness.settled()
    assert len(conversation(harness.claude.requests[-1])) == 1


async def test_redelivered_event_answered_once(harness: Harness) -> None:
    message = harness.slack.add_user_message(CHANNEL, "U1", "<@UBOT> hi")
    payload = await harness.deliver(message)
    response = await harness.post_event(payload, retry_num=1)
    assert response.status == 200
    harness.expected += 1
    # the same post also arriving as a `message` event (different event id) is a duplicate too
    await harness.deliver(message, type="message", channel_type="channel")
    await harness.settled()
    assert len(harness.replies(CHANNEL, message["ts"])) == 1
    assert len(harness.claude.requests) == 1


async def test_bad_signature_rejected(harness: Harness) -> None:
    message = harness.slack.add_user_message(CHANNEL, "U1", "<@UBOT> hi")
    payload = event_callback(message_event(message, type="app_mention"))
    response = await harness.post_event(payload, secret="wrong-secret")
    assert response.status == 401
    stale = await harness.post_event(payload, timestamp=1_000_000)
    assert stale.status == 401
    await asyncio.sleep(0.1)
    assert harness.claude.requests == []
    assert harness.slack.calls_to("chat.postMessage") == []


async def test_socket_mode_event_is_acked_and_answered(
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
            payload = event_callback(message_event(message, type="app_mention"))
            envelope = await socket_server.push(payload)
            await socket_server.wait_ack(envelope)
            # a redelivery of the same event (Socket Mode retry) is not answered again
            await socket_server.push(payload, retry_attempt=1, retry_reason="timeout")
            await slack.wait_for(
                lambda: (
                    slack.bot_messages(CHANNEL, message["ts"])
                    and slack.final_text(
                        CHANNEL, slack.bot_messages(CHANNEL, message["ts"])[0]["ts"]
                    )
                    == "Hello from fake Claude."
                )
            )
            await asyncio.sleep(0.2)
            assert len(slack.bot_messages(CHANNEL, message["ts"])) == 1
            assert len(claude.requests) == 1
        finally:
            await handler.close_async()
            await bot.close()


def long_markdown(chars: int) -> str:
    """Prose paragraphs with code blocks sprinkled in, about `chars` long."""
    parts: list[str] = []
    n = 0
    while sum(len(p) + 2 for p in parts) < chars:
        n += 1
        if n % 7 == 0:
            body = "\n".join(f"    value_{n}_{i} = compute({i})  # step {i}" for i in range(60))
            parts.append(f"```python\n{body}\n```")
        else:
            parts.append(f"Paragraph {n}. " + "The quick brown fox jumps over the lazy dog. " * 8)
    return "\n\n".join(parts)


def strip_fences_at_cuts(pieces: list[str]) -> str:
    return "".join(pieces)


async def test_50k_reply_continues_in_further_messages(harness: Harness) -> None:
    text = long_markdown(50_000)
    harness.claude.default = Script(text=text, chars_per_token=40)
    mention = await harness.mention("write a lot")
    await harness.settled(timeout=30)

    pieces = harness.texts(CHANNEL, mention["ts"])
    assert len(pieces) >= 5
    assert all(0 < len(p) <= 12_000 for p in pieces)
    assert all(p.count("```") % 2 == 0 for p in pieces), "every message has balanced fences"
    # nothing is lost: removing the fence lines added at the cuts gives back every character
    squashed = "".join(pieces).replace("```python\n", "").replace("```", "")
    original = text.replace("```python\n", "").replace("```", "")
    assert "".join(squashed.split()) == "".join(original.split())
    posts = harness.slack.calls_to("chat.postMessage")
    assert all(c.params.get("thread_ts") == mention["ts"] for c in posts)


async def test_api_error_ends_with_readable_message(harness: Harness) -> None:
    harness.claude.fail_next(529)
    mention = await harness.mention("hello?")
    await harness.settled()
    [text] = harness.texts(CHANNEL, mention["ts"])
    assert "overloaded" in text.lower()
    assert "Thinking" not in text
    assert "Traceback" not in text and "529" not in text
    # and the bot keeps serving
    harness.claude.default = Script(text="Back again.")
    second = await harness.mention("retry")
    await harness.settled()
    assert harness.texts(CHANNEL, second["ts"]) == ["Back again."]


async def test_stream_breaking_mid_way_keeps_partial_text(harness: Harness) -> None:
    harness.claude.queue.append(
        Script(text="The first part arrives fine. " * 20, break_after_chars=200)
    )
    mention = await harness.mention("tell me")
    await harness.settled()
    [text] = harness.texts(CHANNEL, mention["ts"])
    assert text.startswith("The first part arrives fine.")
    assert "incomplete" in text and "broke off" in text


async def test_error_event_after_200_is_reported(harness: Harness) -> None:
    harness.claude.queue.append(Script(text="Partial answer " * 10, error_event_after_chars=40))
    mention = await harness.mention("tell me")
    await harness.settled()
    [text] = harness.texts(CHANNEL, mention["ts"])
    assert text.startswith("Partial answer")
    assert "overloaded" in text.lower()


async def test_max_tokens_is_said_in_the_reply(harness: Harness) -> None:
    harness.claude.default = Script(text="A long essay that stops", stop_reason="max_tokens")
    mention = await harness.mention("essay please")
    await harness.settled()
    [text] = harness.texts(CHANNEL, mention["ts"])
    assert text.startswith("A long essay that stops")
    assert "length limit" in text and "continue" in text


async def test_ratelimited_final_edit_is_retried(harness: Harness) -> None:
    harness.claude.default = Script(text="Final words.")
    harness.slack.fail_next("chat.update", "ratelimited", times=2, retry_after=0)
    mention = await harness.mention("hi")
    await harness.settled()
    assert harness.texts(CHANNEL, mention["ts"]) == ["Final words."]
    assert any(c.error == "ratelimited" for c in harness.slack.calls_to("chat.update"))


async def test_two_quick_mentions_in_one_thread_are_answered_in_order(harness: Harness) -> None:
    harness.claude.responder = lambda body: Script(
        text="answer to " + conversation(body)[-1]["content"][-1]["text"], tokens_per_second=100
    )
    root = await harness.mention("first question")
    second = harness.slack.add_user_message(
        CHANNEL, "U2", "<@UBOT> second question", thread_ts=root["ts"]
    )
    await harness.deliver(second)
    await harness.settled(timeout=20)

    assert harness.claude.peak_in_flight == 1
    first_req, second_req = harness.claude.requests
    assert conversation(first_req)[-1]["content"][-1]["text"] == "Alice: first question"
    # the second mention's history holds the first question and the bot's answer to it
    assert [m["role"] for m in conversation(second_req)] == ["user", "assistant", "user"]
    assert conversation(second_req)[1]["content"][0]["text"] == "answer to Alice: first question"
    texts = harness.texts(CHANNEL, root["ts"])
    assert texts == ["answer to Alice: first question", "answer to Bob: second question"]


async def test_concurrent_mentions_in_different_threads(harness: Harness) -> None:
    harness.claude.responder = lambda body: Script(
        text="re: " + conversation(body)[-1]["content"][-1]["text"], ttft=0.3
    )
    mentions = await asyncio.gather(
        *(harness.mention(f"question {i}", channel=f"C{i}") for i in range(5))
    )
    await harness.settled(timeout=20)
    assert harness.claude.peak_in_flight >= 2  # not serialised across threads
    for i, m in enumerate(mentions):
        assert harness.texts(f"C{i}", m["ts"]) == [f"re: Alice: question {i}"]
        # each request carries only its own thread
        assert len(conversation(harness.claude.requests[0])) == 1


async def test_thread_sync_brings_in_messages_before_first_mention(harness: Harness) -> None:
    root = harness.slack.add_user_message(CHANNEL, "U1", "We need to pick a database.")
    harness.slack.add_user_message(CHANNEL, "U2", "I vote <@U1>'s idea", thread_ts=root["ts"])
    harness.slack.add_user_message(CHANNEL, "U9", "bot noise", thread_ts=root["ts"], bot_id="B9")
    await harness.mention("what do you think?", thread_ts=root["ts"], user="U2")
    await harness.settled()
    [message] = conversation(harness.claude.requests[-1])
    assert [b["text"] for b in message["content"]] == [
        "Alice: We need to pick a database.",
        "Bob: I vote @Alice's idea",
        "Bob: what do you think?",
    ]
    # users.info is cached: one call per person however often they appear
    looked_up = [c.params["user"] for c in harness.slack.calls_to("users.info")]
    assert sorted(looked_up) == ["U1", "U2"]


async def test_thread_sync_failure_answers_from_store(harness: Harness) -> None:
    first = await harness.mention("remember 42")
    await harness.settled()
    harness.slack.fail_next("conversations.replies", "ratelimited", times=5, retry_after=30)
    await harness.mention("what did I say?", thread_ts=first["ts"])
    await harness.settled()
    roles = [m["role"] for m in conversation(harness.claude.requests[-1])]
    assert roles == ["user", "assistant", "user"]


async def test_messages_that_are_not_a_person_speaking_are_ignored(harness: Harness) -> None:
    for subtype in ("message_changed", "message_deleted", "bot_message", "channel_join"):
        message = harness.slack.add_user_message(DM, "U1", "hi", subtype=subtype)
        await harness.deliver(message, type="message", channel_type="im", ignored=True)
    other_bot = harness.slack.add_user_message(DM, "U7", "beep", bot_id="B7")
    await harness.deliver(other_bot, type="message", channel_type="im", ignored=True)
    channel_chat = harness.slack.add_user_message(CHANNEL, "U1", "just chatting")
    await harness.deliver(channel_chat, type="message", channel_type="channel")
    await asyncio.sleep(0.3)
    await harness.settled()
    assert harness.claude.requests == []
    assert harness.slack.calls_to("chat.postMessage") == []


async def test_dm_thread_message_belongs_to_that_thread(dm_conversation: Harness) -> None:
    harness = dm_conversation
    top = await harness.dm("top-level question")
    await harness.settled()
    await harness.dm("follow-up in a thread", thread_ts=top["ts"])
    await harness.settled()
    replies = harness.replies(DM, top["ts"])
    assert len(replies) == 1 and replies[0]["thread_ts"] == top["ts"]
    texts = [b["text"] for m in conversation(harness.claude.requests[-1]) for b in m["content"]]
    assert texts[0] == "Alice: top-level question"
    assert texts[-1] == "Alice: follow-up in a thread"


async def test_slack_server_errors_are_retried(harness: Harness) -> None:
    harness.slack.fail_next("chat.postMessage", "internal_error", status=500)
    harness.slack.fail_next("chat.update", "internal_error", status=503)
    harness.claude.default = Script(text="Still here.")
    mention = await harness.mention("hello")
    await harness.settled()
    assert harness.texts(CHANNEL, mention["ts"]) == ["Still here."]


async def test_deleted_placeholder_still_gets_the_answer(harness: Harness) -> None:
    harness.claude.default = Script(text="Here it is.", ttft=0.5)
    mention = await harness.mention("hello")
    [placeholder] = await harness.slack.wait_for(lambda: harness.replies(CHANNEL, mention["ts"]))
    del harness.slack.messages[(CHANNEL, placeholder["ts"])]  # someone deletes it
    await harness.settled()
    assert harness.texts(CHANNEL, mention["ts"]) == ["Here it is."]


async def test_a_stalled_stream_ends_with_a_note(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="never arrives", ttft=2.0)
    h, runner = await start_harness(slack, claude, db_path, claude_read_timeout=0.3)
    try:
        mention = await h.mention("hello?")
        await h.settled(timeout=10)
        [text] = h.texts(CHANNEL, mention["ts"])
        assert "too long" in text and "Thinking" not in text
    finally:
        await runner.cleanup()
        await h.close()
        await h.bot.close()


async def test_later_syncs_ask_slack_only_for_what_is_new(harness: Harness) -> None:
    root = await harness.mention("first")
    await harness.settled()
    harness.slack.add_user_message(CHANNEL, "U2", "in between", thread_ts=root["ts"])
    second = await harness.mention("second", thread_ts=root["ts"])
    await harness.settled()
    harness.slack.add_user_message(CHANNEL, "U2", "more talk", thread_ts=root["ts"])
    await harness.mention("third", thread_ts=root["ts"])
    await harness.settled()

    first_sync, second_sync = harness.slack.calls_to("conversations.replies")
    assert "oldest" not in first_sync.params  # the first sync reads the thread from its start
    assert second_sync.params["oldest"] == second["ts"]
    texts = [b["text"] for m in conversation(harness.claude.requests[-1]) for b in m["content"]]
    assert "Bob: in between" in texts and "Bob: more talk" in texts
    assert texts[-1] == "Alice: third"


async def test_a_refused_exchange_is_left_out_of_later_requests(
    harness: Harness, db_path: str
) -> None:
    harness.claude.queue.append(Script(text="", stop_reason="refusal"))
    root = await harness.mention("something it refuses")
    await harness.settled()
    [refusal] = harness.texts(CHANNEL, root["ts"])
    assert "can't help" in refusal and "leave it out" in refusal
    harness.claude.default = Script(text="Sure.")
    await harness.mention("something else", thread_ts=root["ts"])
    await harness.settled()
    texts = [b["text"] for m in conversation(harness.claude.requests[-1]) for b in m["content"]]
    assert texts == ["Alice: something else"]
    # still in the store, marked
    rows = harness.query("SELECT role, status FROM messages ORDER BY sort_ts, role='assistant'")
    statuses = [f"{role} {status}" for role, status in rows]
    assert statuses == ["user done", "assistant refused", "user done", "assistant done"]
