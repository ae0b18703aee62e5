"""The per-workspace budget for `chat.update`, shared fairly by every reply in flight.

Slack allows about 50 `chat.update` calls a minute per app per workspace (Tier 3), however many
replies are streaming. A token bucket paces intermediate edits; waiting replies are served by
priority (a reply's first text before its later edits) and then by how long they have gone
without an edit, so twenty concurrent replies all keep moving instead of one hogging the budget.

A reply's final text comes first. While Slack accepts the edits it is sent at once and only
charged to the bucket. Once Slack has refused one (`hold`, after a 429), finals take their turn
in the bucket like every other edit, ahead of them and first come first served, until the
bucket has refilled: a wave of refused finals then goes out one by one as the budget allows,
instead of all retrying after the same `Retry-After` and being refused again together. A
refusal also means the budget is above what Slack grants this app (the setting is too high, or
other instances share the limit): the rate is cut, and grows back while Slack stays quiet.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable

FINAL = -1
FIRST_TEXT = 0
INTERMEDIATE = 1

#: A refusal cuts the rate to this fraction of what it was (once per burst of refusals)...
CUT = 0.75
#: ...and it grows back by one cut's worth of the configured rate in this many quiet seconds.
RECOVERY_SECONDS = 60.0
#: The rate is never cut below this fraction of the configured one.
FLOOR = 0.1
#: A token is whole when this close to 1.0 (refills add up floating-point error).
_WHOLE = 1.0 - 1e-9


class EditBudget:
    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_wait: Callable[[int], None] | None = None,
    ) -> None:
        #: Told the priority of each edit that has to wait for its turn (for the metrics).
        self._on_wait = on_wait
        self._full_rate = per_minute / 60.0
        self._rate = self._full_rate
        self._capacity = float(max(burst, 1))
        self._tokens = self._capacity
        self._clock = clock
        self._updated = clock()
        self._waiters: list[tuple[int, float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._open_replies = 0
        #: Slack refused an edit and the bucket has not refilled since: finals wait their turn.
        self._limited = False
        self._held_until = -math.inf
        self._cut_at = -math.inf

    @property
    def open_replies(self) -> int:
        """Replies started here and not finished yet."""
        return self._open_replies

    @property
    def waiting(self) -> int:
        """Edits waiting for their turn (finals and progress edits)."""
        return sum(1 for *_, fut in self._waiters if not fut.done())

    @property
    def per_minute(self) -> float:
        """The rate edits are paced at now: the configured one, or less after a refusal."""
        return self._rate * 60.0

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
        return self._open_replies > self.per_minute - self._capacity

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        quiet = now - max(self._updated, self._held_until)
        if self._rate < self._full_rate and quiet > 0:
            regain = quiet * self._full_rate * (1.0 - CUT) / RECOVERY_SECONDS
            self._rate = min(self._full_rate, self._rate + regain)
        if self._tokens >= self._capacity:
            self._limited = False
        self._updated = now

    def share(self, per_minute: float, burst: float) -> None:
        """Change this instance's part of the workspace's budget (several instances on one
        database split it): the rate, a cut rate in proportion, and the burst."""
        self._refill()
        fraction = self._rate / self._full_rate if self._full_rate else 1.0
        self._full_rate = per_minute / 60.0
        self._rate = self._full_rate * fraction
        self._capacity = max(float(burst), 1.0)
        self._tokens = min(self._tokens, self._capacity)
        self._dispatch()

    def hold(self, seconds: float, *, sent_at: float | None = None) -> None:
        """Slack refused an edit sent at `sent_at` (this budget's clock) with `ratelimited`:
        send nothing for `seconds`, then queue finals too, at a lower rate.

        The refused edit cost nothing at Slack, so its token is given back; then the bucket is
        emptied to the point where it refills only after the pause, so every edit waiting here
        resumes in the usual order once Slack allows edits again. The rate is cut once per
        burst of refusals: edits sent before the last cut were refused for the same reason and
        do not cut it again.
        """
        self._refill()
        now = self._clock()
        if sent_at is None or sent_at >= self._cut_at:
            self._rate = max(self._rate * CUT, self._full_rate * FLOOR)
            self._cut_at = now
        self._limited = True
        self._held_until = max(self._held_until, now + seconds)
        self._tokens = min(self._tokens + 1.0, 1.0 - seconds * self._rate)
        self._dispatch()

    def charge_final(self) -> None:
        """Count a final edit sent without waiting so intermediate edits make room for it.

        The debt is capped at one burst so that a wave of finals cannot starve the replies that
        are still streaming for minutes.
        """
        self._refill()
        self._tokens = max(self._tokens - 1.0, -self._capacity)

    def final_place(self) -> int:
        """A place among the final edits, kept across a final's retries (first come first)."""
        return next(self._seq)

    async def acquire_final(self, place: int) -> float:
        """Wait for a final edit's turn; returns the time it was granted (for `hold`).

        Before Slack refused anything it is granted at once and charged; after a refusal it
        queues ahead of every progress edit, behind the finals with an earlier `place`.
        """
        self._refill()
        if not self._limited and not self._finals_waiting():
            self.charge_final()
            return self._clock()
        await self._wait(FINAL, float(place), place)
        return self._clock()

    async def acquire(self, priority: int, last_edit: float) -> float:
        """Wait for a turn to send one intermediate edit; returns when it was granted."""
        self._refill()
        if not self._waiters and self._tokens >= _WHOLE and not self._saving_for_finals:
            self._tokens -= 1.0
            return self._clock()
        await self._wait(priority, last_edit, next(self._seq))
        return self._clock()

    def _finals_waiting(self) -> bool:
        return any(p == FINAL and not fut.done() for p, *_, fut in self._waiters)

    async def _wait(self, priority: int, key: float, seq: int) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._on_wait is not None:
            self._on_wait(priority)
        heapq.heappush(self._waiters, (priority, key, seq, fut))
        self._dispatch()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._tokens += 1.0  # granted, then abandoned: give the token back
                self._dispatch()
            raise

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()  # harmless when this call is that timer firing
            self._timer = None
        self._refill()
        while self._waiters and self._tokens >= _WHOLE:
            priority, *_, fut = self._waiters[0]
            if not fut.done() and priority != FINAL and self._saving_for_finals:
                break  # finals come first; progress edits wait for the crowd to thin
            heapq.heappop(self._waiters)
            if fut.done():
                continue
            self._tokens -= 1.0
            fut.set_result(None)
        while self._waiters and self._waiters[0][3].done():
            heapq.heappop(self._waiters)
        if not self._waiters:
            return
        if self._waiters[0][0] == FINAL or not self._saving_for_finals:  # else reply_finished
            delay = (1.0 - self._tokens) / self._rate
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.001), self._dispatch)


