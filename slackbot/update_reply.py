"""A reply in Slack through `chat.update`: placeholder, paced in-place edits, final text.

Edits go through `chat.update` with `markdown_text`, so Claude's Markdown renders as-is. Pacing:
at most one edit in flight per message, at least `interval` seconds apart, and within the
workspace's shared `EditBudget`. An intermediate edit that Slack rate-limits is dropped (the next
one supersedes it). Edits that must land (the final text, a full message sealed before the
reply continues in the next) take the budget's top priority: sent the moment the stream ends,
or, after Slack refused one, in turn; a refused one holds the whole budget for `Retry-After`
and waits its turn again. Text longer than one Slack message continues in further messages in
the thread, split at clean boundaries by `message_split.split_first`. A reply with feedback
buttons carries them on its last message, its text then in a `markdown` block beside them
(`feedback.with_buttons`); while it streams, a reply's message carries the Stop button the
same way (`stopping.stop_block`), and its final edit drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import message_split, messages
from slackbot.edit_budget import FIRST_TEXT, INTERMEDIATE, EditBudget, EditBudgets
from slackbot.events import Incoming
from slackbot.feedback import MARKDOWN_BLOCK_LIMIT, FeedbackTag, with_buttons
from slackbot.slack_calls import FINAL_ATTEMPTS, post_with_backoff, retry_after_seconds
from slackbot.sources import Sources
from slackbot.stream_events import (
    Citation,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ThinkingStarted,
    ToolCall,
)

log = logging.getLogger(__name__)


def split_remainder(content: str, limit: int) -> tuple[str, str, str]:
    """Split `content` into (head, reopen_prefix, raw_rest) where raw_rest is a suffix of content.

    `message_split.split_first` may prefix the remainder with a reopened code fence; separating
    it lets a streaming reply keep reading the growing text by offset.
    """
    head, rest = message_split.split_first(content, limit)
    if not rest or content.endswith(rest):
        return head, "", rest
    newline = rest.find("\n")
    prefix, raw = rest[: newline + 1], rest[newline + 1 :]
    if content.endswith(raw):
        return head, prefix, raw
    raise AssertionError("split_first returned a remainder that is not a suffix of its input")


#: Enough of a thinking summary for the progress line's few words; the rest is never looked at.
THINKING_CHARS = 400


class UpdateReply:
    """The Slack side of one reply (one placeholder, maybe continuation messages)."""

    #: A `chat.update` reply never ends the agent session itself (see `Reply.session_ended`).
    session_ended = False

    def __init__(
        self,
        client: AsyncWebClient,
        budget: EditBudget,
        *,
        channel: str,
        thread_ts: str | None,
        interval: float,
        limit: int = message_split.MESSAGE_LIMIT,
        stop_button: dict[str, Any] | None = None,
        sources: Sources | None = None,
    ) -> None:
        self._client = client
        self._budget = budget
        self.channel = channel
        self.thread_ts = thread_ts
        self.message_ts: list[str] = []
        #: Messages a resumed reply already occupies beyond its first: reused, in order, before
        #: any new message is posted.
        self._spare_ts: list[str] = []
        self._interval = interval
        self._limit = limit
        self.text = ""
        self._offset = 0  # where the current message's part of `text` starts
        self._carry = ""  # a code fence reopened at the top of the current message
        self._dirty = asyncio.Event()
        self._sources = sources if sources is not None else Sources()
        #: An actions block (the Stop button) shown on the streaming message, never on a
        #: final one; the messages carrying it now.
        self._stop_button = stop_button
        self._button_on: set[str] = set()
        #: What the model is doing while no answer text streams (thinking, a tool call).
        self._progress: str | None = None
        self._thinking = ""  # the start of the thinking summary: the progress line's words
        self._urgent = False
        self._urgent_set = asyncio.Event()
        self._last_edit = 0.0
        self._edited_once = False
        self._in_flight: asyncio.Future[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._started = False
        #: When `start` was called, and when the answer's first text showed in Slack
        #: (monotonic clock): the metrics' time to first visible text and reply duration.
        self.started_at: float | None = None
        self.first_text_at: float | None = None
        #: Edits that reached Slack: a checkpoint stores the text after each (see `Reply`).
        self.shows = 0

    @classmethod
    def resumed(
        cls,
        client: AsyncWebClient,
        budget: EditBudget,
        *,
        channel: str,
        thread_ts: str | None,
        message_ts: Sequence[str],
        text: str,
        interval: float,
    ) -> UpdateReply:
        """A reply a crash left unfinished, with the text last stored: `finish` lays the whole
        text (and its note) over the messages it had, then posts what no longer fits."""
        reply = cls(client, budget, channel=channel, thread_ts=thread_ts, interval=interval)
        reply.message_ts = list(message_ts[:1])
        reply._spare_ts = list(message_ts[1:])
        # Any of them may still carry the Stop button it had while streaming: the final edits
        # replace their blocks, so no button outlives the crash.
        reply._button_on = set(message_ts)
        reply.text = text
        reply._started = True
        budget.reply_started()
        return reply

    @classmethod
    def taking_over(
        cls,
        client: AsyncWebClient,
        budget: EditBudget,
        *,
        channel: str,
        thread_ts: str | None,
        ts: str,
        text: str,
        interval: float,
        sources: Sources,
        stop_button: dict[str, Any] | None = None,
    ) -> UpdateReply:
        """Continue a live reply in message `ts`, which already shows `text` (a native stream
        that Slack ended early): edits from here on, and further messages as needed."""
        reply = cls(
            client,
            budget,
            channel=channel,
            thread_ts=thread_ts,
            interval=interval,
            stop_button=stop_button,
            sources=sources,
        )
        reply.message_ts = [ts]
        reply.text = text
        reply._started = True
        budget.reply_started()
        reply._edited_once = True
        reply._dirty.set()  # the next edit shows the text as it stands (and the Stop button)
        reply._loop_task = asyncio.create_task(reply._edit_loop(), name="reply-edits")
        return reply

    async def show_from(self, text: str) -> None:
        """Start a live reply whose first message shows `text` at once (a native stream that
        could not start): posted now, paced edits from then on."""
        first = message_split.close_open_fence(text[: self._limit // 2]).strip()
        self.text = text
        await self.start(first or messages.PLACEHOLDER)
        self._edited_once = True
        if text.strip() != first:
            self._dirty.set()

    async def start(self, placeholder: str) -> str:
        if self.started_at is None:
            self.started_at = time.monotonic()
        ts = await self._post(placeholder, live=True)
        self.message_ts.append(ts)
        self._budget.reply_started()
        self._started = True
        self._loop_task = asyncio.create_task(self._edit_loop(), name="reply-edits")
        return ts

    def take(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            if event.text:
                self.text += event.text
                self._show_progress(None)
                self._dirty.set()
        elif isinstance(event, Citation):
            self.text += self._sources.markers(event.locations)
            self._dirty.set()
        elif isinstance(event, ThinkingStarted):
            self._thinking = ""
            self._show_progress(messages.THINKING_PROGRESS)
        elif isinstance(event, ThinkingDelta):
            if len(self._thinking) < THINKING_CHARS:  # the line shows its first words only
                self._thinking += event.text
                summary = messages.thinking_progress(self._thinking)
                if summary and summary != self._progress:
                    self._progress = summary  # a refinement of the same line: no hurry
                    self._dirty.set()
        elif isinstance(event, ToolCall):
            self._show_progress(messages.tool_progress(event.name, event.input))

    def final_text(self) -> str:
        """The answer as it ends up in Slack (and in the store): text, then its sources."""
        footer = self._sources.footer()
        return f"{self.text.rstrip()}\n\n{footer}" if footer else self.text

    def _show_progress(self, line: str | None) -> None:
        """Switch the line that says what the model is doing; the switch skips the edit
        interval (the answer replacing it, or it appearing, should not wait a second)."""
        if line == self._progress:
            return
        self._progress = line
        self._urgent = True
        self._urgent_set.set()
        self._dirty.set()

    # -- streaming --------------------------------------------------------------------------

    async def _edit_loop(self) -> None:
        while True:
            await self._dirty.wait()
            wait = self._last_edit + self._interval - time.monotonic()
            if wait > 0 and not self._urgent:
                with contextlib.suppress(TimeoutError):  # an urgent switch cuts the wait short
                    await asyncio.wait_for(self._urgent_set.wait(), wait)
            self._urgent = False
            self._urgent_set.clear()
            priority = INTERMEDIATE if self._edited_once else FIRST_TEXT
            granted = await self._budget.acquire(priority, self._last_edit)
            self._dirty.clear()
            # One step runs to completion even if the stream ends meanwhile: `finish` waits for
            # it, so a half-done roll-over never leaves the offsets and the messages disagree.
            self._in_flight = asyncio.ensure_future(self._edit_step(granted))
            try:
                await asyncio.shield(self._in_flight)
            except SlackApiError:
                pass  # dropped; the next edit supersedes it (after the pause, if rate-limited)
            except Exception as exc:  # a network error: the next edit (or the final) retries
                log.warning("streaming edit failed: %r", exc)
            self._in_flight = None
            self._last_edit = time.monotonic()

    async def _edit_step(self, granted: float) -> None:
        try:
            await self._roll_over()
            body = message_split.close_open_fence(self._carry + self.text[self._offset :])
            if self._progress:
                body = f"{body.rstrip()}\n\n{self._progress}" if body.strip() else self._progress
            if body.strip():
                self._edited_once = True
                await self._update(self.message_ts[-1], body, live=True)
        except SlackApiError as exc:
            # Held here, not in the loop: when the stream ends mid-edit, `finish` cancels the
            # loop and waits for this step, and its final must see the budget held.
            pause = retry_after_seconds(exc)
            if pause is not None:
                self._budget.hold(pause, sent_at=granted)
            raise

    async def _roll_over(self) -> None:
        """Seal full messages and continue in a new one while the text outgrows a message.

        The offsets move on only once the sealed message and the next one both exist: if
        either call fails, the next edit (or `finish`) starts again from the same text.
        """
        while len(self._carry) + len(self.text) - self._offset > self._limit:
            end = len(self.text)  # the text keeps growing while we await Slack below
            content = self._carry + self.text[self._offset : end]
            head, prefix, raw = split_remainder(content, self._limit)
            await self._final_update(self.message_ts[-1], head)
            shown = message_split.close_open_fence(prefix + raw) or "…"
            following = await self._next_message(shown[: self._limit], live=True)
            self._offset = end - len(raw)
            self._carry = prefix
            self.message_ts.append(following)

    def _content(
        self, ts: str | None, body: str, live: bool, tag: FeedbackTag | None = None
    ) -> dict[str, Any]:
        """What a post or an edit carries: `markdown_text`; with feedback buttons (a final
        message), the Markdown in a `markdown` block beside them; while the reply streams with
        a Stop button, the same beside that (Slack takes one or the other). A final edit of a
        message that had the Stop button sends its blocks anew, so the button is gone."""
        if tag is not None:
            return with_buttons(body, tag)
        if live and self._stop_button is not None:
            return {
                "text": _fallback(body),
                "blocks": [{"type": "markdown", "text": body}, self._stop_button],
            }
        if ts is not None and ts in self._button_on:
            return {"text": _fallback(body), "blocks": [{"type": "markdown", "text": body}]}
        return {"markdown_text": body}

    async def _update(
        self, ts: str, body: str, tag: FeedbackTag | None = None, *, live: bool = False
    ) -> None:
        content = self._content(ts, body, live, tag)
        shows_text = bool(self.text.strip())
        try:
            await self._client.chat_update(channel=self.channel, ts=ts, **content)
        except SlackApiError as exc:
            log.warning("chat.update failed: %s", exc.response.get("error"))
            raise
        self._mark_button(ts, live)
        self.shows += 1
        if shows_text and self.first_text_at is None:
            self.first_text_at = time.monotonic()

    def _mark_button(self, ts: str, live: bool) -> None:
        if live and self._stop_button is not None:
            self._button_on.add(ts)
        else:
            self._button_on.discard(ts)

    async def _final_update(self, ts: str, body: str, tag: FeedbackTag | None = None) -> None:
        """An edit that must land, at the budget's top priority and keeping its place in line.

        A refusal holds the whole workspace's budget for `Retry-After` and the edit waits its
        turn again, so refused finals go out one by one as the budget refills instead of all
        retrying at the same moment.
        """
        place = self._budget.final_place()
        for attempt in range(1, FINAL_ATTEMPTS + 1):
            granted = await self._budget.acquire_final(place)
            try:
                await self._update(ts, body, tag)
                return
            except SlackApiError as exc:
                pause = retry_after_seconds(exc)
                if pause is None or attempt == FINAL_ATTEMPTS:
                    raise
                log.info("final edit rate-limited; waiting its turn (Retry-After %.1fs)", pause)
                self._budget.hold(pause, sent_at=granted)

    async def _post(self, body: str, tag: FeedbackTag | None = None, *, live: bool = False) -> str:
        """Post a message of this reply (its placeholder, a continuation, a re-posted answer):
        without it there is nowhere to answer, so 5xx answers and network errors are retried
        with backoff, for up to a minute."""
        content = self._content(None, body, live, tag)
        response = await post_with_backoff(
            lambda: self._client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, **content
            ),
            what="chat.postMessage",
        )
        ts = str(response["ts"])
        self._mark_button(ts, live)
        return ts

    async def _next_message(
        self, body: str, tag: FeedbackTag | None = None, *, live: bool = False
    ) -> str:
        """The next message of a long reply: one it occupied before a restart, else a new one."""
        if self._spare_ts:
            ts = self._spare_ts.pop(0)
            try:
                await self._final_update(ts, body, tag)
                return ts
            except Exception as exc:  # deleted meanwhile, refused, timed out: post instead
                return await self._post_instead(ts, body, exc, tag)
        return await self._post(body, tag, live=live)

    async def _post_instead(
        self, ts: str, body: str, why: BaseException, tag: FeedbackTag | None = None
    ) -> str:
        """Post `body` as a new message because message `ts` could not be edited to it, then
        delete `ts`: a placeholder left above the answer would say "Thinking…" forever.

        The delete is tried once (slack_sdk's own retries aside); a failure is only logged.
        """
        log.warning("could not edit %s (%r): posting its text as a new message", ts, why)
        posted = await self._post(body, tag)
        gone = isinstance(why, SlackApiError) and why.response.get("error") == "message_not_found"
        if not gone:
            try:
                await self._client.chat_delete(channel=self.channel, ts=ts)
            except Exception as exc:
                log.warning("could not delete %s after posting its text anew: %r", ts, exc)
                return posted
        if ts in self.message_ts:
            self.message_ts.remove(ts)
        return posted

    # -- the end ----------------------------------------------------------------------------

    async def finish(
        self, note: str | None = None, *, feedback: FeedbackTag | None = None
    ) -> list[str]:
        """Stop streaming edits and put the full final text (plus `note`) in Slack at once;
        with `feedback`, the last message carries the 👍/👎 buttons."""
        try:
            return await self._finish(note, feedback)
        finally:
            if self._started:
                self._started = False
                self._budget.reply_finished()

    async def stop(self, *, feedback: FeedbackTag | None = None) -> list[str]:
        return await self.finish(messages.STOPPED, feedback=feedback)

    async def _finish(self, note: str | None, feedback: FeedbackTag | None) -> list[str]:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])  # one edit in flight per message
            if not self._in_flight.cancelled() and self._in_flight.exception() is not None:
                log.warning("last streaming edit failed: %r", self._in_flight.exception())
        content = self._carry + self.text[self._offset :]
        footer = self._sources.footer()
        if footer:
            content = f"{content.rstrip()}\n\n{footer}"
        if note:
            content = f"{content.rstrip()}\n\n{note}" if content.strip() else note
        pieces = message_split.split(content, self._limit) or ["…"]
        if feedback is not None and len(pieces[-1]) > MARKDOWN_BLOCK_LIMIT:
            # Only with a limit above the markdown block's: the last piece must fit in one.
            pieces[-1:] = message_split.split(pieces[-1], MARKDOWN_BLOCK_LIMIT)
        tags: list[FeedbackTag | None] = [None] * len(pieces)
        tags[-1] = feedback
        if not self.message_ts:  # nothing was ever posted (a reply resumed before its first)
            self.message_ts.append(await self._post(pieces[0], tags[0]))
            for piece, tag in zip(pieces[1:], tags[1:], strict=True):
                self.message_ts.append(await self._next_message(piece, tag))
            return list(self.message_ts)
        ts = self.message_ts[-1]
        try:
            await self._final_update(ts, pieces[0], tags[0])
        except Exception as exc:
            # The placeholder can't be edited (deleted, Slack refuses the edit, the call timed
            # out or the connection broke, slack_sdk's own retries spent): the answer still has
            # to reach the thread, so it goes out as a new message.
            self.message_ts.append(await self._post_instead(ts, pieces[0], exc, tags[0]))
        for piece, tag in zip(pieces[1:], tags[1:], strict=True):
            self.message_ts.append(await self._next_message(piece, tag))
        return list(self.message_ts)


def _fallback(body: str, limit: int = 150) -> str:
    """The `text` that goes with blocks (notifications, screen readers): the start of it."""
    line = " ".join(body.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class UpdateReplies:
    """`chat.update` replies, each paced within its workspace's edit budget."""

    def __init__(self, client: AsyncWebClient, budgets: EditBudgets, *, interval: float) -> None:
        self._client = client
        #: Every workspace's budget (public for monitoring: how many replies and edits wait).
        self.budgets = budgets
        self.interval = interval

    def open(self, msg: Incoming, *, stop_button: dict[str, Any] | None = None) -> UpdateReply:
        return UpdateReply(
            self._client,
            self.budgets.for_team(msg.team),
            channel=msg.channel,
            thread_ts=msg.thread_root,
            interval=self.interval,
            stop_button=stop_button,
        )

    def resume(
        self,
        *,
        team: str,
        channel: str,
        thread_ts: str | None,
        message_ts: Sequence[str],
        text: str,
    ) -> UpdateReply:
        return UpdateReply.resumed(
            self._client,
            self.budgets.for_team(team),
            channel=channel,
            thread_ts=thread_ts,
            message_ts=message_ts,
            text=text,
            interval=self.interval,
        )

    async def reopen(
        self, *, channel: str, thread_ts: str | None, message_ts: Sequence[str]
    ) -> None:
        """Nothing to do: `chat.update` messages are always editable."""
