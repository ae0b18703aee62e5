"""The inbound message type, and the rules for which Slack messages are for the bot.

Bolt hands the listeners raw event dicts; everything below `app.py` works with `Incoming`, so
the rules for where a message belongs (its thread, or a DM's running conversation) are written
once, here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

#: Message subtypes that are a person speaking; everything else (edits, deletions, joins,
#: bot posts) is not a turn.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})

#: A top-level DM that is exactly one of these words starts a fresh conversation.
RESET_WORDS = frozenset({"reset"})


@dataclass(frozen=True)
class Incoming:
    """A person's message that the bot should answer, as the listeners hand it over."""

    team: str
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None = None
    event_id: str | None = None
    is_dm: bool = False
    message: dict[str, Any] = field(default_factory=dict)
    #: `SLACKBOT_DM_MODE=sessions`: a top-level DM starts a session of its own, in its thread.
    sessions: bool = False
    #: The asker's workspace (or Enterprise Grid organisation): a native stream's recipient.
    user_team: str = ""
    #: The installation's Enterprise Grid org (None outside Grid): see `workspace`.
    enterprise: str | None = None

    @property
    def workspace(self) -> str:
        """Whose conversation and spend this is: the installing Grid enterprise, or the team.

        An org-wide install sees one shared channel from several workspaces, and the envelope's
        `team_id` can differ from one event to the next in one thread: keyed by the enterprise,
        the thread stays one conversation."""
        return self.enterprise or self.team

    @property
    def thread_root(self) -> str | None:
        """The thread the message belongs to (and is answered in): a top-level channel mention
        starts one, and so does a top-level DM in sessions mode; in conversation mode a
        top-level DM belongs to the DM's running conversation instead (None)."""
        if self.is_dm and self.thread_ts is None and not self.sessions:
            return None
        return self.thread_ts or self.ts

    @property
    def is_top_level_dm(self) -> bool:
        return self.is_dm and self.thread_ts is None

    @property
    def sequence_key(self) -> tuple[str, str, str]:
        return (self.workspace, self.channel, self.thread_root or "dm")

    def to_json(self) -> str:
        """The message as the store keeps it until it is answered (see `Store.pending`)."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Incoming:
        return cls(**json.loads(raw))

    @property
    def is_reset(self) -> bool:
        """`reset` as a whole top-level DM message, in any case (conversation mode)."""
        return self.thread_root is None and self._says_reset

    @property
    def is_reset_hint(self) -> bool:
        """`reset` at the top of a DM in sessions mode: there is nothing to reset (every
        top-level message starts afresh), so it gets a short hint instead of an answer."""
        return self.sessions and self.is_top_level_dm and self._says_reset

    @property
    def _says_reset(self) -> bool:
        return self.text.strip().lower() in RESET_WORDS


def is_person_message(message: dict[str, Any], bot_user_id: str | None) -> bool:
    return (
        message.get("subtype") in USER_SUBTYPES
        and not message.get("bot_id")
        and bool(message.get("user"))
        and message.get("user") != bot_user_id
    )


def enterprise_of(body: dict[str, Any]) -> str | None:
    """The installation's Grid enterprise: `authorizations[0].enterprise_id` (the installation
    the event is delivered to), else the envelope's `enterprise_id` (or a slash command's)."""
    authorizations = body.get("authorizations") or []
    if authorizations and isinstance(authorizations[0], dict):
        found = authorizations[0].get("enterprise_id")
        if found:
            return str(found)
    enterprise = body.get("enterprise_id") or body.get("enterprise")
    if isinstance(enterprise, dict):
        enterprise = enterprise.get("id")
    return str(enterprise) if enterprise else None


def incoming_from(
    event: dict[str, Any], body: dict[str, Any], *, is_dm: bool, sessions: bool = False
) -> Incoming:
    """An `Incoming` from an Events API event and its envelope."""
    return Incoming(
        enterprise=enterprise_of(body),
        team=str(body.get("team_id") or event.get("team") or ""),
        channel=str(event["channel"]),
        ts=str(event["ts"]),
        user=str(event.get("user") or ""),
        text=str(event.get("text") or ""),
        thread_ts=event.get("thread_ts"),
        event_id=body.get("event_id"),
        is_dm=is_dm,
        message=event,
        sessions=is_dm and sessions,
        user_team=asker_team(event, body),
    )


def asker_team(event: dict[str, Any], body: dict[str, Any]) -> str:
    """The asker's team, or the organisation for an org-wide Enterprise Grid install: what
    `chat.startStream` wants as `recipient_team_id` (a Slack Connect user's own team)."""
    authorizations = body.get("authorizations") or [{}]
    first = authorizations[0] if isinstance(authorizations[0], dict) else {}
    if first.get("is_enterprise_install") and first.get("enterprise_id"):
        return str(first["enterprise_id"])
    return str(event.get("user_team") or event.get("team") or body.get("team_id") or "")


@dataclass(frozen=True)
class Revision:
    """A person edited (`text` is the new message) or deleted (`message` is None) a message the
    bot may have stored: the store follows, nothing is answered."""

    workspace: str
    channel: str
    ts: str
    message: dict[str, Any] | None = None


def revision_from(
    event: dict[str, Any], body: dict[str, Any], bot_user_id: str | None
) -> Revision | None:
    """A `message_changed` or `message_deleted` of a person's message; None for anything else
    (the bot's own edits and deletions, which it makes all the time, included)."""
    subtype = event.get("subtype")
    team = str(body.get("team_id") or event.get("team") or "")
    workspace = enterprise_of(body) or team
    channel = str(event.get("channel") or "")
    if subtype == "message_changed":
        message = event.get("message") or {}
        previous = event.get("previous_message") or {}
        if not is_person_message(message, bot_user_id) or not message.get("ts"):
            return None
        if message.get("text") == previous.get("text"):
            return None  # a thread reply or an unfurl changed it, not the person
        return Revision(workspace, channel, str(message["ts"]), message)
    if subtype == "message_deleted":
        previous = event.get("previous_message") or {}
        if previous.get("bot_id") or (bot_user_id and previous.get("user") == bot_user_id):
            return None  # the bot removing its own placeholder; only people's turns are erased
        ts = event.get("deleted_ts") or previous.get("ts")
        return Revision(workspace, channel, str(ts)) if ts else None
    return None
