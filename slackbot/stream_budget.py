"""Per-workspace budgets and memory for Slack's native streaming.

`chat.startStream` and `chat.stopStream` are Tier 2: about 20 calls a minute per workspace,
shared by every reply. A stream costs two of them (its start and its stop), so a reply streams
natively only if both fit in the minute (`StartStopBudget.reserve`); otherwise it uses
`chat.update`, which has its own budget. Nothing ever waits for Tier 2: a reply that can't have
a stream now is shown another way at once. `chat.appendStream` is Tier 4 (about 100 a minute,
shared): appends wait their turn in an `EditBudget` of their own, the stream's text buffering
meanwhile.

A workspace whose Slack refuses `chat.startStream` outright (not set up for it, unknown method,
not allowed, …) is remembered as update-only for an hour (`TeamStreams.refuse`), with one
warning, so every reply there does not try and fail first.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from slackbot.edit_budget import EditBudget

log = logging.getLogger(__name__)

#: Starts and stops per sliding minute per workspace: Slack's Tier 2 (~20), with a margin.
START_STOP_PER_MINUTE = 18
#: Appends per minute per workspace and their burst: Slack's Tier 4 (~100), with a margin.
APPENDS_PER_MINUTE = 90.0
APPEND_BURST = 10
#: How long a workspace that refused `chat.startStream` is left to `chat.update`.
UPDATE_ONLY_SECONDS = 3600.0
WINDOW_SECONDS = 60.0


class StartStopBudget:
    """Tier 2 for one workspace: the calls of the last minute, plus the stops owed by the
    streams open now (each stream reserves its stop when it starts)."""

    def __init__(
        self,
        per_minute: int = START_STOP_PER_MINUTE,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._times: list[float] = []
        self._owed_stops = 0
        self._held_until = -math.inf

    def _in_window(self) -> int:
        cutoff = self._clock() - WINDOW_SECONDS
        if self._times and self._times[0] <= cutoff:
            self._times = [t for t in self._times if t > cutoff]
        return len(self._times)

    def reserve(self) -> bool:
        """Room for one stream's start and its stop? If so, the start is counted now and the
        stop is owed until `stopped` (or `release`)."""
        if self._clock() < self._held_until:
            return False
        if self._in_window() + self._owed_stops + 2 > self.per_minute:
            return False
        self._times.append(self._clock())
        self._owed_stops += 1
        return True

    def stopped(self) -> None:
        """A stream's stop was sent: counted at the time it was."""
        self._owed_stops = max(0, self._owed_stops - 1)
        self._times.append(self._clock())

    def release(self) -> None:
        """A reserved stream will send no stop (its start failed, Slack ended it early)."""
        self._owed_stops = max(0, self._owed_stops - 1)

    def hold(self, seconds: float) -> None:
        """Slack rate-limited a start or stop: no new stream for `seconds`."""
        self._held_until = max(self._held_until, self._clock() + seconds)


class TeamStreams:
    """One workspace's native streaming: its Tier-2 and Tier-4 budgets and whether its Slack
    takes native streams at all."""

    def __init__(
        self, team: str, *, clock: Callable[[], float] = time.monotonic, instances: int = 1
    ) -> None:
        self.team = team
        self._clock = clock
        self.starts = StartStopBudget(clock=clock)
        self.appends = EditBudget(APPENDS_PER_MINUTE, APPEND_BURST, clock=clock)
        self._update_only_until = -math.inf
        self.share(instances)

    def share(self, instances: int) -> None:
        """This instance's part of the workspace's limits, `instances` sharing them."""
        self.starts.per_minute = max(2, START_STOP_PER_MINUTE // instances)
        self.appends.share(APPENDS_PER_MINUTE / instances, max(1, APPEND_BURST // instances))

    @property
    def native_allowed(self) -> bool:
        return self._clock() >= self._update_only_until

    def refuse(self, error: str) -> None:
        """Slack refused `chat.startStream` here for a reason retrying won't fix."""
        if self.native_allowed:
            log.warning(
                "workspace %s refused chat.startStream (%s): replies there use chat.update "
                "for the next hour",
                self.team,
                error,
            )
        self._update_only_until = self._clock() + UPDATE_ONLY_SECONDS


class StreamBudgets:
    """One `TeamStreams` per workspace, created on first use."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._teams: dict[str, TeamStreams] = {}
        self._instances = 1

    def for_team(self, team: str) -> TeamStreams:
        streams = self._teams.get(team)
        if streams is None:
            streams = TeamStreams(team, clock=self._clock, instances=self._instances)
            self._teams[team] = streams
        return streams

    def split_among(self, instances: int) -> None:
        """Slack's limits are per workspace, whichever process calls: `instances` live
        instances on one database each take an equal part (like `EditBudgets.split_among`)."""
        instances = max(1, instances)
        if instances == self._instances:
            return
        self._instances = instances
        for streams in self._teams.values():
            streams.share(instances)
