"""Channel names, resolved with `conversations.info` and cached, so Claude knows where it is.

Needs the read scopes (`channels:read`, `groups:read`, `mpim:read`, `im:read`); without them, or
when Slack can't be asked, the bot just doesn't name the channel.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class Channels:
    def __init__(self, client: AsyncWebClient, *, max_entries: int = 5_000) -> None:
        self._client = client
        self._names: OrderedDict[str, str | None] = OrderedDict()
        self._max = max_entries

    async def name(self, channel: str) -> str | None:
        """`#name` for a channel, "a group DM" for a multi-person DM, None if unknown."""
        if channel in self._names:
            self._names.move_to_end(channel)
            return self._names[channel]
        try:
            response = await self._client.conversations_info(channel=channel)
        except Exception as exc:  # a missing scope, a network error: not worth a failed reply
            log.info("conversations.info %s failed: %r", channel, exc)
            return None
        info = response.get("channel") or {}
        name: str | None
        if info.get("is_mpim"):
            name = "a group DM"
        elif info.get("name"):
            name = f"#{info['name']}"
        else:
            name = None
        self._names[channel] = name
        if len(self._names) > self._max:
            self._names.popitem(last=False)
        return name

    async def creator(self, channel: str) -> str | None:
        """Who created the channel (`conversations.info`'s `creator`; a DM's person), None if
        Slack won't say. Not cached: asked only when someone changes the channel's settings."""
        try:
            response = await self._client.conversations_info(channel=channel)
        except Exception as exc:
            log.info("conversations.info %s failed: %r", channel, exc)
            return None
        info = response.get("channel") or {}
        creator = info.get("creator") or (info.get("user") if info.get("is_im") else None)
        return str(creator) if creator else None
