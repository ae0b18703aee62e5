"""What the bot keeps, and the interface every storage backend implements.

Callers (the turn, thread sync, recovery) speak only to `Store`; `sqlite_store.SqliteStore` is
the default backend. A second backend (PostgreSQL, for many instances) implements the same
methods, and the store tests run once per backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredImage:
    media_type: str
    data: str
    name: str = ""


@dataclass(frozen=True)
class StoredDocument:
    """A document already checked (and converted): re-sent on every later mention, never
    downloaded again. `data` is a PDF's base64 or the text itself; `size` the file's bytes as
    shared, `pages` a PDF's pages, `text_chars` the characters of text Claude reads (a PDF's
    estimated): what the context window's estimates need."""

    kind: str  # "pdf" | "text"
    media_type: str
    data: str
    name: str = ""
    size: int = 0
    pages: int | None = None
    text_chars: int = 0


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message of a conversation, in the form history rebuilding needs."""

    id: int
    role: str  # "user" | "assistant"
    ts: str
    text: str
    user_id: str | None = None
    user_name: str | None = None
    images: tuple[StoredImage, ...] = ()
    notes: tuple[str, ...] = ()
    status: str = "done"
    #: Documents (PDFs, texts) the person shared with this message; rendered before images.
    documents: tuple[StoredDocument, ...] = ()
    #: For a reply: the ts of the message it answers.
    answers_ts: str | None = None
    #: Estimated input tokens of the rendered turn (None until the history module estimates it).
    tokens: int | None = None


@dataclass(frozen=True)
class WindowState:
    """How a conversation was fitted into the context window last time (see
    `context_window.fit`)."""

    kept_from_id: int | None = None
    images_from_id: int | None = None
    token_ratio: float | None = None
    trim_noticed: bool = False


@dataclass(frozen=True)
class UsageRecord:
    """One reply's cost and circumstances, as `slackbot usage` sums them."""

    message_id: int | None
    conversation_id: int | None
    team: str
    channel: str
    user_id: str
    model: str | None
    line: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    stop_reason: str | None = None
    error: str | None = None
    seconds: float = 0.0
    first_token_seconds: float | None = None
    web_search_requests: int = 0
    web_fetch_requests: int = 0


@dataclass(frozen=True)
class Vote:
    """One person's 👍 or 👎 on one reply message (the one carrying the buttons)."""

    team: str
    channel: str
    message_ts: str
    user_id: str
    vote: str  # "good" | "bad"
    #: The reply (store id) and the model that wrote it, from the button's value.
    reply_id: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class UnfinishedReply:
    """A reply a crash left mid-stream, with where to finish it."""

    id: int
    conversation_id: int
    team: str
    channel: str
    #: The thread the reply is in; None for a DM's top-level conversation.
    thread_ts: str | None
    text: str
    message_ts: tuple[str, ...]


@dataclass(frozen=True)
class PendingMessage:
    """A message acknowledged to Slack whose reply was never begun (see `claim_conversation`)."""

    conversation_id: int
    payload: str
    received_at: float


@dataclass(frozen=True)
class UsageTotal:
    """Usage summed over some replies of one model: what quotas and `/claude usage` price."""

    model: str | None
    line: str | None
    replies: int = 0
    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    web_search_requests: int = 0

    @property
    def tokens(self) -> int:
        """What a per-person token limit counts: input (cache reads and writes included) plus
        output."""
        return (
            self.input_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
            + self.output_tokens
        )


@dataclass(frozen=True)
class PurgedConversation:
    """A conversation retention removed (or, in a dry run, would remove)."""

    id: int
    team: str
    channel: str
    kind: str
    root_ts: str
    last_active: float
    messages: int
    files: int


