"""The Claude side of a reply: one streamed Messages API call.

Errors are caught here and returned with whatever text had arrived, so the caller can always
finish the Slack message (partial text plus a note) and the bot keeps serving.

Every request is marked for prompt caching (top-level `cache_control`, plus `cache_breakpoints`):
the system prompt and the conversation so far are written to the cache once and read back at a
tenth of the price by the next mention in the same thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
import httpx2

log = logging.getLogger(__name__)

Message = dict[str, Any]
EPHEMERAL = {"type": "ephemeral"}


@dataclass
class StreamResult:
    text: str = ""
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    model: str | None = None
    error: BaseException | None = None
    first_token_at: float | None = None
    seconds: float = 0.0
    started_at: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        """Every input token of the request, whether billed plain, as cache write or read."""
        return (
            self.usage.get("input_tokens", 0)
            + self.usage.get("cache_creation_input_tokens", 0)
            + self.usage.get("cache_read_input_tokens", 0)
        )

    @property
    def first_token_seconds(self) -> float | None:
        if self.first_token_at is None:
            return None
        return self.first_token_at - self.started_at


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


USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def _known(usage: Any) -> dict[str, Any]:
    """The usage fields an event reports (a later event's counts replace earlier ones)."""
    return {k: v for k, v in (usage or {}).items() if v is not None}


@dataclass(frozen=True)
class Claude:
    client: anthropic.AsyncAnthropic
    model: str
    max_tokens: int
    system: str
    cache: bool = True

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
        self,
        messages: Sequence[Message],
        on_text: Callable[[str], None],
        *,
        extra: dict[str, Any] | None = None,
    ) -> StreamResult:
        """Stream one reply, feeding each text delta to `on_text` as it arrives."""
        started = time.monotonic()
        result = StreamResult(model=self.model, started_at=started)
        parts: list[str] = []
        marked = cache_breakpoints(messages) if self.cache else list(messages)
        caching: dict[str, Any] = {"cache_control": EPHEMERAL} if self.cache else {}
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": self.system,
            "messages": marked,
            **caching,
            **(extra or {}),
            "stream": True,
        }
        usage: dict[str, Any] = {}
        try:
            # The raw events as dicts: the SDK still sends, retries and raises (an `error` event
            # included), but builds no pydantic model per delta and no message snapshot, which
            # was most of the CPU of a streamed reply (see bench/).
            events = await self.client.post(
                "/v1/messages",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            )
            async with events:
                async for raw in events:
                    event = cast(dict[str, Any], raw)
                    kind = event.get("type")
                    if kind == "content_block_delta":
                        delta = event["delta"]
                        if delta.get("type") == "text_delta":
                            if result.first_token_at is None:
                                result.first_token_at = time.monotonic()
                            parts.append(delta["text"])
                            on_text(delta["text"])
                    elif kind == "message_start":
                        message = event["message"]
                        result.model = message.get("model") or result.model
                        usage.update(_known(message.get("usage")))
                    elif kind == "message_delta":
                        result.stop_reason = (event.get("delta") or {}).get("stop_reason")
                        usage.update(_known(event.get("usage")))
            result.usage = {key: int(usage.get(key) or 0) for key in USAGE_KEYS}
        except (anthropic.APIError, httpx2.HTTPError) as exc:  # a cut-off or stalled stream
            log.warning("Claude call failed: %r", exc)  # surfaces as the transport's error
            result.error = exc
        except Exception as exc:
            log.exception("Claude stream broke")
            result.error = exc
        result.text = "".join(parts)
        result.seconds = time.monotonic() - started
        return result
