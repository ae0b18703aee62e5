"""Native streaming through the real bot: DM sessions, chat.startStream/appendStream/stopStream,
thinking steps, and every fallback to chat.update when Slack's streaming gives out."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from fakes.claude import FakeClaude, Script, ServerToolUse, Text, WebCitation, WebSearchResult
from fakes.harness import CHANNEL, DM, Harness, start_harness
from fakes.slack import FakeSlack
from slackbot.reply_choice import ChosenReplies


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


def streamed(slack: FakeSlack, method: str) -> list[dict[str, Any]]:
    return [c.params for c in slack.calls_to(method)]


async def test_a_top_level_dm_is_answered_natively_in_its_thread(
    harness: Harness,
) -> None:
    harness.claude.default = Script(text="Hello **there**, " * 20, tokens_per_second=400)
    top = await harness.dm("hi, can you help me plan a trip to Lisbon in the spring please?")
    await harness.settled()

    [reply] = harness.replies(DM, top["ts"])
    assert harness.slack.final_text(DM, reply["ts"]) == "Hello **there**, " * 20
    top_level = [m for m in harness.slack.bot_messages(DM) if m["thread_ts"] is None]
    assert top_level == [], "nothing at the top of the DM"
    [start] = streamed(harness.slack, "chat.startStream")
    assert start["thread_ts"] == top["ts"]
    assert (start["recipient_user_id"], start["recipient_team_id"]) == ("U1", "T1")
    [stop] = streamed(harness.slack, "chat.stopStream")
    assert stop["session_status"] == "active"
    assert harness.slack.calls_to("chat.update") == []
    assert harness.slack.calls_to("chat.postMessage") == []
    # the session: processing from the start, titled by the thread's first message, then active
    session = harness.slack.sessions[(DM, top["ts"])]
    assert session["title"] == "hi, can you help me plan a trip to Lisbon in the spring…"
    assert session["initiator"] == "U1"
    assert session["history"] == ["processing", "active"]
    # stored like any reply: the follow-up in the thread sees it
    harness.claude.default = Script(text="Sure.")
    await harness.dm("and in summer?", thread_ts=top["ts"])
    await harness.settled()
    roles = [m["role"] for m in harness.claude.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "user"]
    # a follow-up's status names no title (the session exists already)
    statuses = [c.params for c in harness.slack.calls_to("agents.sessions.setStatus")]
    # the stream's stop set it active each time: one status call per reply
    assert [p["status"] for p in statuses] == ["processing", "processing"]
    assert "title" not in statuses[1]


async def test_the_stream_starts_with_the_first_text_and_appends_are_buffered(
    harness: Harness,
) -> None:
    text = "word " * 200  # 1,000 characters at 100 tokens/s: about 2.5 s of streaming
    harness.claude.default = Script(text=text, ttft=0.3, tokens_per_second=100)
    top = await harness.dm("long one")
    await harness.settled()

    [start] = harness.slack.calls_to("chat.startStream")
    [first] = [r for r in harness.claude.timeline if r["first_text_at"]]
    assert start.at >= first["first_text_at"], "no stream before there is something to show"
    assert start.at - first["first_text_at"] < 0.2
    appends = harness.slack.calls_to("chat.appendStream")
    assert appends, "a reply this long streams in several appends"
    gaps = [b.at - a.at for a, b in itertools.pairwise(appends)]
    assert min(gaps, default=1.0) >= 0.25, "a few appends a second at most"
    assert len(appends) <= 12
    assert harness.texts(DM, top["ts"]) == [text]


async def test_channel_threads_use_chat_update_in_auto_mode(harness: Harness) -> None:
    harness.claude.default = Script(text="In the channel.")
    mention = await harness.mention("hello")
    await harness.settled()
    assert harness.slack.calls_to("chat.startStream") == []
    assert harness.texts(CHANNEL, mention["ts"]) == ["In the channel."]
    # still a session in the thread, with its status set back when the reply is done
    assert harness.slack.session_status(CHANNEL, mention["ts"]) == "active"


async def test_native_mode_streams_in_channel_threads_too(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="Natively, in a channel.")
    async with bot(slack, claude, db_path, streaming="native") as h:
        mention = await h.mention("hello")
        await h.settled()
        assert h.texts(CHANNEL, mention["ts"]) == ["Natively, in a channel."]
        assert len(slack.calls_to("chat.startStream")) == 1
        assert slack.calls_to("chat.postMessage") == []


async def test_update_mode_never_streams_natively(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="Edited in place.")
    async with bot(slack, claude, db_path, streaming="update") as h:
        top = await h.dm("hello")
        await h.settled()
        assert h.texts(DM, top["ts"]) == ["Edited in place."]
        assert slack.calls_to("chat.startStream") == []


async def test_a_refused_start_falls_back_to_chat_update_for_the_workspace(
    slack: FakeSlack, claude: FakeClaude, db_path: str, caplog: Any
) -> None:
    claude.default = Script(text="Whole anyway.")
    slack.fail_next("chat.startStream", "not_allowed_token_type")
    async with bot(slack, claude, db_path) as h:
        first = await h.dm("one")
        await h.settled()
        second = await h.dm("two")
        await h.settled()
        assert h.texts(DM, first["ts"]) == ["Whole anyway."]
        assert h.texts(DM, second["ts"]) == ["Whole anyway."]
        # tried once; the second reply went straight to chat.update
        assert len(slack.calls_to("chat.startStream")) == 1
        replies = h.bot.conversations.replies
        assert isinstance(replies, ChosenReplies)
        assert not replies.streams.for_team("T1").native_allowed
        warnings = [r for r in caplog.records if "refused chat.startStream" in r.getMessage()]
        assert len(warnings) == 1
        # the fallback's session is still set back to active
        assert slack.session_status(DM, second["ts"]) == "active"


async def test_a_rate_limited_start_uses_chat_update_for_that_reply_only(
    harness: Harness,
) -> None:
    harness.claude.default = Script(text="Still whole.")
    harness.slack.fail_next("chat.startStream", "ratelimited", retry_after=0)
    top = await harness.dm("one")
    await harness.settled()
    assert harness.texts(DM, top["ts"]) == ["Still whole."]
    replies = harness.bot.conversations.replies
    assert isinstance(replies, ChosenReplies)
    assert replies.streams.for_team("T1").native_allowed


async def test_a_stream_that_expires_is_finished_with_chat_update(
    harness: Harness,
) -> None:
    text = "".join(f"sentence {i}. " for i in range(120))
    harness.claude.default = Script(text=text, ttft=0.1, tokens_per_second=150)
    top = await harness.dm("tell me a lot")
    slack = harness.slack
    [start] = await slack.wait_for(lambda: slack.calls_to("chat.startStream"))
    await slack.wait_for(lambda: slack.calls_to("chat.appendStream"))
    ts = start.response["ts"] if start.response else ""
    slack.expire_stream(DM, ts)  # Slack's five minutes, now
    await harness.settled()

    assert harness.texts(DM, top["ts"]) == [text]
    failed = [c for c in slack.calls_to("chat.appendStream") if c.error]
    assert {c.error for c in failed} <= {"message_not_in_streaming_state"}
    assert any(c.params["ts"] == ts for c in slack.calls_to("chat.update"))
    assert slack.calls_to("chat.stopStream") == []
    assert slack.session_status(DM, top["ts"]) == "active"


async def test_a_long_reply_continues_in_a_new_stream_before_slacks_size_limit(
    harness: Harness,
) -> None:
    paragraph = "ünïcode text that takes more bytes than characters. " * 4
    text = "\n\n".join([paragraph] * 100) + "\n\n```python\n" + "x = 1\n" * 400 + "```\n"
    harness.claude.default = Script(text=text, tokens_per_second=3000, chars_per_token=8)
    top = await harness.dm("a lot please")
    await harness.settled(timeout=30)

    slack = harness.slack
    assert not [c for c in slack.calls if c.error == "msg_too_long"]
    messages = harness.texts(DM, top["ts"])
    assert len(messages) >= 3
    for message in messages:
        assert len(message.encode()) <= 9_100
        assert message.count("```") % 2 == 0, "each message's code blocks are closed"
    joined = "".join(messages)
    assert joined.replace("```python\n", "").replace("```", "").replace("\n", "") == (
        text.replace("```python\n", "").replace("```", "").replace("\n", "")
    )
    starts = slack.calls_to("chat.startStream")
    assert len(starts) == len(messages) >= 2  # every piece was its own native stream
    assert len(slack.calls_to("chat.stopStream")) == len(starts)


async def test_slack_connect_recipients_stop_errors_are_harmless(
    harness: Harness, caplog: Any
) -> None:
    harness.claude.default = Script(text="Visible already.")
    harness.slack.fail_next("chat.stopStream", "user_not_found")
    caplog.set_level("DEBUG", logger="slackbot.native_reply")
    top = await harness.dm("hi")
    await harness.settled()
    assert len(harness.slack.calls_to("chat.stopStream")) == 1, "not retried"
    assert harness.slack.calls_to("chat.update") == []
    [record] = [r for r in caplog.records if "user_not_found" in r.getMessage()]
    assert record.levelname == "DEBUG"
    # the stop carried no status then: the turn sets the session active itself
    assert harness.slack.session_status(DM, top["ts"]) == "active"


async def test_searches_show_as_thinking_steps_with_the_cited_urls(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    url = "https://example.org/lisbon"
    claude.default = Script(
        blocks=[
            ServerToolUse("web_search", {"query": "lisbon weather april"}),
            WebSearchResult([{"url": url, "title": "Lisbon in April"}], seconds=0.4),
            Text("Mild and sunny", citations=[WebCitation(url, "mild", title="Lisbon in April")]),
            Text("."),
        ],
        tokens_per_second=100,
    )
    async with bot(slack, claude, db_path) as h:
        top = await h.dm("weather in Lisbon in April?")
        await h.settled()
        [message] = h.replies(DM, top["ts"])
        tasks = message["tasks"]
        [search] = tasks.values()
        assert search["title"] == "Searching the web for “lisbon weather april”"
        assert search["status"] == "complete"
        assert search["sources"] == [{"type": "url", "url": url, "text": "Lisbon in April"}]
        chunks = [
            chunk
            for c in slack.calls
            if c.method.startswith("chat.") and c.method.endswith("Stream")
            for chunk in c.params.get("chunks") or []
            if chunk["type"] == "task_update"
        ]
        assert chunks[0]["status"] == "in_progress"
        text = h.texts(DM, top["ts"])[0]
        assert text.startswith("Mild and sunny [1](https://example.org/lisbon).")
        assert "Sources" in text


async def test_a_stream_slack_ended_before_the_stop_is_finished_with_chat_update(
    harness: Harness,
) -> None:
    harness.claude.default = Script(text="The end arrives.", tokens_per_second=200)
    harness.slack.fail_next("chat.stopStream", "message_not_in_streaming_state")
    top = await harness.dm("hi")
    await harness.settled()
    assert harness.texts(DM, top["ts"]) == ["The end arrives."]
    [update] = harness.slack.calls_to("chat.update")
    assert update.params["ts"] == harness.slack.calls_to("chat.startStream")[0].response["ts"]  # type: ignore[index]
    assert harness.slack.session_status(DM, top["ts"]) == "active"


async def test_a_start_that_fails_on_slacks_side_is_not_remembered(harness: Harness) -> None:
    harness.claude.default = Script(text="Whole.")
    harness.slack.fail_next("chat.startStream", "internal_error", status=500, times=3)
    first = await harness.dm("one")
    await harness.settled()
    second = await harness.dm("two")
    await harness.settled()
    assert harness.texts(DM, first["ts"]) == ["Whole."]
    assert harness.texts(DM, second["ts"]) == ["Whole."]
    assert harness.slack.calls_to("chat.startStream")[-1].error is None, "tried again"


async def test_a_stream_that_goes_idle_too_long_continues_with_chat_update(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.stream_idle_ttl = 0.5  # Slack's idle expiry, shrunk
    claude.default = Script(
        blocks=[
            Text("Let me look that up. "),
            ServerToolUse("web_search", {"query": "slow"}),
            WebSearchResult([{"url": "https://example.org/", "title": "Ex"}], seconds=1.0),
            Text("Found it."),
        ],
        tokens_per_second=200,
    )
    async with bot(slack, claude, db_path) as h:
        top = await h.dm("look it up")
        await h.settled()
        [text] = h.texts(DM, top["ts"])
        assert text.startswith("Let me look that up.") and "Found it." in text
        assert any(c.error == "message_not_in_streaming_state" for c in slack.calls)
        assert slack.calls_to("chat.update")


async def test_many_dm_replies_at_once_stay_within_tier_2(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.stream_start_stop_per_minute = 20  # Slack's Tier 2, enforced
    claude.default = Script(text="Short and sweet.", ttft=0.3, tokens_per_second=100)
    async with bot(slack, claude, db_path) as h:
        tops = [await h.dm(f"question {i}") for i in range(25)]
        await h.settled(timeout=30)
        for top in tops:
            assert h.texts(DM, top["ts"]) == ["Short and sweet."]
        starts = slack.calls_to("chat.startStream")
        assert 0 < len(starts) <= 9
        limited = [c for c in slack.calls if c.method.endswith("Stream") and c.error]
        assert limited == [], "no start or stop refused"
        # the others were chat.update replies: a placeholder each
        assert len(slack.calls_to("chat.postMessage")) == 25 - len(starts)


async def test_a_native_reply_carries_the_feedback_buttons_in_its_stop(harness: Harness) -> None:
    harness.claude.default = Script(text="Rate me.")
    top = await harness.dm("hi")
    await harness.settled()
    [stop] = harness.slack.calls_to("chat.stopStream")
    [block] = stop.params["blocks"]
    assert block["type"] == "context_actions"
    [reply] = harness.replies(DM, top["ts"])
    assert harness.slack.feedback_buttons(DM, reply["ts"]) is not None
    status, _ = await harness.click_feedback(DM, reply["ts"], good=True)
    assert status == 200
    await harness.slack.wait_for(lambda: harness.query("SELECT vote FROM feedback"))
    assert harness.query("SELECT vote FROM feedback") == [("good",)]
