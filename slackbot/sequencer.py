"""Answer the mentions of one conversation one after the other, in the order they arrived.

A ticket is taken synchronously when the event arrives (before any await), so arrival order is
kept even though each turn awaits the store and Slack before it needs its turn. Entries are
removed when a conversation goes quiet, so memory stays bounded by the replies in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class Ticket:
    def __init__(
        self,
        sequencer: Sequencer,
        key: Hashable,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ) -> None:
        self._sequencer = sequencer
        self._key = key
        self._previous = previous
        self._mine = mine

    @property
    def must_wait(self) -> bool:
        return self._previous is not None and not self._previous.done()

    async def wait(self) -> None:
        if self._previous is not None:
            await asyncio.shield(self._previous)

    def release(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)
        self._sequencer._forget(self._key, self._mine)


class Sequencer:
    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Future[None]] = {}

    def enter(self, key: Hashable) -> Ticket:
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous = self._tails.get(key)
        self._tails[key] = mine
        return Ticket(self, key, previous, mine)

    def _forget(self, key: Hashable, future: asyncio.Future[None]) -> None:
        if self._tails.get(key) is future:
            del self._tails[key]

    def __len__(self) -> int:
        return len(self._tails)
