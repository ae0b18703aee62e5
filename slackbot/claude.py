"""The Claude side of a reply: one streamed Messages API call, as typed events.

Errors are caught here and end the stream as a `Failed` event after whatever had arrived, so
the caller can always finish the Slack message (partial text plus a note) and the bot keeps
serving.

Every request is marked for prompt caching (top-level `cache_control`, plus `cache_breakpoints`):
the system prompt and the conversation so far are written to the cache once and read back at a
tenth of the price by the next mention in the same thread.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
import httpx2

from slackbot.errors import StreamCutOff
from slackbot.request_options import RequestOptions
from slackbot.stream_events import Failed, Stop, StreamEvent, TextDelta, Usage

log = logging.getLogger(__name__)

Message = dict[str, Any]
EPHEMERAL = {"type": "ephemeral"}


def cache_breakpoints(messages: Sequence[Message]) -> list[Message]:
    """A copy of `messages` with a prompt-cache breakpoint on the last block of the last
    assistant turn: where the previous request's prompt ended, plus the reply to it.

    The request's top-level `cache_control` marks its last block (the whole prompt, for the next
    mention to read). This second breakpoint is there because the API looks back at most 20
    blocks from a breakpoint for a cached prefix: a mention after a busy stretch of the thread
    would otherwise miss the previous prompt. The blocks themselves are unchanged, so the
    prefix stays byte-stable from one mention to the next.
    """
    marked = list(messages)
    for index in range(len(marked) - 1, -1, -1):
        if marked[index]["role"] == "assistant":
            content = list(marked[index]["content"])
            content[-1] = {**content[-1], "cache_control": EPHEMERAL}
            marked[index] = {**marked[index], "content": content}
            break
    return marked


@dataclass(frozen=True)
class Claude:
    client: anthropic.AsyncAnthropic
    model: str
    max_tokens: int
    system: str
    options: RequestOptions = field(default_factory=RequestOptions)

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

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[StreamEvent]:
        """Stream one reply as typed events, ending with `Stop` or `Failed`.

        Never raises (but for cancellation): a failed call is a `Failed` event after whatever
        had arrived, so the caller can always finish the Slack message with a note.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": self.system,
            "messages": cache_breakpoints(messages),
            "cache_control": EPHEMERAL,
            **self.options.body(),
            "stream": True,
        }
        stopped: Stop | None = None
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
                    event = cast(dict[str, Any], raw)
                    kind = event.get("type")
                    if kind == "content_block_delta":
                        delta = event["delta"]
                        if delta.get("type") == "text_delta":
                            yield TextDelta(delta["text"])
                    elif kind == "message_start":
                        message = event["message"]
                        yield Usage(message.get("usage") or {}, model=message.get("model"))
                    elif kind == "message_delta":
                        yield Usage(event.get("usage") or {})
                        stopped = Stop((event.get("delta") or {}).get("stop_reason"))
                    elif kind == "message_stop":
                        if stopped is None:
                            stopped = Stop(None)
                        yield stopped
                        return
            # The connection closed cleanly before `message_stop`: the reply is not whole.
            yield Failed(StreamCutOff("the stream ended before message_stop"))
        except (anthropic.APIError, httpx2.HTTPError) as exc:  # a cut-off or stalled stream
            log.warning("Claude call failed: %r", exc)  # surfaces as the transport's error
            yield Failed(exc)
        except Exception as exc:
            log.exception("Claude stream broke")
            yield Failed(exc)
