"""The Claude side of a reply: one streamed Messages API call, as typed events.

Errors are caught here and end the stream as a `Failed` event after whatever had arrived, so
the caller can always finish the Slack message (partial text plus a note) and the bot keeps
serving.

Every request is marked for prompt caching (`cache_breakpoints`): the system prompt and the
conversation so far are written to the cache once and read back at a tenth of the price by the
next mention in the same thread.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
import httpx2

from slackbot.errors import StreamCutOff
from slackbot.request_options import RequestOptions
from slackbot.stream_events import (
    Citation,
    Failed,
    Stop,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ThinkingEnded,
    ThinkingStarted,
    ToolCall,
    ToolResult,
    Usage,
)

log = logging.getLogger(__name__)

Message = dict[str, Any]
#: Introduces a channel's own instructions (`/claude prompt set`) in the system prompt.
CHANNEL_PROMPT_HEADER = "Instructions for this Slack channel, set by its admins:"
EPHEMERAL = {"type": "ephemeral"}


def _marked(message: Message) -> Message:
    content = list(message["content"])
    content[-1] = {**content[-1], "cache_control": EPHEMERAL}
    return {**message, "content": content}


def cache_breakpoints(messages: Sequence[Message]) -> list[Message]:
    """A copy of `messages` with prompt-cache breakpoints on the last block of the last user
    turn (the whole stored conversation, for the next mention to read) and on the last block of
    the assistant turn before it (where the previous request's prompt ended, plus the reply).

    The second one is there because the API looks back at most 20 blocks from a breakpoint for
    a cached prefix: a mention after a busy stretch of the thread would otherwise miss the
    previous prompt. The blocks themselves are unchanged, so the prefix stays byte-stable from
    one mention to the next. Whatever follows (the mention's context, a paused turn) is after
    the breakpoints and never breaks the cached prefix.
    """
    marked = list(messages)
    last_user = next(
        (i for i in range(len(marked) - 1, -1, -1) if marked[i]["role"] == "user"), None
    )
    if last_user is None:
        return marked
    marked[last_user] = _marked(marked[last_user])
    for index in range(last_user - 1, -1, -1):
        if marked[index]["role"] == "assistant":
            marked[index] = _marked(marked[index])
            break
    return marked


def request_messages(
    history: Sequence[Message],
    *,
    context: str | None = None,
    paused: Sequence[dict[str, Any]] = (),
) -> list[Message]:
    """The request's messages: the stored conversation (ending with a user turn) marked for
    caching, then this mention's context as the last user block, then — continuing a
    `pause_turn` — the paused assistant content, verbatim."""
    messages = cache_breakpoints(history)
    if context and messages and messages[-1]["role"] == "user":
        last = messages[-1]
        text = {"type": "text", "text": context}
        messages[-1] = {**last, "content": [*last["content"], text]}
    if paused:
        messages.append({"role": "assistant", "content": list(paused)})
    return messages


@dataclass(frozen=True)
class Claude:
    client: anthropic.AsyncAnthropic
    model: str
    max_tokens: int
    system: str
    options: RequestOptions = field(default_factory=RequestOptions)

    def with_channel_prompt(self, prompt: str | None) -> Claude:
        """This client with a channel's extra instructions after the global system prompt.

        They are the same for every reply in the channel, so the system prompt (the start of
        the cached prefix) stays byte-stable and prompt caching keeps working."""
        if not prompt:
            return self
        return dataclasses.replace(
            self, system=f"{self.system}\n\n{CHANNEL_PROMPT_HEADER}\n{prompt}"
        )

    async def count_tokens(self, messages: Sequence[Message]) -> int | None:
        """The API's count of a request's input tokens (free, rate-limited separately); None
        when it cannot be had — the caller then goes by its estimate."""
        try:
            counted = await self.client.messages.count_tokens(
                model=self.model,
                system=self.system,
                messages=list(messages),  # type: ignore[arg-type]
            )
        except anthropic.APIError as exc:
            log.info("token count failed (%r): going by the estimate", exc)
            return None
        return int(counted.input_tokens)

    async def stream(
        self, messages: Sequence[Message], *, searches_used: int = 0
    ) -> AsyncIterator[StreamEvent]:
        """Stream one reply as typed events, ending with `Stop` or `Failed`.

        `messages` is what `request_messages` builds. Never raises (but for cancellation): a
        failed call is a `Failed` event after whatever had arrived, so the caller can always
        finish the Slack message with a note.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": self.system,
            "messages": list(messages),
            **self.options.body(searches_used=searches_used),
            "stream": True,
        }
        blocks = _Blocks()
        try:
            # The raw events as dicts: the SDK still sends, retries and raises (an `error` event
            # included), but builds no pydantic model per delta and no message snapshot, which
            # was most of the CPU of a streamed reply (see bench/).
            raw_events = await self.client.post(
                "/v1/messages",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            )
            async with raw_events:
                async for raw in raw_events:
                    for event in blocks.take(cast(dict[str, Any], raw)):
                        yield event
                        if isinstance(event, Stop):
                            return
            # The connection closed cleanly before `message_stop`: the reply is not whole.
            yield Failed(StreamCutOff("the stream ended before message_stop"))
        except (anthropic.APIError, httpx2.HTTPError) as exc:  # a cut-off or stalled stream
            log.warning("Claude call failed: %r", exc)  # surfaces as the transport's error
            yield Failed(exc)
        except Exception as exc:
            log.exception("Claude stream broke")
            yield Failed(exc)


class _Blocks:
    """Raw SSE events → typed events, assembling the content blocks as the API would return
    them (a `pause_turn` continuation must send them back verbatim)."""

    def __init__(self) -> None:
        self.content: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._parts: list[str] = []  # the current block's text, thinking or input JSON
        self._signature: list[str] = []
        self._stop: Stop | None = None
        self._after_other = False  # a non-text block came since the last text block

    def take(self, event: dict[str, Any]) -> list[StreamEvent]:
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event["delta"])
        if kind == "content_block_start":
            return self._start(dict(event["content_block"]))
        if kind == "content_block_stop":
            return self._finish_block()
        if kind == "message_start":
            message = event["message"]
            return [Usage(message.get("usage") or {}, model=message.get("model"))]
        if kind == "message_delta":
            self._stop = Stop((event.get("delta") or {}).get("stop_reason"), tuple(self.content))
            return [Usage(event.get("usage") or {})]
        if kind == "message_stop":
            return [self._stop or Stop(None, tuple(self.content))]
        return []

    def _delta(self, delta: dict[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta":
            self._parts.append(delta["text"])
            return [TextDelta(delta["text"])]
        if kind == "thinking_delta":
            self._parts.append(delta["thinking"])
            return [ThinkingDelta(delta["thinking"])]
        if kind == "input_json_delta":
            self._parts.append(delta.get("partial_json") or "")
        elif kind == "signature_delta":
            self._signature.append(delta["signature"])
        elif kind == "citations_delta" and self._current is not None:
            self._current.setdefault("citations", []).append(delta["citation"])
        return []

    def _start(self, block: dict[str, Any]) -> list[StreamEvent]:
        self._current, self._parts, self._signature = block, [], []
        kind = str(block.get("type") or "")
        if kind == "text":
            events: list[StreamEvent] = []
            if self._after_other and any(b.get("type") == "text" for b in self.content):
                events.append(TextDelta("\n\n"))  # text after a tool call is a new paragraph
            self._after_other = False
            if block.get("text"):
                self._parts.append(block["text"])
                events.append(TextDelta(block["text"]))
            return events
        self._after_other = True
        if kind == "thinking":
            return [ThinkingStarted()]
        if kind in ("server_tool_use", "tool_use"):  # its input follows; say what it is now
            return [ToolCall(block.get("id", ""), block.get("name", ""), {})]
        if kind.endswith("_tool_result"):
            return [ToolResult(block.get("tool_use_id", ""), kind, block.get("content"))]
        return []

    def _finish_block(self) -> list[StreamEvent]:
        block, self._current = self._current, None
        if block is None:
            return []
        kind = block.get("type")
        joined = "".join(self._parts)
        events: list[StreamEvent] = []
        if kind == "text":
            block["text"] = joined
            if block.get("citations"):
                events = [Citation(tuple(block["citations"]))]
        elif kind == "thinking":
            block["thinking"] = joined
            block["signature"] = block.get("signature", "") + "".join(self._signature)
            events = [ThinkingEnded()]
        elif kind in ("server_tool_use", "tool_use"):
            try:
                block["input"] = json.loads(joined) if joined else block.get("input") or {}
            except ValueError:
                block["input"] = {}
            events = [ToolCall(block.get("id", ""), block.get("name", ""), block["input"])]
        self.content.append(block)
        return events
