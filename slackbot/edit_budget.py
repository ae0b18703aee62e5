"""The per-workspace budget for `chat.update`, shared fairly by every reply in flight.

Slack allows about 50 `chat.update` calls a minute per app per workspace (Tier 3), however many
replies are streaming. A token bucket paces intermediate edits; waiting replies are served by
priority (a reply's first text before its later edits) and then by how long they have gone
without an edit, so twenty concurrent replies all keep moving instead of one hogging the budget.
A reply's final text never waits here: it is sent at once and only charged to the bucket.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

FIRST_TEXT = 0
INTERMEDIATE = 1


class EditBudget:
    def __init__(
        self, per_minute: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(max(burst, 1))
        self._tokens = self._capacity
        self._clock = clock
        self._updated = clock()
        self._waiters: list[tuple[int, float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._per_minute = per_minute
        self._open_replies = 0

    def reply_started(self) -> None:
        self._open_replies += 1

    def reply_finished(self) -> None:
        self._open_replies = max(0, self._open_replies - 1)
        self._dispatch()

    @property
    def _saving_for_finals(self) -> bool:
        """So many replies are in flight that their final texts alone will use the minute's
        budget: progress edits would only push some finals into Slack's rate limit (and a
        minute's wait), so they pause until the crowd thins."""
        return self._open_replies > self._per_minute - self._capacity

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def hold(self, seconds: float) -> None:
        """Slack said `ratelimited`: send no intermediate edit for `seconds`.

        The bucket is emptied to the point where it refills only after the pause, so every
        reply waiting here resumes in the usual order once Slack allows edits again.
        """
        self._refill()
        self._tokens = min(self._tokens, 1.0 - seconds * self._rate)
        self._dispatch()

    def charge_final(self) -> None:
        """Count a final edit (sent without waiting) so intermediate edits make room for it.

        The debt is capped at one burst so that a wave of finals cannot starve the replies that
        are still streaming for minutes.
        """
        self._refill()
        self._tokens = max(self._tokens - 1.0, -self._capacity)

    async def acquire(self, priority: int, last_edit: float) -> None:
        """Wait for a turn to send one intermediate edit."""
        self._refill()
        if not self._waiters and self._tokens >= 1.0 and not self._saving_for_finals:
            self._tokens -= 1.0
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, last_edit, next(self._seq), fut))
        self._dispatch()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._tokens += 1.0  # granted, then abandoned: give the token back
            raise

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()  # harmless when this call is that timer firing
            self._timer = None
        self._refill()
        while self._waiters and self._tokens >= 1.0 and not self._saving_for_finals:
            *_, fut = heapq.heappop(self._waiters)
            if fut.done():
                continue
            self._tokens -= 1.0
            fut.set_result(None)
        while self._waiters and self._waiters[0][3].done():
            heapq.heappop(self._waiters)
        if self._waiters and not self._saving_for_finals:  # else reply_finished dispatches
            delay = (1.0 - self._tokens) / self._rate
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.001), self._dispatch)


class EditBudgets:
    """One `EditBudget` per workspace, created on first use."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self._per_minute = per_minute
        self._burst = burst
        self._budgets: dict[str, EditBudget] = {}

    def for_team(self, team: str) -> EditBudget:
        budget = self._budgets.get(team)
        if budget is None:
            budget = self._budgets[team] = EditBudget(self._per_minute, self._burst)
        return budget
