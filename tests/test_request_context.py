"""The mention's context: today's date and time for the asker, where, who — sent last."""

from __future__ import annotations

from datetime import UTC, datetime

from fakes.harness import CHANNEL, Harness
from slackbot.events import Incoming
from slackbot.people import Person
from slackbot.request_context import HEADER, describe

NOW = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)


def test_the_time_is_the_askers_and_the_place_is_named() -> None:
    msg = Incoming(team="T1", channel="C1", ts="1.0", user="U1", text="hi")
    text = describe(msg, Person("U1", "Ana", tz="Asia/Tokyo"), "#design", NOW)
    assert text.splitlines() == [
        HEADER,
        "Now: Wednesday 2 December 2026, 06:30 (Asia/Tokyo, UTC+09:00, the asker's time zone)",
        "Where: the Slack channel #design",
        "Asking: Ana",
    ]


def test_a_dm_and_an_unknown_time_zone() -> None:
    msg = Incoming(team="T1", channel="D1", ts="1.0", user="U1", text="hi", is_dm=True)
    text = describe(msg, Person("U1", "Ana", tz="Mars/Olympus"), None, NOW)
    assert "Now: Tuesday 1 December 2026, 21:30 (UTC, the asker's time zone)" in text
    assert "Where: a direct message between you and Ana" in text


async def test_each_request_ends_with_the_mentions_context(harness: Harness) -> None:
    harness.slack.add_channel(CHANNEL, "design")
    await harness.mention("what day is it?")
    await harness.settled()
    request = harness.claude.requests[-1]
    last = request["messages"][-1]["content"][-1]
    assert last["text"].startswith(HEADER) and "cache_control" not in last
    assert "#design" in last["text"] and "Asking: Alice" in last["text"]
    assert "Europe/London" in last["text"]
    # the person's own message comes right before it, and carries the breakpoint
    assert request["messages"][-1]["content"][-2]["text"] == "Alice: what day is it?"
