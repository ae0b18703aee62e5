"""A reply's Slack side under Slack's failures: rate limits, 5xx, timeouts, refused edits."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, Harness, start_harness
from fakes.slack import FakeSlack
from slackbot.edit_budget import EditBudget
from slackbot.reply_choice import ChosenReplies
from slackbot.update_reply import UpdateReply


@contextlib.asynccontextmanager
async def harness_with(
    slack: FakeSlack, claude: FakeClaude, db_path: str, **overrides: Any
) -> AsyncIterator[Harness]:
    h, runner = await start_harness(slack, claude, db_path, **overrides)
    try:
        yield h
    finally:
        await runner.cleanup()
        await h.close()
        await h.bot.close()


async def test_finals_refused_together_queue_instead_of_stampeding(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """Fifteen replies finish together while Slack's Tier-3 window is full: each final is
    refused at most once, then they go out one by one as the budget allows."""
    slack.chat_update_per_minute = 10
    slack.minute_seconds = 2.0  # Slack: 10 edits per 2 s, i.e. 300 a minute
    text = "word " * 40
    claude.default = Script(text=text, ttft=0.2, tokens_per_second=20)
    # The operator's budget (360 a minute) is a bit above what Slack enforces.
    async with harness_with(
        slack, claude, db_path, edit_budget_per_minute=360.0, edit_burst=5
    ) as h:
        mentions = [await h.mention(f"q{i}", channel=f"C{i}") for i in range(15)]
        await h.settled(timeout=30)

        for i, m in enumerate(mentions):
            assert [t.strip() for t in h.texts(f"C{i}", m["ts"])] == [text.strip()]
        updates = slack.calls_to("chat.update")
        refused = Counter(c.params["ts"] for c in updates if c.error == "ratelimited")
        assert refused, "the scenario must provoke Slack's rate limit"
        assert max(refused.values()) == 1, f"refused more than once: {refused}"
        # placeholders only: posts never wait for the chat.update budget
        posts = slack.calls_to("chat.postMessage")
        assert len(posts) == 15 and not any(c.error for c in posts)


async def test_finals_into_a_window_another_instance_filled_are_refused_once_each(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """Fifteen answers arrive together just after another instance of the app has used up
    the Tier-3 window: no final is refused twice, and all of them land."""
    slack.chat_update_per_minute = 10
    slack.minute_seconds = 2.0
    text = "All at once."
    claude.default = Script(text=text, ttft=2.0)
    other = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    async with harness_with(
        slack, claude, db_path, edit_budget_per_minute=360.0, edit_burst=5
    ) as h:
        mentions = [await h.mention(f"q{i}", channel=f"C{i}") for i in range(15)]
        await slack.wait_for(lambda: len(claude.requests) == 15)
        # The other instance edits its own message at Slack's pace until the answers arrive.
        own = await other.chat_postMessage(channel="C99", text="another instance")
        for i in range(10):
            # its own edits may meet the limit too once our finals start: it carries on
            with contextlib.suppress(SlackApiError):
                await other.chat_update(channel="C99", ts=own["ts"], text=f"edit {i}")
            await asyncio.sleep(0.19)
        await h.settled(timeout=30)

        for i, m in enumerate(mentions):
            assert h.texts(f"C{i}", m["ts"]) == [text]
        ours = [c for c in slack.calls_to("chat.update") if c.params["channel"] != "C99"]
        refused = Counter(c.params["ts"] for c in ours if c.error == "ratelimited")
        assert refused, "the scenario must provoke Slack's rate limit"
        assert max(refused.values()) == 1, f"refused more than once: {refused}"


async def test_placeholder_is_retried_with_backoff_through_5xx(harness: Harness) -> None:
    # slack_sdk itself retries a 5xx twice: three in a row used to drop the mention silently
    harness.slack.fail_next("chat.postMessage", "internal_error", status=500, times=5)
    harness.claude.default = Script(text="Here after all.")
    mention = await harness.mention("hello")
    await harness.settled(timeout=15)
    assert harness.texts(CHANNEL, mention["ts"]) == ["Here after all."]
    posts = harness.slack.calls_to("chat.postMessage")
    assert [c.error for c in posts] == ["internal_error"] * 5 + [None]


@pytest.mark.parametrize(
    ("error", "status"),
    [("cant_update_message", None), ("internal_error", 500), ("ratelimited", None)],
)
async def test_an_answer_posted_anew_replaces_its_placeholder(
    harness: Harness, error: str, status: int | None
) -> None:
    """Every chat.update fails: the answer goes out as a new message and the placeholder,
    which would say "Thinking…" above it forever, is deleted."""
    harness.slack.fail_next("chat.update", error, status=status, retry_after=0, times=40)
    harness.claude.default = Script(text="The answer.", ttft=0.3)
    mention = await harness.mention("hello")
    [placeholder] = await harness.slack.wait_for(lambda: harness.replies(CHANNEL, mention["ts"]))
    # Forty refusals cut the workspace's budget to its floor: the session's `active` status
    # (at a final text's priority) waits its turn there.
    await harness.settled(timeout=30)

    assert harness.texts(CHANNEL, mention["ts"]) == ["The answer."]
    assert (CHANNEL, placeholder["ts"]) not in harness.slack.messages
    assert [c.params["ts"] for c in harness.slack.calls_to("chat.delete")] == [placeholder["ts"]]


async def test_a_final_edit_slower_than_the_client_timeout_is_posted_anew(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """A timeout is not a SlackApiError: it used to escape `finish` and leave the placeholder."""
    claude.default = Script(text="The answer.", ttft=0.3)
    slack.delay("chat.update", 3.0)
    async with harness_with(slack, claude, db_path, slack_timeout=1.0) as h:
        mention = await h.mention("hello")
        [placeholder] = await slack.wait_for(lambda: h.replies(CHANNEL, mention["ts"]))
        await h.settled()
        # the edits Slack was still working on when the client gave up land after the delete
        await slack.wait_for(
            lambda: all(c.response for c in slack.calls_to("chat.update")), timeout=5
        )

        assert h.texts(CHANNEL, mention["ts"]) == ["The answer."]
        assert (CHANNEL, placeholder["ts"]) not in slack.messages
        assert {c.error for c in slack.calls_to("chat.update")} == {"message_not_found"}


async def test_a_long_reply_whose_edits_all_time_out_loses_no_text(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """Sealing the first message before continuing in a second one fails too: the text it
    should have held is not skipped, it goes out with the rest."""
    text = " ".join(f"word{i}" for i in range(4000))  # about 27,000 characters: three messages
    claude.default = Script(text=text, ttft=0.2, chars_per_token=400)
    slack.delay("chat.update", 3.0)
    async with harness_with(slack, claude, db_path, slack_timeout=1.0) as h:
        mention = await h.mention("write a lot")
        await h.settled()
        await slack.wait_for(
            lambda: all(c.response for c in slack.calls_to("chat.update")), timeout=5
        )
        pieces = h.texts(CHANNEL, mention["ts"])
        assert len(pieces) >= 3
        assert " ".join(pieces).split() == text.split()


def budget_of(h: Harness, team: str = "T1") -> EditBudget:
    replies = h.bot.conversations.replies
    assert isinstance(replies, ChosenReplies)
    return replies.updates.budgets.for_team(team)


async def test_a_placeholder_slack_refuses_holds_nothing(harness: Harness) -> None:
    harness.slack.fail_next("chat.postMessage", "not_in_channel")
    await harness.mention("hello")
    await harness.settled()
    assert harness.slack.bot_messages(CHANNEL) == []
    budget = budget_of(harness)
    assert (budget.open_replies, budget.waiting) == (0, 0)


async def test_a_finish_that_raises_releases_the_budget(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="Nowhere to go.", ttft=0.5)
    async with harness_with(slack, claude, db_path) as h:
        mention = await h.mention("hello")
        await slack.wait_for(lambda: h.replies(CHANNEL, mention["ts"]))
        slack.fail_next("chat.update", "cant_update_message", times=20)
        slack.fail_next("chat.postMessage", "not_in_channel")  # the answer, posted anew
        await slack.wait_for(lambda: h.bot.conversations.handled == 1)
        budget = budget_of(h)
        assert (budget.open_replies, budget.waiting) == (0, 0)
        # with the answer nowhere, the placeholder is left as it is rather than deleted
        assert slack.calls_to("chat.delete") == []


async def test_a_final_cancelled_while_it_waits_its_turn_releases_the_budget(
    slack: FakeSlack,
) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    budget = EditBudget(per_minute=60, burst=5)
    reply = UpdateReply(client, budget, channel=CHANNEL, thread_ts=None, interval=0.05)
    await reply.start("_Thinking…_")
    slack.fail_next("chat.update", "ratelimited", retry_after=30)
    finishing = asyncio.create_task(reply.finish("done"))
    await slack.wait_for(lambda: budget.waiting == 1)  # refused, then in line behind the hold
    assert budget.open_replies == 1
    finishing.cancel()  # a shutdown, say
    with contextlib.suppress(asyncio.CancelledError):
        await finishing
    assert (budget.open_replies, budget.waiting) == (0, 0)