class EditBudgets:
    """One `EditBudget` per workspace, created on first use."""

    def __init__(
        self, per_minute: float, burst: int, *, on_wait: Callable[[int], None] | None = None
    ) -> None:
        self._per_minute = per_minute
        self._burst = burst
        self._on_wait = on_wait
        self._budgets: dict[str, EditBudget] = {}
        self._instances = 1

    def for_team(self, team: str) -> EditBudget:
        budget = self._budgets.get(team)
        if budget is None:
            budget = self._budgets[team] = EditBudget(
                self._per_minute / self._instances,
                self._part_of_burst(),
                on_wait=self._on_wait,
            )
        return budget

    def split_among(self, instances: int) -> None:
        """Slack's limits are per workspace, whichever process calls: `instances` live
        instances on one database (PostgreSQL) each take an equal part of every workspace's
        budget, so together they stay within it. The count comes from the instances'
        heartbeats in the database, re-read every few seconds."""
        instances = max(1, instances)
        if instances == self._instances:
            return
        self._instances = instances
        for budget in self._budgets.values():
            budget.share(self._per_minute / instances, self._part_of_burst())

    def _part_of_burst(self) -> int:
        return max(1, self._burst // self._instances)

    @property
    def open_replies(self) -> int:
        """Replies started and not finished, in every workspace."""
        return sum(budget.open_replies for budget in self._budgets.values())
