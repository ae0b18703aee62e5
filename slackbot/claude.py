"""The Claude side of a reply: one streamed Messages API call.

Errors are caught here and returned with whatever text had arrived, so the caller can always
finish the Slack message (partial text plus a note) and the bot keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic

log = logging.getLogger(__name__)


@dataclass
class StreamResult:
    text: str = ""
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    model: str | None = None
    error: BaseException | None = None
    first_token_at: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Claude:
    client: anthropic.AsyncAnthropic
    model: str
    max_tokens: int
    system: str

    async def stream(
        self,
        messages: Sequence[dict[str, Any]],
        on_text: Callable[[str], None],
        *,
        extra: dict[str, Any] | None = None,
    ) -> StreamResult:
        """Stream one reply, feeding each text delta to `on_text` as it arrives."""
        result = StreamResult(model=self.model)
        started = time.monotonic()
        parts: list[str] = []
        try:
            async with self.client.messages.stream(
                model=self.model,
                max_tokens=self.max_tokens,
                system=self.system,
                messages=list(messages),  # type: ignore[arg-type]
                **(extra or {}),
            ) as stream:
                async for text in stream.text_stream:
                    if result.first_token_at is None:
                        result.first_token_at = time.monotonic()
                    parts.append(text)
                    on_text(text)
                final = await stream.get_final_message()
            result.stop_reason = final.stop_reason
            result.model = final.model
            result.usage = {
                "input_tokens": final.usage.input_tokens or 0,
                "output_tokens": final.usage.output_tokens or 0,
                "cache_creation_input_tokens": final.usage.cache_creation_input_tokens or 0,
                "cache_read_input_tokens": final.usage.cache_read_input_tokens or 0,
            }
        except anthropic.APIError as exc:
            log.warning("Claude call failed: %r", exc)
            result.error = exc
        except Exception as exc:  # a broken stream can surface as httpx/parsing errors too
            log.exception("Claude stream broke")
            result.error = exc
        result.text = "".join(parts)
        result.seconds = time.monotonic() - started
        return result