class Store(Protocol):
    """The conversation store. Every method is one round trip and all-or-nothing."""

    #: Whether several instances may share it (PostgreSQL): then each live instance keeps
    #: looking for the work of one that went silent, not only at start.
    shared: bool

    async def close(self) -> None: ...

    async def healthy(self) -> bool:
        """True if the store answers a trivial query within ~2 s (`GET /healthz` says so)."""
        ...

    async def claim_event(self, event_id: str | None, channel: str, ts: str) -> bool:
        """Record an event as processed; False if it (or the same message) was seen before."""
        ...

    async def claim_conversation(
        self,
        event_id: str | None,
        channel: str,
        ts: str,
        *,
        team: str,
        thread_root: str | None,
        idle_seconds: float,
        pending: str | None = None,
    ) -> int | None:
        """Claim a message and find (or create) its conversation; None if seen before. With
        `pending` (the message, serialised), it is kept until `begin_reply` for it."""
        ...

    async def pending_messages(self, max_age: float) -> list[PendingMessage]:
        """Messages claimed but never begun, at most `max_age` seconds old; older ones are
        dropped."""
        ...

    async def forget_pending(self, channel: str, ts: str) -> None:
        """A claimed message that ended without a reply (nowhere to answer): don't retry it."""
        ...

    async def announce_stop(self, key: str) -> None:
        """Pass a Stop on to every instance (where several share the database)."""
        ...

    def stop_requests(self) -> AsyncIterator[str]:
        """Stops announced by any instance, as they come (none where there is only one)."""
        ...

    async def live_instances(self) -> int:
        """How many instances share the database now (1 where only one can)."""
        ...

    async def wait_for_earlier(self, conversation_id: int, ts: str) -> None:
        """Return once no other instance is still answering an earlier message of the
        conversation (at once where there is only one instance)."""
        ...

    async def reset_dm(self, team: str, channel: str) -> None: ...

    async def add_user_turn(
        self,
        conversation_id: int,
        *,
        ts: str,
        user_id: str | None,
        user_name: str | None,
        text: str,
        images: Sequence[StoredImage] = (),
        notes: Sequence[str] = (),
        documents: Sequence[StoredDocument] = (),
    ) -> bool: ...

    async def add_turn_and_load(
        self,
        conversation_id: int,
        *,
        ts: str,
        user_id: str | None,
        user_name: str | None,
        text: str,
        images: Sequence[StoredImage] = (),
        notes: Sequence[str] = (),
        documents: Sequence[StoredDocument] = (),
    ) -> tuple[list[Turn], WindowState]: ...

    async def history(self, conversation_id: int, up_to_ts: str) -> list[Turn]: ...

    async def sync_point(self, conversation_id: int) -> str | None: ...

    async def mark_synced(self, conversation_id: int, up_to_ts: str) -> None: ...

    async def known_ts(self, conversation_id: int) -> set[str]: ...

    async def begin_reply(
        self, conversation_id: int, *, answers_ts: str, channel: str, first_ts: str
    ) -> int:
        """Record a reply as streaming; `first_ts` is its first message, or "" when it has
        none yet (a native stream starts with its first content)."""
        ...

    async def update_reply(
        self,
        reply_id: int,
        *,
        text: str,
        message_ts: Iterable[str],
        status: str,
        stop_reason: str | None = None,
    ) -> None: ...

    async def save_token_estimates(self, estimates: dict[int, int]) -> None: ...

    async def save_window_state(
        self,
        conversation_id: int,
        *,
        kept_from_id: int | None,
        images_from_id: int | None,
        token_ratio: float | None = None,
        trim_noticed: bool = False,
    ) -> None: ...

    async def record_usage(self, record: UsageRecord) -> None: ...

    async def record_vote(self, vote: Vote) -> None:
        """Keep a click: one row per (team, channel, message, person); a later click or a
        switch updates it (a switch to 👍 drops an earlier 👎 reason)."""
        ...

    async def record_vote_reason(self, vote: Vote, reason: str) -> None:
        """The 👎 modal's answer, kept with that person's vote on that message (creating the
        vote if the click's own write has not landed yet)."""
        ...

    async def unfinished_replies(self) -> list[UnfinishedReply]: ...

    async def adopt_workspace(self, workspace: str) -> int:
        """At start-up: key every conversation, DM session and channel prompt by the
        installation (`Incoming.workspace`), merging threads stored under several teams."""
        ...

    async def usage_totals(
        self, since: float, *, team: str | None = None, user_id: str | None = None
    ) -> list[UsageTotal]:
        """Usage recorded since `since` (a Unix time), per model, for one workspace and/or one
        person."""
        ...

    async def channel_prompt(self, team: str, channel: str) -> str | None:
        """The channel's extra instructions (`/claude prompt set`), None if it has none."""
        ...

    async def set_channel_prompt(
        self, team: str, channel: str, text: str | None, *, user_id: str
    ) -> str | None:
        """Set (None: clear) the channel's instructions and audit the change (who, when, old,
        new) in the same transaction; returns the old text."""
        ...

    async def erase_user_turn(self, channel: str, ts: str) -> int:
        """A person deleted their message: erase its turn, its files and the bot's reply to it
        (and a pending answer); returns how many turns were removed."""
        ...

    async def edit_user_turn(self, channel: str, ts: str, text: str) -> bool:
        """A person edited their message: the stored turn takes the new text (False: not
        stored)."""
        ...

    async def purge_idle(
        self, idle_seconds: float, *, dry_run: bool = False
    ) -> list[PurgedConversation]:
        """Delete conversations with nothing stored for `idle_seconds`, with their turns, files,
        replies and pending answers (usage rows stay: they hold no text); with `dry_run`, only
        say which."""
        ...
