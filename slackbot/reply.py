"""One reply in Slack: placeholder, paced in-place edits while Claude streams, final text.

Edits go through `chat.update` with `markdown_text`, so Claude's Markdown renders as-is. Pacing:
at most one edit in flight per message, at least `interval` seconds apart, and within the
workspace's shared `EditBudget`. An intermediate edit that Slack rate-limits is dropped (the next
one supersedes it); final text is sent the moment the stream ends and retried after
`Retry-After`. Text longer than one Slack message continues in further messages in the thread,
split at clean boundaries by `message_split.split_first`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import message_split
from slackbot.edit_budget import FIRST_TEXT, INTERMEDIATE, EditBudget

log = logging.getLogger(__name__)

#: How often a final edit or a continuation post is retried when Slack rate-limits it.
FINAL_ATTEMPTS = 8


def retry_after_seconds(exc: SlackApiError, default: float = 1.0) -> float | None:
    """Seconds Slack asked us to wait, or None if the error is not a rate limit."""
    response = exc.response
    if response.status_code != 429 and response.get("error") != "ratelimited":
        return None
    raw = (response.headers or {}).get("Retry-After") or (response.headers or {}).get("retry-after")
    try:
        return max(float(raw), 0.0) if raw is not None else default
    except ValueError:
        return default


async def call_with_retry(call: Callable[[], Awaitable[Any]], *, what: str) -> Any:
    """Run a Slack call that must land (a final edit, a post), waiting out rate limits."""
    for attempt in range(1, FINAL_ATTEMPTS + 1):
        try:
            return await call()
        except SlackApiError as exc:
            wait = retry_after_seconds(exc)
            if wait is None or attempt == FINAL_ATTEMPTS:
                raise
            log.info("%s rate-limited; retrying in %.1fs", what, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


def split_remainder(content: str, limit: int) -> tuple[str, str, str]:
    """Split `content` into (head, reopen_prefix, raw_rest) where raw_rest is a suffix of content.

    `message_split.split_first` may prefix the remainder with a reopened code fence; separating it
    lets a streaming reply keep reading the growing text by offset.
    """
    head, rest = message_split.split_first(content, limit)
    if not rest or content.endswith(rest):
        return head, "", rest
    newline = rest.find("\n")
    prefix, raw = rest[: newline + 1], rest[newline + 1 :]
    if content.endswith(raw):
        return head, prefix, raw
    raise AssertionError("split_first returned a remainder that is not a suffix of its input")


class LiveReply:
    """The Slack side of one streaming reply (one placeholder, maybe continuation messages)."""

    def __init__(
        self,
        client: AsyncWebClient,
        budget: EditBudget,
        *,
        channel: str,
        thread_ts: str | None,
        first_ts: str,
        interval: float,
        limit: int = message_split.MESSAGE_LIMIT,
    ) -> None:
        self._client = client
        self._budget = budget
        self.channel = channel
        self.thread_ts = thread_ts
        self.message_ts: list[str] = [first_ts]
        self._interval = interval
        self._limit = limit
        self.text = ""
        self._offset = 0  # where the current message's part of `text` starts
        self._carry = ""  # a code fence reopened at the top of the current message
        self._dirty = asyncio.Event()
        self._last_edit = 0.0
        self._edited_once = False
        self._in_flight: asyncio.Future[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._started = False

    def start(self) -> None:
        self._budget.reply_started()
        self._started = True
        self._loop_task = asyncio.create_task(self._edit_loop(), name="reply-edits")

    def append(self, delta: str) -> None:
        if delta:
            self.text += delta
            self._dirty.set()

    # -- streaming --------------------------------------------------------------------------

    async def _edit_loop(self) -> None:
        while True:
            await self._dirty.wait()
            wait = self._last_edit + self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            priority = INTERMEDIATE if self._edited_once else FIRST_TEXT
            await self._budget.acquire(priority, self._last_edit)
            self._dirty.clear()
            # One step runs to completion even if the stream ends meanwhile: `finish` waits for
            # it, so a half-done roll-over never leaves the offsets and the messages disagree.
            self._in_flight = asyncio.ensure_future(self._edit_step())
            try:
                await asyncio.shield(self._in_flight)
            except SlackApiError as exc:
                pause = retry_after_seconds(exc)
                if pause is not None:  # dropped; the next edit supersedes it, after the pause
                    self._budget.hold(pause)
            except Exception as exc:  # a network error: the next edit (or the final) retries
                log.warning("streaming edit failed: %r", exc)
            self._in_flight = None
            self._last_edit = time.monotonic()

    async def _edit_step(self) -> None:
        await self._roll_over()
        body = message_split.close_open_fence(self._carry + self.text[self._offset :])
        if body.strip():
            self._edited_once = True
            await self._update(self.message_ts[-1], body)

    async def _roll_over(self) -> None:
        """Seal full messages and continue in a new one while the text outgrows a message."""
        while len(self._carry) + len(self.text) - self._offset > self._limit:
            end = len(self.text)  # the text keeps growing while we await Slack below
            content = self._carry + self.text[self._offset : end]
            head, prefix, raw = split_remainder(content, self._limit)
            self._offset = end - len(raw)
            self._carry = prefix
            ts = self.message_ts[-1]
            self._budget.charge_final()
            await call_with_retry(functools.partial(self._update, ts, head), what="seal")
            shown = message_split.close_open_fence(prefix + raw) or "…"
            self.message_ts.append(await self._post(shown[: self._limit]))

    async def _update(self, ts: str, body: str) -> None:
        try:
            await self._client.chat_update(channel=self.channel, ts=ts, markdown_text=body)
        except SlackApiError as exc:
            log.warning("chat.update failed: %s", exc.response.get("error"))
            raise

    async def _post(self, body: str) -> str:
        response = await call_with_retry(
            lambda: self._client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, markdown_text=body
            ),
            what="continuation post",
        )
        return str(response["ts"])

    # -- the end ----------------------------------------------------------------------------

    async def finish(self, note: str | None = None) -> list[str]:
        """Stop streaming edits and put the full final text (plus `note`) in Slack at once."""
        try:
            return await self._finish(note)
        finally:
            if self._started:
                self._started = False
                self._budget.reply_finished()

    async def _finish(self, note: str | None) -> list[str]:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])  # one edit in flight per message
            if not self._in_flight.cancelled() and self._in_flight.exception() is not None:
                log.warning("last streaming edit failed: %r", self._in_flight.exception())
        content = self._carry + self.text[self._offset :]
        if note:
            content = f"{content.rstrip()}\n\n{note}" if content.strip() else note
        pieces = message_split.split(content, self._limit) or ["…"]
        ts = self.message_ts[-1]
        self._budget.charge_final()
        try:
            await call_with_retry(lambda: self._update(ts, pieces[0]), what="final edit")
        except SlackApiError:
            # The placeholder can't be edited (deleted, or Slack refuses the edit): the answer
            # still has to reach the thread, so it goes out as a new message.
            self.message_ts.append(await self._post(pieces[0]))
        for piece in pieces[1:]:
            self.message_ts.append(await self._post(piece))
        return list(self.message_ts)
