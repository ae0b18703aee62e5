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


def test_breakpoints_go_on_the_last_user_block_and_the_assistant_block_before_it() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"type": "text", "text": "c"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "d"}, {"type": "text", "text": "e"}]},  # noqa: E501
        {"role": "user", "content": [{"type": "text", "text": "f"}]},
    ]  # fmt: skip
    original = [dict(m) for m in messages]
    marked = cache_breakpoints(messages)
    assert marks({"messages": marked}) == [(3, 1), (4, 0)]
    assert marked[3]["content"][1]["cache_control"] == {"type": "ephemeral"}
    assert messages == original  # the input is not modified
    assert without_marks(marked) == messages


async def test_requests_are_marked_for_caching(harness: Harness) -> None:
    first = await harness.mention("hello")
    await harness.settled()
    await harness.mention("and again", thread_ts=first["ts"])
    await harness.settled()

    one, two = harness.claude.requests
    assert "cache_control" not in one and marks(one) == [(0, 0)]  # the stored conversation
    # the reply to the first mention (where its prompt ended) and the new message
    assert "cache_control" not in two and marks(two) == [(1, 0), (2, 0)]
    assert [m["role"] for m in two["messages"]] == ["user", "assistant", "user"]
    # after the breakpoints: this mention's context, never cached, never stored
    for request in (one, two):
        assert request["messages"][-1]["content"][-1]["text"].startswith("[Context")
    assert "[Context" not in str(two["messages"][:2])


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
    # everything but the mention's context (after the breakpoints) is written to the cache
    assert 0 < u1.input_tokens < 200
    assert u1.cache_creation_input_tokens == harness.claude.estimate_tokens(one) - u1.input_tokens
    # the whole first prompt is read back; only the reply and the new messages are written
    assert u2.cache_read_input_tokens == u1.cache_creation_input_tokens > 0
    assert u2.cache_creation_input_tokens + u2.input_tokens == harness.claude.estimate_tokens(
        two
    ) - (u2.cache_read_input_tokens)
    assert 0 < u2.input_tokens < 200
    # byte-stable: the first request's stored blocks are a prefix of the second's
    first_blocks = without_marks(one["messages"])[0]["content"][:-1]  # less its context
    assert without_marks(two["messages"])[0]["content"] == first_blocks
    assert two["system"] == one["system"]


async def test_thirty_turn_thread_bills_at_least_70_percent_fewer_input_units() -> None:
    result = await billed_units(30)
    assert result.turns == 30
    assert result.cache_read_tokens > 0 and result.saved >= 0.70, str(result)
