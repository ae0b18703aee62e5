"""Redelivery dedup in memory: the deliveries this process has taken, by event id and message.

Slack redelivers an event it thinks was not acknowledged in time (same `event_id`), and one post
can arrive under two events (`app_mention` and `message`). The store's claim is what dedupes
across restarts (`Store.claim_conversation`); this bounded set answers first, so a redelivery
is recognised even while the store is failing, and costs no store call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from slackbot.events import Incoming

MAX_ENTRIES = 20_000


class RecentDeliveries:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._max = max_entries

    def first_time(self, msg: Incoming) -> bool:
        """Record `msg`'s keys; False if either was recorded before."""
        keys: list[Hashable] = [("message", msg.channel, msg.ts)]
        if msg.event_id:
            keys.append(("event", msg.event_id))
        if any(key in self._seen for key in keys):
            return False
        for key in keys:
            self._seen[key] = None
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True
