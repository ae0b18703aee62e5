"""`/claude`: help, the caller's own usage, the channel's extra instructions, the model.

Every answer is ephemeral (the command's own response, so only the caller sees it) and the
access rules of `access.py` apply as they do to mentions. A channel's instructions are shown to
anyone; only `SLACKBOT_ADMINS` and the channel's creator may change them, and every change is
audited (who, when, old, new: `slackbot audit`). Unknown subcommands get the help text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slackbot import messages
from slackbot.access import Where
from slackbot.conversation import Conversations
from slackbot.events import enterprise_of
from slackbot.quotas import day_start, week_start

log = logging.getLogger(__name__)

#: The longest channel prompt accepted: it is sent with every reply in the channel.
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class Command:
    """A slash command as Slack posts it (form fields)."""

    user: str
    channel: str
    team: str
    enterprise: str | None
    text: str

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Command:
        return cls(
            user=str(body.get("user_id") or ""),
            channel=str(body.get("channel_id") or ""),
            team=str(body.get("team_id") or ""),
            enterprise=enterprise_of(body),
            text=str(body.get("text") or ""),
        )

    @property
    def workspace(self) -> str:
        """As `Incoming.workspace`: the Grid enterprise, or the team."""
        return self.enterprise or self.team

    @property
    def is_dm(self) -> bool:
        return self.channel.startswith("D")


@dataclass
class Commands:
    conversations: Conversations

    async def answer(self, body: dict[str, Any]) -> str:
        """The ephemeral text that answers one `/claude` command; never raises."""
        command = Command.from_body(body)
        try:
            return await self._answer(command)
        except Exception:
            log.exception("/claude %r from %s failed", command.text[:40], command.user)
            return messages.COMMAND_FAILED

    async def _answer(self, command: Command) -> str:
        conversations = self.conversations
        where = Where(command.team, command.enterprise, command.channel, command.is_dm)
        reason = await conversations.access.refusal(command.user, where)
        if reason is not None:
            return messages.refused(reason, conversations.settings.admin_contact)
        word, rest = _first_word(command.text)
        if word == "usage":
            return await self._usage(command)
        if word == "model":
            return messages.model_in_use(conversations.claude.model)
        if word == "prompt":
            return await self._prompt(command, rest)
        return messages.COMMAND_HELP

    async def _usage(self, command: Command) -> str:
        conversations = self.conversations
        now = datetime.now(UTC)
        figures = []
        for start in (day_start(now), week_start(now)):
            totals = await conversations.store.usage_totals(start.timestamp(), user_id=command.user)
            tokens = sum(total.tokens for total in totals)
            figures.append((tokens, conversations.quotas.cost(totals)))
        return messages.usage_summary(
            figures[0],
            figures[1],
            daily_tokens=conversations.settings.user_daily_tokens,
            exempt=conversations.settings.is_admin(command.user),
        )

    async def _prompt(self, command: Command, rest: str) -> str:
        store = self.conversations.store
        action, text = _first_word(rest)
        if action not in ("set", "clear"):
            current = await store.channel_prompt(command.workspace, command.channel)
            return messages.channel_prompt(current) if current else messages.NO_CHANNEL_PROMPT
        if not await self._may_change(command):
            return messages.PROMPT_NOT_YOURS
        if action == "clear":
            if await store.channel_prompt(command.workspace, command.channel) is None:
                return messages.PROMPT_ALREADY_CLEAR
            await store.set_channel_prompt(
                command.workspace, command.channel, None, user_id=command.user
            )
            log.info("%s cleared the prompt of %s", command.user, command.channel)
            return messages.PROMPT_CLEARED
        if not text:
            return messages.PROMPT_SET_NEEDS_TEXT
        if len(text) > MAX_PROMPT_CHARS:
            return messages.prompt_too_long(MAX_PROMPT_CHARS)
        await store.set_channel_prompt(
            command.workspace, command.channel, text, user_id=command.user
        )
        log.info("%s set the prompt of %s", command.user, command.channel)
        return messages.prompt_set(text)

    async def _may_change(self, command: Command) -> bool:
        conversations = self.conversations
        if conversations.settings.is_admin(command.user):
            return True
        return await conversations.channels.creator(command.channel) == command.user


def _first_word(text: str) -> tuple[str, str]:
    """("word", "the rest") of a command's text, the word in lower case; the rest keeps its
    line breaks."""
    parts = text.strip().split(maxsplit=1)
    if not parts:
        return "", ""
    return parts[0].lower(), parts[1].strip() if len(parts) > 1 else ""
