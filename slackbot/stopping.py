"""Stopping a reply mid-stream: which turn a Stop is for, and who may press it.

Two ways in, one way out. Slack's own Stop (the `agent_session_stopped` event, shown on an agent
session while its status is `processing`) names a thread; the Stop button on a `chat.update`
reply (an actions block, `STOP_ACTION`) carries the ts of the message being answered. Both find
the turn here and set its `StopSignal`; the turn (`conversation.py`) then cancels its Claude
stream, which closes the HTTP response so no more tokens are generated or billed, and ends the
reply with the text so far. A Stop for a turn that has already finished finds nothing and does
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slackbot import messages

log = logging.getLogger(__name__)

#: The Stop button's `action_id` (Bolt routes clicks on it to `app.py`'s listener).
STOP_ACTION = "slackbot_stop_reply"
STOP_BLOCK_ID = "slackbot_stop"


def stop_block(answers_ts: str) -> dict[str, Any]:
    """The actions block beside a streaming `chat.update` reply: one Stop button whose value
    is the ts of the message the reply answers (which turn to stop)."""
    return {
        "type": "actions",
        "block_id": STOP_BLOCK_ID,
        "elements": [
            {
                "type": "button",
                "action_id": STOP_ACTION,
                "text": {"type": "plain_text", "text": messages.STOP_BUTTON},
                "value": answers_ts,
            }
        ],
    }


#: Who else may stop someone's reply: `(workspace, user) -> bool`. The default lets the asker
#: alone; `Conversations` fills it with `SLACKBOT_ADMINS` (`Settings.is_admin`).
IsAdmin = Callable[[str, str], bool]


def nobody_else(team: str, user: str) -> bool:
    return False


@dataclass
class StopSignal:
    """One turn's Stop: set at most once; the turn waits on `stopped` while it streams."""

    team: str
    channel: str
    thread_ts: str | None
    answers_ts: str
    asker: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    #: When the Stop arrived (loop time), for the log and the benchmark.
    at: float | None = None

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    def stop(self) -> None:
        if not self.event.is_set():
            self.at = asyncio.get_running_loop().time()
            self.event.set()


class Stops:
    """The turns that can be stopped now: every turn from its arrival to its final text.

    Keyed by the answered message (the button) and by the thread (Slack's Stop, which stops
    the reply being written in that thread — the first one, not those queued behind it).
    """

    def __init__(self, is_admin: IsAdmin = nobody_else) -> None:
        self.is_admin = is_admin
        self._by_answer: dict[tuple[str, str], StopSignal] = {}
        self._by_thread: dict[tuple[str, str, str], list[StopSignal]] = {}

    def enter(
        self, *, team: str, channel: str, thread_ts: str | None, answers_ts: str, asker: str
    ) -> StopSignal:
        signal = StopSignal(team, channel, thread_ts, answers_ts, asker)
        self._by_answer[(channel, answers_ts)] = signal
        if thread_ts is not None:
            self._by_thread.setdefault((team, channel, thread_ts), []).append(signal)
        return signal

    def leave(self, signal: StopSignal) -> None:
        if self._by_answer.get((signal.channel, signal.answers_ts)) is signal:
            del self._by_answer[(signal.channel, signal.answers_ts)]
        if signal.thread_ts is not None:
            key = (signal.team, signal.channel, signal.thread_ts)
            waiting = self._by_thread.get(key, [])
            if signal in waiting:
                waiting.remove(signal)
            if not waiting:
                self._by_thread.pop(key, None)

    def stop_thread(self, team: str, channel: str, thread_ts: str) -> bool:
        """Slack's Stop on the thread's session: stops the reply being written there (the
        oldest turn not yet finished). False if none is."""
        waiting = self._by_thread.get((team, channel, thread_ts))
        if not waiting:
            return False
        waiting[0].stop()
        return True

    def stop_button(self, channel: str, answers_ts: str, user: str) -> bool | None:
        """A click on a reply's Stop button by `user`: True if stopped, False if `user` may
        not stop it, None if that reply has already finished (nothing to do)."""
        signal = self._by_answer.get((channel, answers_ts))
        if signal is None:
            return None
        if user != signal.asker and not self.is_admin(signal.team, user):
            return False
        signal.stop()
        return True

    def __len__(self) -> int:
        return len(self._by_answer)
