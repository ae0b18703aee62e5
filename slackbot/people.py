"""Slack users, resolved with `users.info` and cached: display names, and time zones.

Every human turn is labelled with its speaker's name, and `<@U123>` mentions are rendered as
`@Name`; a thread of 200 messages must not cost 200 `users.info` calls, so people are cached in a
bounded LRU (names rarely change, and the name stored with a turn never changes after the fact).
The asker's time zone tells Claude what "today" and "this afternoon" mean to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    #: IANA time zone (`users.info`'s `tz`), None if Slack gave none.
    tz: str | None = None
    #: Whether `users.info` answered: a stand-in (a failed lookup) knows nothing below.
    known: bool = False
    #: The person's home team and Grid enterprise, for telling Slack Connect users apart.
    team_id: str | None = None
    enterprise_id: str | None = None
    #: Slack's own word that the person belongs to another organisation.
    is_stranger: bool = False
    #: A multi-channel (`is_restricted`) or single-channel (`is_ultra_restricted`) guest.
    is_guest: bool = False
    #: Why `users.info` failed (Slack's error code, or "network"), for a stand-in.
    lookup_error: str | None = None


class People:
    def __init__(self, client: AsyncWebClient, *, max_entries: int = 10_000) -> None:
        self._client = client
        self._people: OrderedDict[str, Person] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Person]] = {}
        self._max = max_entries
        #: Names from events' `user_profile`, for people `users.info` can't see (Slack
        #: Connect users of another organisation).
        self._profiles: OrderedDict[str, str] = OrderedDict()

    def learn_profile(self, user_id: str, profile: dict[str, Any] | None) -> None:
        """Remember the name an event's `user_profile` gives, for when `users.info` fails."""
        if not user_id or not isinstance(profile, dict):
            return
        name = profile.get("display_name") or profile.get("real_name") or profile.get("name")
        if name:
            self._profiles[user_id] = str(name)
            self._profiles.move_to_end(user_id)
            if len(self._profiles) > self._max:
                self._profiles.popitem(last=False)

    async def person(self, user_id: str) -> Person:
        """The user as Slack describes them; a stand-in labelled with the id if the lookup
        fails (asked again next time)."""
        cached = self._people.get(user_id)
        if cached is not None:
            self._people.move_to_end(user_id)
            return cached
        pending = self._pending.get(user_id)
        if pending is not None:  # one users.info call per user, however many ask at once
            return await asyncio.shield(pending)
        future: asyncio.Future[Person] = asyncio.get_running_loop().create_future()
        self._pending[user_id] = future
        error = "network"
        try:
            found: Person | None = await self._lookup(user_id)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown")
            log.info("users.info %s failed: %s", user_id, error)
            found = None
        except Exception as exc:  # a network error: label with the id, ask again next time
            log.info("users.info %s failed: %r", user_id, exc)
            found = None
        finally:
            del self._pending[user_id]
        person = found or Person(user_id, self._profiles.get(user_id, user_id), lookup_error=error)
        future.set_result(person)
        if found is not None:
            self._people[user_id] = found
            if len(self._people) > self._max:
                self._people.popitem(last=False)
        return person

    async def name(self, user_id: str) -> str:
        return (await self.person(user_id)).name

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        unique = list(dict.fromkeys(user_ids))
        resolved = await asyncio.gather(*(self.person(u) for u in unique))
        return {person_id: person.name for person_id, person in zip(unique, resolved, strict=True)}

    async def _lookup(self, user_id: str) -> Person:
        response = await self._client.users_info(user=user_id)
        user = response.get("user") or {}
        profile = user.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
            or user_id
        )
        enterprise = (user.get("enterprise_user") or {}).get("enterprise_id") or (
            user.get("enterprise_id")
        )
        return Person(
            user_id,
            name,
            tz=user.get("tz") or None,
            known=True,
            team_id=user.get("team_id") or profile.get("team") or None,
            enterprise_id=enterprise or None,
            is_stranger=bool(user.get("is_stranger")),
            is_guest=bool(user.get("is_restricted") or user.get("is_ultra_restricted")),
        )
