"""The app's own pages in Slack: suggested prompts in the Messages tab, and the Home tab.

Both answer `app_home_opened`. On the Messages tab (`tab == "messages"`; under `agent_view` this
is also how Slack says a DM was opened) the prompts are pinned with
`assistant.threads.setSuggestedPrompts` without a thread; on the Home tab a view is published
with `views.publish`: what the bot does, how to use it, the model in use, and the viewer's own
usage today (in their time zone) and over the last 7 days, priced like `slackbot usage`.

Slack sends the event every time someone opens a tab, so neither is redone in a tight loop: a
DM's prompts are set once an hour at most (they stay pinned), and a person's Home view is
published at most once every `HOME_REFRESH_SECONDS` (their usage changes only when they ask
something). The listener acknowledges at once; the Slack calls run beside the ack.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import messages
from slackbot.config import Settings
from slackbot.people import People
from slackbot.store import Store
from slackbot.tasks import TaskKeeper
from slackbot.usage import WEB_SEARCH_PER_1000, PriceTable, Totals, totals_of

log = logging.getLogger(__name__)

#: A person's Home view is published at most this often (each open after that republishes).
HOME_REFRESH_SECONDS = 10.0
#: A DM's suggested prompts are set at most this often.
PROMPTS_REFRESH_SECONDS = 3600.0
WEEK_SECONDS = 7 * 86400
#: The throttles forget entries past their interval once they hold this many.
MAX_REMEMBERED = 10_000


def suggested_prompts(settings: Settings) -> list[dict[str, str]]:
    """The Messages tab's prompts: `SLACKBOT_SUGGESTED_PROMPTS`, else the built-in ones."""
    pairs = settings.suggested_prompts or messages.SUGGESTED_PROMPTS
    return [{"title": title, "message": message} for title, message in pairs]


def start_of_today(now: float, tz: str | None) -> float:
    """Midnight of `now`'s day in time zone `tz` (UTC if unknown), as a Unix time."""
    try:
        zone: dt.tzinfo = ZoneInfo(tz) if tz else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    local = dt.datetime.fromtimestamp(now, zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def home_view(model: str, today: Totals, week: Totals) -> dict[str, Any]:
    """The Home tab's view."""

    def row(period: str, totals: Totals) -> str:
        tokens = (
            totals.input_tokens
            + totals.cache_creation_input_tokens
            + totals.cache_read_input_tokens
            + totals.output_tokens
        )
        return messages.HOME_USAGE_ROW.format(
            period=period,
            replies=messages.home_replies(totals.replies),
            tokens=messages.home_tokens(tokens),
            cost=totals.cost,
        )

    def section(text: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "mrkdwn", "text": text}}

    usage = "\n".join(
        [
            messages.HOME_USAGE_TITLE,
            row(messages.HOME_TODAY, today),
            row(messages.HOME_WEEK, week),
        ]
    )
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": messages.HOME_TITLE}},
            section(messages.HOME_ABOUT),
            section(messages.HOME_HOW),
            {"type": "divider"},
            section(messages.HOME_MODEL.format(model=model)),
            section(usage),
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": messages.HOME_USAGE_NOTE}],
            },
        ],
    }


class AppHome:
    """Answers `app_home_opened`: prompts on the Messages tab, a fresh view on the Home tab."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: AsyncWebClient,
        store: Store,
        people: People,
        tasks: TaskKeeper,
        model: Callable[[], str],
    ) -> None:
        self._client = client
        self._store = store
        self._people = people
        self._tasks = tasks
        self._model = model
        self._prompts = suggested_prompts(settings)
        self._prices = PriceTable.with_overrides(settings.prices)
        self._search_price = (
            WEB_SEARCH_PER_1000 if settings.web_search_price is None else settings.web_search_price
        )
        self._prompts_set: dict[tuple[str, str], float] = {}
        self._published: dict[tuple[str, str], float] = {}

    def opened(self, event: dict[str, Any], team: str) -> None:
        """Take one `app_home_opened`; returns at once (the caller acknowledges)."""
        tab, user, channel = event.get("tab"), event.get("user"), event.get("channel")
        now = time.monotonic()
        _forget_older(self._prompts_set, now - PROMPTS_REFRESH_SECONDS)
        _forget_older(self._published, now - HOME_REFRESH_SECONDS)
        if tab == "messages" and channel:
            key = (team, str(channel))
            if now - self._prompts_set.get(key, -PROMPTS_REFRESH_SECONDS) < PROMPTS_REFRESH_SECONDS:
                return
            self._prompts_set[key] = now
            self._tasks.start(self._set_prompts(key), name=f"prompts {channel}")
        elif tab == "home" and user:
            key = (team, str(user))
            if now - self._published.get(key, -HOME_REFRESH_SECONDS) < HOME_REFRESH_SECONDS:
                return
            self._published[key] = now
            self._tasks.start(self._publish(key), name=f"home {user}")

    async def _set_prompts(self, key: tuple[str, str]) -> None:
        try:
            await self._client.assistant_threads_setSuggestedPrompts(
                channel_id=key[1], title=messages.SUGGESTED_PROMPTS_TITLE, prompts=self._prompts
            )
        except Exception as exc:
            self._prompts_set.pop(key, None)  # tried again at the next open
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else repr(exc)
            log.info("could not set the Messages tab's suggested prompts: %s", error)

    async def _publish(self, key: tuple[str, str]) -> None:
        team, user = key
        try:
            view = await self.view_for(team, user)
            await self._client.views_publish(user_id=user, view=view)
        except Exception as exc:
            self._published.pop(key, None)
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else repr(exc)
            log.info("could not publish the Home tab for %s: %s", user, error)

    async def view_for(self, team: str, user: str, now: float | None = None) -> dict[str, Any]:
        """The Home view for `user`, with their usage today and over the last 7 days."""
        now = time.time() if now is None else now
        person = await self._people.person(user)
        today = await self._store.usage_totals(
            start_of_today(now, person.tz), team=team, user_id=user
        )
        week = await self._store.usage_totals(now - WEEK_SECONDS, team=team, user_id=user)
        return home_view(
            self._model(),
            totals_of(today, self._prices, self._search_price),
            totals_of(week, self._prices, self._search_price),
        )


def _forget_older(seen: dict[tuple[str, str], float], cutoff: float) -> None:
    """Keep a throttle's memory bounded: past `MAX_REMEMBERED`, drop what no longer throttles."""
    if len(seen) > MAX_REMEMBERED:
        for key in [key for key, at in seen.items() if at < cutoff]:
            del seen[key]
