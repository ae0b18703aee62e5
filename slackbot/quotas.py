"""Spend limits: tokens per person and estimated dollars per workspace, per UTC day.

Counted from the stored usage (`Store.usage_totals`), so a limit holds across restarts and
across instances sharing one database. The check runs before a message is stored or Claude is
called; a reply that crosses a limit while it streams finishes (the next request is refused).
Replies in flight at the same moment are not counted until they end, so a burst can overshoot
a limit by what those replies use.

Tokens count input (cache reads and writes included) plus output. Dollars are the same
estimate as `slackbot usage` (`usage.py`'s price table with `SLACKBOT_PRICES`, web searches
included); spend counts against the installing workspace (or Grid enterprise), whoever asks.
`SLACKBOT_ADMINS` have no per-person limit; the workspace's applies to everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from slackbot.config import Settings
from slackbot.store import Store, UsageTotal
from slackbot.usage import WEB_SEARCH_PER_1000, PriceTable, totals_of


@dataclass(frozen=True)
class OverLimit:
    """A limit reached: which one, its value, and when it resets."""

    kind: str  # "user_tokens" | "workspace_usd"
    limit: float
    resets_at: datetime


def day_start(now: datetime) -> datetime:
    """Midnight UTC of `now`'s day: when today's limits began."""
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def week_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of `now`'s week."""
    start = day_start(now)
    return start - timedelta(days=start.weekday())


@dataclass
class Quotas:
    settings: Settings
    store: Store
    #: `SLACKBOT_PRICES` over the built-in table: built once, read before every reply.
    prices: PriceTable = field(init=False)

    def __post_init__(self) -> None:
        self.prices = PriceTable.with_overrides(self.settings.prices)

    def cost(self, totals: Iterable[UsageTotal]) -> float:
        """Estimated USD of some usage, as `slackbot usage` prices it."""
        per_search = self.settings.web_search_price
        if per_search is None:
            per_search = WEB_SEARCH_PER_1000
        return totals_of(totals, self.prices, per_search).cost

    async def over_limit(
        self, user_id: str, workspace: str, now: datetime | None = None
    ) -> OverLimit | None:
        """The limit `user_id` asking in `workspace` has reached today, or None."""
        now = now or datetime.now(UTC)
        start = day_start(now)
        resets = start + timedelta(days=1)
        settings = self.settings
        tokens = settings.user_daily_tokens
        if tokens is not None and not settings.is_admin(user_id):
            used = await self.store.usage_totals(start.timestamp(), user_id=user_id)
            if sum(total.tokens for total in used) >= tokens:
                return OverLimit("user_tokens", tokens, resets)
        dollars = settings.workspace_daily_usd
        if dollars is not None:
            spent = await self.store.usage_totals(start.timestamp(), team=workspace)
            if self.cost(spent) >= dollars:
                return OverLimit("workspace_usd", dollars, resets)
        return None
