"""A thread's status while the bot works on a reply: the agent session, or the fallback.

At the start of a turn in a thread the session is set to `processing` (Slack shows its status
and a Stop button); at the end — always, errors included — back to `active`, unless the reply's
`chat.stopStream` already did that with its `session_status`. An app Slack does not treat as an
agent answers `agents.sessions.setStatus` with `not_authorized` (or doesn't know the method):
that workspace then gets `assistant.threads.setStatus` instead, a loading text with rotating
messages, cleared at the end. Each workspace's answer is remembered for an hour, so a refusal
costs one call an hour, not one per reply; a workspace that refuses both gets no status calls.

Status calls are Tier 3, like `chat.update`: they take their turn in the workspace's edit budget
at the priority of a final text (`EditBudget.acquire_final`), so they never push a final text
into Slack's rate limit, and a rate-limited one waits its turn again. They never raise: a status
that cannot be set is logged, and the reply goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import messages
from slackbot.edit_budget import EditBudgets
from slackbot.slack_calls import FINAL_ATTEMPTS, retry_after_seconds

log = logging.getLogger(__name__)

Mode = Literal["sessions", "assistant", "none"]

#: A workspace's refusal of a status method is remembered this long.
REMEMBER_SECONDS = 3600.0
#: Answers that mean "this app can't use this method here" (as opposed to a passing failure).
UNAVAILABLE = frozenset(
    {"not_authorized", "unknown_method", "method_deprecated", "not_allowed", "missing_scope"}
)


class SessionStatus:
    def __init__(
        self,
        client: AsyncWebClient,
        budgets: EditBudgets,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._budgets = budgets
        self._clock = clock
        #: Per workspace: the mode that failed and until when it is not tried again.
        self._fallback: dict[str, tuple[Mode, float]] = {}
        #: Status calls made (for monitoring and the benchmark).
        self.calls = 0

    def mode(self, team: str) -> Mode:
        """How this workspace's thread status is set now."""
        remembered = self._fallback.get(team)
        if remembered is None:
            return "sessions"
        mode, until = remembered
        if self._clock() >= until:
            del self._fallback[team]
            return "sessions"
        return mode

    def _remember(self, team: str, mode: Mode, error: str) -> None:
        self._fallback[team] = (mode, self._clock() + REMEMBER_SECONDS)
        if mode == "assistant":
            log.warning(
                "workspace %s answered agents.sessions.setStatus with %s: using "
                "assistant.threads.setStatus there for an hour",
                team,
                error,
            )
        else:
            log.warning(
                "workspace %s refused assistant.threads.setStatus too (%s): no thread status "
                "there for an hour",
                team,
                error,
            )

    async def begin(
        self,
        *,
        team: str,
        channel: str,
        thread_ts: str,
        title: str | None = None,
        initiator: str | None = None,
    ) -> None:
        """The turn starts: `processing` (with the session's title and initiator when it is
        created, i.e. for the thread's first message), or the fallback's loading status."""
        if self.mode(team) == "sessions":
            error = await self._set(
                team,
                lambda: self._client.agents_sessions_setStatus(
                    channel_id=channel,
                    thread_ts=thread_ts,
                    status="processing",
                    title=title,
                    initiator_user_id=initiator,
                ),
            )
            if error not in UNAVAILABLE:
                return
            self._remember(team, "assistant", error or "")
        if self.mode(team) == "assistant":
            await self._assistant(team, channel, thread_ts, messages.STATUS_LOADING)

    async def end(
        self, *, team: str, channel: str, thread_ts: str, session_ended: bool = False
    ) -> None:
        """The turn is over: the session back to `active` (unless the reply's stopStream did
        it, `session_ended`), or the fallback status cleared."""
        mode = self.mode(team)
        if mode == "sessions" and not session_ended:
            error = await self._set(
                team,
                lambda: self._client.agents_sessions_setStatus(
                    channel_id=channel, thread_ts=thread_ts, status="active"
                ),
            )
            if error in UNAVAILABLE:  # refused only now (a scope removed meanwhile)
                self._remember(team, "assistant", error or "")
                mode = "assistant"
        if mode == "assistant":
            await self._assistant(team, channel, thread_ts, "")

    async def _assistant(self, team: str, channel: str, thread_ts: str, status: str) -> None:
        loading = list(messages.LOADING_MESSAGES) if status else None
        error = await self._set(
            team,
            lambda: self._client.assistant_threads_setStatus(
                channel_id=channel, thread_ts=thread_ts, status=status, loading_messages=loading
            ),
        )
        if error in UNAVAILABLE:
            self._remember(team, "none", error or "")

    async def _set(self, team: str, call: Callable[[], Awaitable[Any]]) -> str | None:
        """One status call in the workspace's Tier-3 budget, at a final text's priority;
        returns Slack's error, or None when it landed. Rate limits wait their turn again."""
        budget = self._budgets.for_team(team)
        place = budget.final_place()
        for attempt in range(1, FINAL_ATTEMPTS + 1):
            granted = await budget.acquire_final(place)
            self.calls += 1
            try:
                await call()
                return None
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "")
                pause = retry_after_seconds(exc)
                if pause is None or attempt == FINAL_ATTEMPTS:
                    if error not in UNAVAILABLE:
                        log.warning("thread status call failed: %s", error)
                    return error
                budget.hold(pause, sent_at=granted)
            except Exception as exc:  # network: the status is cosmetic, the reply goes on
                log.warning("thread status call failed: %r", exc)
                return "network"
        return "ratelimited"
