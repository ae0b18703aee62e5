"""Display names of Slack users, resolved with `users.info` and cached.

Every human turn is labelled with its speaker's name, and `<@U123>` mentions are rendered as
`@Name`; a thread of 200 messages must not cost 200 `users.info` calls, so names are cached in a
bounded LRU (names rarely change, and the name stored with a turn never changes after the fact).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class People:
    def __init__(self, client: AsyncWebClient, *, max_entries: int = 10_000) -> None:
        self._client = client
        self._names: OrderedDict[str, str] = OrderedDict()
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._max = max_entries

    async def name(self, user_id: str) -> str:
        cached = self._names.get(user_id)
        if cached is not None:
            self._names.move_to_end(user_id)
            return cached
        pending = self._pending.get(user_id)
        if pending is not None:  # one users.info call per user, however many ask at once
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[user_id] = future
        try:
            found = await self._lookup(user_id)
        except Exception as exc:  # a network error: label with the id, ask again next time
            log.info("users.info %s failed: %r", user_id, exc)
            found = None
        finally:
            del self._pending[user_id]
        name = found or user_id
        future.set_result(name)
        if found is not None:
            self._names[user_id] = found
            if len(self._names) > self._max:
                self._names.popitem(last=False)
        return name

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        unique = list(dict.fromkeys(user_ids))
        resolved = await asyncio.gather(*(self.name(u) for u in unique))
        return dict(zip(unique, resolved, strict=True))

    async def _lookup(self, user_id: str) -> str | None:
        try:
            response = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            log.info("users.info %s failed: %s", user_id, exc.response.get("error"))
            return None
        user = response.get("user") or {}
        profile = user.get("profile") or {}
        return (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
            or user_id
        )
