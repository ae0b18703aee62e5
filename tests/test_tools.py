"""Claude's current stream through the real bot: thinking, web search, sources, pause_turn."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fakes.claude import (
    FakeClaude,
    Script,
    ServerToolUse,
    Text,
    Thinking,
    WebCitation,
    WebSearchResult,
    current_models,
)
from fakes.harness import CHANNEL, Harness, conversation
from fakes.slack import FakeSlack
from tests.started import started

RUST = "https://blog.rust-lang.org/2023/12/21/async-fn-rpit-in-traits.html"
DOCS = "https://doc.rust-lang.org/reference/items/traits.html"
RESULTS = [
    {"url": RUST, "title": "Announcing async fn in traits", "page_age": "2 years ago"},
    {"url": DOCS, "title": "Traits - The Rust Reference", "page_age": "1 year ago"},
]


@pytest.fixture
async def current() -> AsyncIterator[FakeClaude]:
    async with FakeClaude(models=current_models()) as fake:
        fake.thinking_display = "omitted"
        yield fake


def searched(*after: Text, stop_reason: str = "end_turn") -> Script:
    return Script(
        blocks=[
            Thinking("The user asks about async traits; let me search.", signature="sig-1"),
            ServerToolUse("web_search", {"query": "rust async traits"}),
            WebSearchResult(RESULTS),
            *after,
        ],
        stop_reason=stop_reason,
        tokens_per_second=200,
    )


async def test_a_searched_answer_shows_its_sources_and_no_reasoning(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.default = searched(
        Text("Async functions in traits are stable", citations=[WebCitation(RUST, "stable")]),
        Text(" since Rust 1.75, and the reference covers them", citations=[WebCitation(DOCS, "x")]),
        Text(" in detail", citations=[WebCitation(RUST, "again")]),
        Text("."),
    )
    async with started(slack, current, db_path) as harness:
        root = await harness.mention("are async traits stable?")
        await harness.settled()
        [text] = harness.texts(CHANNEL, root["ts"])
        request = current.requests[-1]
        assert request["thinking"]["type"] == "adaptive"
        assert [t["name"] for t in request["tools"]] == ["web_search", "web_fetch"]
    assert text == (
        f"Async functions in traits are stable [1]({RUST}) since Rust 1.75, and the reference"
        f" covers them [2]({DOCS}) in detail [1]({RUST}).\n\n"
        f"**Sources**\n1. [Announcing async fn in traits]({RUST})\n"
        f"2. [Traits - The Rust Reference]({DOCS})"
    )
    assert "let me search" not in text


async def test_text_after_a_tool_call_is_a_new_paragraph_and_stored_with_its_sources(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.queue.append(
        Script(
            blocks=[
                Text("Let me look that up."),
                ServerToolUse("web_search", {"query": "rust async traits"}),
                WebSearchResult(RESULTS),
                Text("They are stable.", citations=[WebCitation(RUST, "stable")]),
            ],
            tokens_per_second=200,
        )
    )
    async with started(slack, current, db_path) as harness:
        root = await harness.mention("are async traits stable?")
        await harness.settled()
        [text] = harness.texts(CHANNEL, root["ts"])
        assert text.startswith(f"Let me look that up.\n\nThey are stable. [1]({RUST})")
        current.default = Script(text="You're welcome.")
        await harness.mention("thanks", thread_ts=root["ts"])
        await harness.settled()
    [_, reply, _] = conversation(current.requests[-1])
    # later mentions see the final text with its sources, not the search results
    assert reply["role"] == "assistant"
    assert [b["type"] for b in reply["content"]] == ["text"]
    assert "**Sources**" in reply["content"][0]["text"]


async def test_no_web_result_no_sources_list(harness: Harness) -> None:
    harness.claude.default = Script(text="Plain answer.")
    root = await harness.mention("hi")
    await harness.settled()
    assert harness.texts(CHANNEL, root["ts"]) == ["Plain answer."]


async def test_pause_turn_is_continued_into_the_same_reply(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.queue.extend(
        [
            searched(stop_reason="pause_turn"),
            Script(blocks=[Text("Found it: yes.", citations=[WebCitation(RUST, "yes")])]),
        ]
    )
    async with started(slack, current, db_path) as harness:
        root = await harness.mention("are async traits stable?")
        await harness.settled()
        [text] = harness.texts(CHANNEL, root["ts"])
    assert text.startswith(f"Found it: yes. [1]({RUST})")
    first, second = current.requests[-2:]
    assert current.continuations == [second]
    assert second["messages"][-1]["role"] == "assistant"  # the paused content, verbatim
    assert [b["type"] for b in second["messages"][-1]["content"]] == [
        "thinking",
        "server_tool_use",
        "web_search_tool_result",
    ]
    assert second["tools"][0]["max_uses"] == first["tools"][0]["max_uses"] - 1


async def test_a_reply_that_keeps_pausing_ends_with_a_note(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.responder = lambda body: searched(stop_reason="pause_turn")
    async with started(slack, current, db_path, web_search_max_uses=50) as harness:
        root = await harness.mention("search forever")
        await harness.settled()
        [text] = harness.texts(CHANNEL, root["ts"])
    assert len(current.requests) == 6  # the first request and five continuations
    assert "incomplete" in text and "several rounds" in text


async def test_an_unhandled_stop_reason_gets_a_note(harness: Harness) -> None:
    harness.claude.default = Script(text="Half", stop_reason="model_context_window_exceeded")
    root = await harness.mention("hi")
    await harness.settled()
    [text] = harness.texts(CHANNEL, root["ts"])
    assert text.startswith("Half") and "stopped early" in text


async def test_start_up_drops_what_the_model_cannot_take(
    slack: FakeSlack, current: FakeClaude, db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    from fakes.claude import model_info

    current.models["claude-plain"] = model_info(
        "claude-plain",
        "Plain",
        created_at="2026-01-01T00:00:00Z",
        line="plain",
        thinking_types=("disabled",),
        effort_levels=("low", "high"),
        server_tools=("web_search",),
    )
    async with started(
        slack, current, db_path, claude_model="claude-plain", claude_effort="max"
    ) as harness:
        await harness.mention("hi")
        await harness.settled()
    request = current.requests[-1]
    assert "thinking" not in request and "output_config" not in request
    assert [t["name"] for t in request["tools"]] == ["web_search"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("CLAUDE_EFFORT=max" in w for w in warnings)
    assert any("web_fetch" in w for w in warnings)


async def test_while_it_searches_the_reply_says_so_then_the_answer_replaces_it(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.thinking_display = "summarized"
    script = searched(Text("Yes, they are stable.", citations=[WebCitation(RUST, "stable")]))
    script.tokens_per_second = 20  # slow enough for every step to be shown
    current.default = script
    async with started(slack, current, db_path, edit_interval=5.0) as harness:
        root = await harness.mention("are async traits stable?")
        await harness.settled(timeout=20)
        [text] = harness.texts(CHANNEL, root["ts"])
    shown = [c.shown for c in slack.calls_to("chat.update")]
    assert any("Searching the web for “rust async traits”" in s for s in shown)
    # the switches are not held by the 5-second edit interval
    assert len(shown) >= 3
    assert "Searching" not in text and "let me search" not in text.lower()
    assert text.startswith("Yes, they are stable.")
