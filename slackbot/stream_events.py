"""What a streamed Claude reply can say, as typed events, and their sum.

`claude.Claude.stream` yields these in the order they happened; the reply surface (`reply.Reply`)
shows them and `StreamResult` adds them up for the store. Thinking, tool activity, citations and
usage travel the same way as text, so a new kind of content reaches Slack without widening every
signature between the API and the message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True)
class ThinkingStarted:
    """The model started a thinking block (its summary, if any, follows as `ThinkingDelta`)."""


@dataclass(frozen=True)
class ThinkingDelta:
    """A piece of a thinking block's summary: shown as progress, never as the answer."""

    text: str


@dataclass(frozen=True)
class ThinkingEnded:
    """The thinking block is complete."""


@dataclass(frozen=True)
class ToolCall:
    """The model called a tool (a server tool runs on Anthropic's side): once as it starts,
    with an empty input, and again with the input once it has streamed."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """A tool's result came back; `content` is the raw result block."""

    tool_use_id: str
    kind: str
    content: Any = None


@dataclass(frozen=True)
class Citation:
    """The passage (text block) that just streamed cites these sources (the API's citation
    objects: `web_search_result_location`, `char_location`, `page_location`, …)."""

    locations: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Usage:
    """Token counts so far; later events' counts replace earlier ones field by field."""

    counts: dict[str, Any]
    model: str | None = None


@dataclass(frozen=True)
class Stop:
    """The model stopped: `end_turn`, `max_tokens`, `refusal`, `pause_turn`, …; `content` is
    the message's content blocks as the API returns them (a `pause_turn` continuation sends
    them back verbatim)."""

    reason: str | None
    content: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Failed:
    """The call failed; nothing follows. `error` is kept for the log and the note's wording."""

    error: BaseException


StreamEvent = (
    TextDelta
    | ThinkingStarted
    | ThinkingDelta
    | ThinkingEnded
    | ToolCall
    | ToolResult
    | Citation
    | Usage
    | Stop
    | Failed
)


def output_file_ids(content: Any) -> list[str]:
    """The `file_id`s in a code-execution result block's content, in order.

    The result's shape differs between tool versions (`code_execution_result` with
    `code_execution_output` items, `bash_code_execution_result` with
    `bash_code_execution_output` items, …); every one of them names an output by a `file_id`
    key, so the content is walked rather than matched against one version's shape.
    """
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            file_id = value.get("file_id")
            if isinstance(file_id, str) and file_id:
                found.append(file_id)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(content)
    return list(dict.fromkeys(found))


USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


@dataclass
class StreamResult:
    """A reply's events added up: what is stored and accounted once the stream is over."""

    model: str | None = None
    text: str = ""
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    error: BaseException | None = None
    started_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    ended_at: float | None = None
    #: The last message's content blocks (see `Stop.content`).
    content: tuple[dict[str, Any], ...] = ()
    #: Server tool calls the API counted (`usage.server_tool_use`), summed over continuations.
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    #: Files the model's code execution made (Files API ids), in the order they were made.
    files: list[str] = field(default_factory=list)
    _parts: list[str] = field(default_factory=list, repr=False)
    _counts: dict[str, Any] = field(default_factory=dict, repr=False)
    _earlier: dict[str, int] = field(default_factory=dict, repr=False)

    def take(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
            self._parts.append(event.text)
        elif isinstance(event, Usage):
            if event.model is not None:  # `message_start`: a new message (a continuation)
                self._fold()
                self.model = event.model
            self._counts.update({k: v for k, v in event.counts.items() if v is not None})
            self._sum_up()
        elif isinstance(event, ToolResult):
            new = [f for f in output_file_ids(event.content) if f not in self.files]
            self.files.extend(new)
        elif isinstance(event, Stop):
            self.stop_reason = event.reason
            self.content = event.content
        elif isinstance(event, Failed):
            self.error = event.error

    def _fold(self) -> None:
        """Add the finished message's counts to the reply's (a `pause_turn` continuation is a
        request of its own, billed as such)."""
        message = self._message_totals()
        for key, value in message.items():
            self._earlier[key] = self._earlier.get(key, 0) + value
        self._counts = {}

    def _message_totals(self) -> dict[str, int]:
        totals = {key: int(self._counts.get(key) or 0) for key in USAGE_KEYS}
        tools = self._counts.get("server_tool_use") or {}
        for key in ("web_search_requests", "web_fetch_requests"):
            totals[key] = int(tools.get(key) or 0)
        return totals

    def _sum_up(self) -> None:
        message = self._message_totals()
        totals = {key: self._earlier.get(key, 0) + value for key, value in message.items()}
        self.web_search_requests = totals.pop("web_search_requests")
        self.web_fetch_requests = totals.pop("web_fetch_requests")
        self.usage = totals

    def close(self) -> StreamResult:
        """The stream is over: join the text and stop the clock."""
        self.text = "".join(self._parts)
        self.ended_at = time.monotonic()
        return self

    @property
    def seconds(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

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
