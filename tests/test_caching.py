"""Prompt caching: where the breakpoints go; the next mention reads the thread from the cache."""

from __future__ import annotations

from typing import Any

from fakes.caching import billed_units
from fakes.claude import Script
from fakes.harness import Harness
from slackbot.claude import cache_breakpoints


def marks(request: dict[str, Any]) -> list[tuple[int, int]]:
    """(message, block) positions that carry a cache_control."""
    return [
        (i, j)
        for i, message in enumerate(request["messages"])
        for j, block in enumerate(message["content"])
        if "cache_control" in block
    ]


def without_marks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "role": m["role"],
            "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]],
        }
        for m in messages
    ]


def test_breakpoint_goes_on_the_last_assistant_block_only() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"type": "text", "text": "c"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "d"}, {"type": "text", "text": "e"}]},  # noqa: E501
        {"role": "user", "content": [{"type": "text", "text": "f"}]},
    ]  # fmt: skip
    original = [dict(m) for m in messages]
    marked = cache_breakpoints(messages)
    assert marks({"messages": marked}) == [(3, 1)]
    assert marked[3]["content"][1]["cache_control"] == {"type": "ephemeral"}
    assert messages == original  # the input is not modified
    assert without_marks(marked) == messages


async def test_requests_are_marked_for_caching(harness: Harness) -> None:
    first = await harness.mention("hello")
    await harness.settled()
    await harness.mention("and again", thread_ts=first["ts"])
    await harness.settled()

    one, two = harness.claude.requests
    assert one["cache_control"] == {"type": "ephemeral"} and marks(one) == []
    assert two["cache_control"] == {"type": "ephemeral"}
    assert marks(two) == [(1, 0)]  # the reply to the first mention, where its prompt ended
    assert [m["role"] for m in two["messages"]] == ["user", "assistant", "user"]


async def test_second_mention_reads_the_thread_from_the_cache(harness: Harness) -> None:
    harness.claude.default = Script(text="A long and careful answer. " * 20)
    first = await harness.mention("first question " * 20)
    await harness.settled()
    harness.slack.add_user_message("C1", "U2", "a side remark", thread_ts=first["ts"])
    await harness.mention("second question", thread_ts=first["ts"])
    await harness.settled()

    one, two = harness.claude.requests
    u1, u2 = harness.claude.usages
    assert u1.cache_read_input_tokens == 0
    assert u1.cache_creation_input_tokens == harness.claude.estimate_tokens(one)
    # the whole first prompt is read back; only the reply and the new messages are written
    assert u2.cache_read_input_tokens == harness.claude.estimate_tokens(one) > 0
    assert u2.cache_creation_input_tokens == harness.claude.estimate_tokens(two) - (
        u2.cache_read_input_tokens
    )
    assert u2.input_tokens == 0
    # byte-stable: the first request's messages are a prefix of the second's
    assert without_marks(two["messages"])[:1] == one["messages"]
    assert two["system"] == one["system"]


async def test_thirty_turn_thread_bills_at_least_70_percent_fewer_input_units() -> None:
    result = await billed_units(30)
    assert result.turns == 30
    assert result.cache_read_tokens > 0 and result.saved >= 0.70, str(result)
