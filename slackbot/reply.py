"""The reply surface: how one answer reaches Slack, whatever the mechanism.

`conversation.py` drives a reply through these calls only: `start` (something visible at once),
`take` (each stream event as it arrives), `finish` (the final text and a note), or `stop` (a
person stopped it). `update_reply.UpdateReply` implements it with `chat.update` edits;
`native_reply.NativeReply` with Slack's native streaming, a second implementation of the same
protocol, not a branch inside the first (`reply_choice.ChosenReplies` picks one per reply).
Recovery reopens a reply a crash left unfinished with `Replies.resume` and finishes it with the
same code a live reply ends with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from slackbot.events import Incoming
from slackbot.feedback import FeedbackTag
from slackbot.stream_events import StreamEvent


class Reply(Protocol):
    """One answer in Slack, from its placeholder to its final text."""

    @property
    def text(self) -> str:
        """The answer's text so far (what a checkpoint stores)."""
        ...

    @property
    def message_ts(self) -> list[str]:
        """The Slack messages the answer occupies so far, first to last."""
        ...

    @property
    def shows(self) -> int:
        """How many times new content reached Slack so far (edits, appends): the turn stores
        the text soon after each, so what a crash leaves is at least what people saw."""
        ...

    @property
    def session_ended(self) -> bool:
        """The reply's end already set the thread's agent session back to `active` (a native
        stream's `chat.stopStream` does); otherwise the turn sets it."""
        ...

    @property
    def started_at(self) -> float | None:
        """When `start` was called (monotonic clock); None for a reply resumed after a crash."""
        ...

    @property
    def first_text_at(self) -> float | None:
        """When the answer's first text became visible in Slack (monotonic clock), if it has."""
        ...

    def final_text(self) -> str:
        """The answer as it ends up in Slack and in the store (its sources included)."""
        ...

    async def start(self, placeholder: str) -> str:
        """Show that the bot is on it; returns the ts of the first message, or "" when the
        reply shows nothing until its first content (a native stream: the thread's status
        says the bot is on it meanwhile)."""
        ...

    def take(self, event: StreamEvent) -> None:
        """Show one stream event (text, progress); never waits for Slack."""
        ...

    async def finish(
        self, note: str | None = None, *, feedback: FeedbackTag | None = None
    ) -> list[str]:
        """Put the whole final text, plus `note`, in Slack; returns every message's ts. With
        `feedback`, the reply's last message carries the 👍/👎 buttons (`feedback.py`)."""
        ...

    async def stop(self, *, feedback: FeedbackTag | None = None) -> list[str]:
        """A person stopped the reply: end it with the text so far and a "Stopped" note."""
        ...


class Replies(Protocol):
    """Makes replies for one workspace's messages (and reopens interrupted ones)."""

    def open(self, msg: Incoming) -> Reply:
        """The reply to `msg`, in its thread (or top level, for a DM's running conversation)."""
        ...

    def resume(
        self,
        *,
        team: str,
        channel: str,
        thread_ts: str | None,
        message_ts: Sequence[str],
        text: str,
    ) -> Reply: ...

    async def reopen(
        self, *, channel: str, thread_ts: str | None, message_ts: Sequence[str]
    ) -> None:
        """Before a resumed reply is finished: make its messages editable again."""
        ...
