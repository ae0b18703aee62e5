"""A reply through Slack's native streaming: `chat.startStream`, `appendStream`, `stopStream`.

The second implementation of `reply.Reply` (the first is `update_reply.UpdateReply`). Nothing is
posted until there is something to show: the thread's session status says the bot is working
until then, and the stream starts with the first content — text, or a thinking step. Thinking
and tool calls are shown as thinking steps (`task_update` chunks: "Searching the web for …",
complete once the result is back, with the URLs the answer cites as the step's sources).

Appends are buffered: at most one call in flight, `APPEND_INTERVAL` apart, within the
workspace's Tier-4 append budget (`stream_budget.TeamStreams.appends`); text that arrives
meanwhile goes out with the next one. A stream must fit Slack's size limit for a streamed
message (text plus the task cards' JSON, about 10.6 KB): at `BYTE_BUDGET` the message is
finished and the reply continues in a new stream, a code block closed and reopened across the
cut, as long replies do with `chat.update`.

Every reply arrives whole, whatever Slack does:
- no room for a stream in the workspace's Tier-2 minute, a start Slack refuses (remembered for
  the workspace, see `TeamStreams.refuse`), rate-limits or fails → the rest of the reply is a
  `chat.update` reply (`UpdateReply`), posted at once;
- a stream Slack ends early (`message_not_in_streaming_state`: its expiry, about five minutes)
  or refuses to extend → the same message is taken over by an `UpdateReply` (`chat.update`
  works on it again), which edits it and continues in further messages;
- `user_not_found` / `team_not_found` on `stopStream` (Slack Connect recipients): the text is
  visible already; logged at debug.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import message_split, messages
from slackbot.edit_budget import INTERMEDIATE, EditBudget
from slackbot.feedback import FeedbackTag, buttons_block, with_buttons
from slackbot.slack_calls import is_transient, post_with_backoff, retry_after_seconds
from slackbot.sources import Sources
from slackbot.stream_budget import TeamStreams
from slackbot.stream_events import (
    Citation,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ThinkingEnded,
    ThinkingStarted,
    ToolCall,
    ToolResult,
)
from slackbot.update_reply import UpdateReply

log = logging.getLogger(__name__)

#: Seconds between appends of one stream: a few a second at most.
APPEND_INTERVAL = 0.3
#: Bytes of one streamed message (its text and its task cards' JSON) before it is finished and
#: the reply continues in a new one; Slack refuses from about 10.6 KB.
BYTE_BUDGET = 9_000
#: Thinking steps per streamed message (Slack shows about 48 before refusing more).
TASK_BUDGET = 40
#: Answers to `chat.stopStream` that are harmless: the text is already visible.
HARMLESS_STOP_ERRORS = frozenset({"user_not_found", "team_not_found"})
#: The stream is over at Slack's end (expired, or already stopped).
ENDED = "message_not_in_streaming_state"
#: A thinking step's details: at most this many words of the model's thinking summary.
DETAIL_WORDS = 30
#: At most this many sources per thinking step.
MAX_SOURCES = 8


def _bytes(text: str) -> int:
    return len(text.encode())


def _cut_fitting(text: str, budget: int) -> int:
    """How many characters of `text` to send in `budget` bytes: the most that fit, backed off
    to a paragraph or line end, or a space, when one is near."""
    fit = len(text.encode()[:budget].decode(errors="ignore"))
    if fit >= len(text):
        return len(text)
    head = text[:fit]
    for mark in ("\n\n", "\n", " "):
        at = head.rfind(mark)
        if at >= fit // 2:
            return at + len(mark)
    return fit


class NativeReply:
    """One reply streamed natively into a thread (`thread_ts` is required)."""

    def __init__(
        self,
        client: AsyncWebClient,
        streams: TeamStreams,
        edit_budget: EditBudget,
        *,
        channel: str,
        thread_ts: str,
        recipient_user_id: str,
        recipient_team_id: str,
        update_interval: float,
        ends_session: Callable[[], bool] = lambda: False,
        stop_button: dict[str, Any] | None = None,
        interval: float = APPEND_INTERVAL,
        byte_budget: int = BYTE_BUDGET,
    ) -> None:
        self._client = client
        self._streams = streams
        self._edit_budget = edit_budget
        self.channel = channel
        self.thread_ts = thread_ts
        self._recipient = (recipient_user_id, recipient_team_id)
        self._update_interval = update_interval
        self._ends_session = ends_session
        self._stop_button = stop_button
        self._interval = interval
        self._byte_budget = byte_budget
        self._sources = Sources()
        self._text = ""
        #: Native messages already finished, first to last.
        self._sealed: list[str] = []
        #: The stream open now.
        self._ts: str | None = None
        #: Where the current (or next) message's part of the text starts, and how far of it
        #: the stream has been sent.
        self._msg_start = 0
        self._sent = 0
        #: What the current message shows so far (for a take-over by chat.update).
        self._shown = ""
        #: A code fence to reopen at the top of the next message.
        self._carry = ""
        self._msg_bytes = 0
        self._msg_tasks = 0
        #: Thinking steps changed since the last call, by id (the latest state wins).
        self._tasks: dict[str, dict[str, Any]] = {}
        self._open_tasks: dict[str, dict[str, Any]] = {}
        self._titles: dict[str, str] = {}
        self._thinking: list[str] = []
        self._thinking_n = 0
        self._last_web_task: str | None = None
        self._cited: dict[str, list[dict[str, str]]] = {}
        #: The rest of the reply as a `chat.update` reply, once Slack's streaming gave out.
        self._delegate: UpdateReply | None = None
        self._delegate_carry = 0
        self._dirty = asyncio.Event()
        self._last_call = 0.0
        self._in_flight: asyncio.Future[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        #: The reply's end set the agent session back to `active` (stopStream's session_status).
        self.session_ended = False
        #: When `start` was called, and when the answer's first text reached Slack (monotonic
        #: clock): the metrics' time to first visible text and reply duration.
        self.started_at: float | None = None
        self.first_text_at: float | None = None
        self._shows = 0  # starts and appends that reached Slack (see `shows`)
        #: The 👍/👎 buttons for the reply's last message (given to `finish`).
        self._feedback: FeedbackTag | None = None

    # -- the Reply interface --------------------------------------------------------------

    @property
    def text(self) -> str:
        if self._delegate is not None:
            return self._text[: self._msg_start] + self._delegate.text[self._delegate_carry :]
        return self._text

    @property
    def shows(self) -> int:
        """Starts and appends that reached Slack, and the edits of a `chat.update` taking over."""
        return self._shows + (self._delegate.shows if self._delegate is not None else 0)

    @property
    def message_ts(self) -> list[str]:
        if self._delegate is not None:
            return [*self._sealed, *self._delegate.message_ts]
        return [*self._sealed, *([self._ts] if self._ts else [])]

    def final_text(self) -> str:
        footer = self._sources.footer()
        return f"{self.text.rstrip()}\n\n{footer}" if footer else self.text

    async def start(self, placeholder: str) -> str:
        """Nothing to post yet (the session status shows the bot is on it): the stream starts
        with the first content. Returns "" — there is no message until then."""
        self.started_at = time.monotonic()
        self._loop_task = asyncio.create_task(self._stream_loop(), name="native-reply")
        return ""

    def take(self, event: StreamEvent) -> None:
        if self._delegate is not None:
            self._delegate.take(event)
            return
        if isinstance(event, TextDelta):
            if event.text:
                self._text += event.text
                self._dirty.set()
        elif isinstance(event, Citation):
            self._text += self._sources.markers(event.locations)
            self._cite(event.locations)
            self._dirty.set()
        elif isinstance(event, ThinkingStarted):
            self._thinking_n += 1
            self._thinking = []
            self._task(f"thinking-{self._thinking_n}", messages.TASK_THINKING, "in_progress")
        elif isinstance(event, ThinkingDelta):
            self._thinking.append(event.text)
        elif isinstance(event, ThinkingEnded):
            details = " ".join("".join(self._thinking).split()[:DETAIL_WORDS])
            self._task(
                f"thinking-{self._thinking_n}",
                messages.TASK_THINKING,
                "complete",
                details=details or None,
            )
        elif isinstance(event, ToolCall):
            if event.id:
                title = messages.tool_task_title(event.name, event.input)
                self._task(event.id, title, "in_progress")
                if event.name in ("web_search", "web_fetch"):
                    self._last_web_task = event.id
        elif isinstance(event, ToolResult):
            task = self._open_tasks.get(event.tool_use_id)
            if task is not None:
                failed = isinstance(event.content, dict) and str(
                    event.content.get("type", "")
                ).endswith("_error")
                self._task(task["id"], task["title"], "error" if failed else "complete")

    async def finish(
        self, note: str | None = None, *, feedback: FeedbackTag | None = None
    ) -> list[str]:
        """The rest of the text, its sources and `note`, with `chat.stopStream` (or posted, if
        no stream is open); with `feedback`, the last message carries the 👍/👎 buttons."""
        self._feedback = feedback
        await self._quiesce()
        if self._delegate is None:
            for task in list(self._open_tasks.values()):
                self._task(task["id"], task["title"], "complete", wake=False)
            if self._ts is None:
                await self._post_rest(self._carry + self._with_note(self._text[self._sent :], note))
            else:
                await self._stop_with(note)
        if self._delegate is not None:  # given to chat.update before or during the end
            await self._delegate.finish(note, feedback=feedback)
        return self.message_ts

    def _saw_text(self, text: str) -> None:
        if text.strip() and self.first_text_at is None:
            self.first_text_at = time.monotonic()

    def _with_note(self, rest: str, note: str | None) -> str:
        footer = self._sources.footer()
        if footer:
            rest = f"{rest.rstrip()}\n\n{footer}"
        if note:
            rest = f"{rest.rstrip()}\n\n{note}" if (self._shown + rest).strip() else note
        return rest

    async def stop(self, *, feedback: FeedbackTag | None = None) -> list[str]:
        return await self.finish(messages.STOPPED, feedback=feedback)

    # -- what the stream shows ------------------------------------------------------------

    def _task(
        self,
        task_id: str,
        title: str,
        status: str,
        *,
        details: str | None = None,
        wake: bool = True,
    ) -> None:
        chunk: dict[str, Any] = {
            "type": "task_update",
            "id": task_id,
            "title": title[:200],
            "status": status,
        }
        if details:
            chunk["details"] = details
        sources = self._cited.get(task_id)
        if sources:
            chunk["sources"] = sources[:MAX_SOURCES]
        self._tasks[task_id] = chunk
        self._titles[task_id] = chunk["title"]
        if status == "in_progress":
            self._open_tasks[task_id] = chunk
        else:
            self._open_tasks.pop(task_id, None)
        if wake:
            self._dirty.set()

    def _cite(self, locations: tuple[dict[str, Any], ...]) -> None:
        """The URLs the answer cites become the sources of the web step that found them."""
        task_id = self._last_web_task
        if task_id is None:
            return
        sources = self._cited.setdefault(task_id, [])
        known = {s["url"] for s in sources}
        for location in locations:
            url = location.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                continue
            if url not in known:
                known.add(url)
                sources.append(
                    {"type": "url", "url": url, "text": str(location.get("title") or url)}
                )
        title = self._titles.get(task_id, messages.TASK_THINKING)
        status = "in_progress" if task_id in self._open_tasks else "complete"
        self._task(task_id, title, status)

    # -- streaming ------------------------------------------------------------------------

    async def _stream_loop(self) -> None:
        while self._delegate is None:
            await self._dirty.wait()
            granted: float | None = None
            if self._ts is not None:  # the first content goes out at once
                wait = self._last_call + self._interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                # Waited for here, not in the step: the finish cancels this wait, but lets a
                # step that is under way complete.
                granted = await self._streams.appends.acquire(INTERMEDIATE, self._last_call)
            self._dirty.clear()
            self._in_flight = asyncio.ensure_future(self._step(granted))
            try:
                await asyncio.shield(self._in_flight)
            except Exception as exc:  # the next step (or the finish) tries again
                log.warning("native stream step failed: %r", exc)
            self._in_flight = None
            self._last_call = time.monotonic()

    async def _quiesce(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])

    def _chunks(self, text: str, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = list(tasks)
        if text:
            chunks.append({"type": "markdown_text", "text": text})
        return chunks

    def _task_bytes(self, tasks: list[dict[str, Any]]) -> int:
        return sum(_bytes(json.dumps(task)) for task in tasks)

    async def _step(self, granted: float | None) -> None:
        end = len(self._text)
        tail = self._text[self._sent : end]
        tasks = list(self._tasks.values())
        if not tail and not tasks:
            return
        if self._ts is None:
            await self._open_stream(end, tail, tasks)
            return
        room = self._byte_budget - self._msg_bytes - self._task_bytes(tasks)
        if _bytes(tail) > room or self._msg_tasks + len(tasks) > TASK_BUDGET:
            await self._seal(end, tail, tasks, room)
            return
        await self._append(end, tail, tasks, granted)

    async def _open_stream(self, end: int, tail: str, tasks: list[dict[str, Any]]) -> None:
        """The first content of a message: a new stream if the workspace has room for one
        (its start and its stop), else the rest of the reply goes out through chat.update."""
        text = self._carry + tail
        room = self._byte_budget - self._task_bytes(tasks)
        if _bytes(text) > room:  # a burst bigger than one message: its start goes first
            cut = _cut_fitting(tail, max(room - _bytes(self._carry), 0))
            end, tail = self._sent + cut, tail[:cut]
            text = self._carry + tail
            self._dirty.set()
        if not self._streams.native_allowed or not self._streams.starts.reserve():
            await self._hand_over(None)
            return
        try:
            response = await self._client.chat_startStream(
                channel=self.channel,
                thread_ts=self.thread_ts,
                recipient_user_id=self._recipient[0],
                recipient_team_id=self._recipient[1],
                chunks=self._chunks(text, tasks),
            )
        except Exception as exc:
            self._streams.starts.release()
            self._start_refused(exc)
            await self._hand_over(None)
            return
        self._ts = str(response["ts"])
        self._shows += 1
        self._saw_text(tail)
        self._msg_bytes = _bytes(text) + self._task_bytes(tasks)
        self._msg_tasks = len(tasks)
        self._shown = text
        self._carry = ""
        self._sent = end
        self._sent_tasks(tasks)

    def _start_refused(self, exc: BaseException) -> None:
        if isinstance(exc, SlackApiError):
            error = str(exc.response.get("error") or "")
            pause = retry_after_seconds(exc)
            if pause is not None:
                self._streams.starts.hold(pause)
                log.info("chat.startStream rate-limited: this reply uses chat.update")
                return
            if not is_transient(exc):
                self._streams.refuse(error)
                return
        log.warning("chat.startStream failed (%r): this reply uses chat.update", exc)

    def _sent_tasks(self, tasks: list[dict[str, Any]]) -> None:
        for task in tasks:
            if self._tasks.get(task["id"]) is task:
                del self._tasks[task["id"]]

    async def _append(
        self, end: int, tail: str, tasks: list[dict[str, Any]], granted: float | None
    ) -> None:
        if granted is None:  # a stream opened since the loop last waited
            granted = await self._streams.appends.acquire(INTERMEDIATE, self._last_call)
        assert self._ts is not None
        try:
            await self._client.chat_appendStream(
                channel=self.channel, ts=self._ts, chunks=self._chunks(tail, tasks)
            )
        except SlackApiError as exc:
            pause = retry_after_seconds(exc)
            if pause is not None:  # kept in the buffer: the next append carries it
                self._streams.appends.hold(pause, sent_at=granted)
                self._dirty.set()
                return
            error = exc.response.get("error")
            if error == "msg_too_long":  # Slack's limit came before our budget's
                self._dirty.set()
                await self._seal(end, tail, tasks, 0)
                return
            log.info("chat.appendStream refused (%s): continuing with chat.update", error)
            self._streams.starts.release()
            await self._hand_over(self._ts)
            return
        self._shows += 1
        self._saw_text(tail)
        self._msg_bytes += _bytes(tail) + self._task_bytes(tasks)
        self._msg_tasks += len(tasks)
        self._shown += tail
        self._sent = end
        self._sent_tasks(tasks)

    async def _seal(self, end: int, tail: str, tasks: list[dict[str, Any]], room: int) -> None:
        """This message is full: finish it with what still fits (a code block left open is
        closed, and reopened at the top of the next message), and continue in a new one."""
        cut = _cut_fitting(tail, max(room, 0)) if room > 0 else 0
        head = tail[:cut]
        shown = self._shown + head
        fence = message_split.open_fence(shown)
        closing = ""
        if fence is not None:
            closing = ("" if shown.endswith("\n") else "\n") + fence[1]
            self._carry = fence[0] + "\n"
        fits = room - _bytes(head) - _bytes(closing) >= 0
        send_tasks = tasks if fits and self._msg_tasks + len(tasks) <= TASK_BUDGET else []
        ok = await self._stop_stream(head + closing, send_tasks, session_status=None)
        if not ok:
            return  # handed over to chat.update
        self._sealed.append(self._ts or "")
        self._ts = None
        self._sent_tasks(send_tasks)
        self._sent = self._sent + cut
        self._msg_start = self._sent
        self._shown = ""
        self._msg_bytes = 0
        self._msg_tasks = 0
        self._dirty.set()

    async def _stop_stream(
        self,
        text: str,
        tasks: list[dict[str, Any]],
        *,
        session_status: str | None,
        feedback: FeedbackTag | None = None,
    ) -> bool:
        """`chat.stopStream` with the message's last content (and the feedback buttons as its
        blocks); False if Slack had already ended the stream (or refused the stop), and the
        message was handed to chat.update."""
        assert self._ts is not None
        ts = self._ts
        blocks = [buttons_block(feedback)] if feedback is not None else None
        try:
            await post_with_backoff(
                lambda: self._client.chat_stopStream(
                    channel=self.channel,
                    ts=ts,
                    chunks=self._chunks(text, tasks) or None,
                    blocks=blocks,
                    session_status=session_status,
                ),
                what="chat.stopStream",
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in HARMLESS_STOP_ERRORS:
                log.debug("chat.stopStream answered %s (a Slack Connect recipient)", error)
                self._streams.starts.stopped()
                self._shown += text
                return True
            pause = retry_after_seconds(exc)
            if pause is not None:
                self._streams.starts.hold(pause)
            log.info("chat.stopStream refused (%s): finishing with chat.update", error)
            self._streams.starts.release()
            await self._hand_over(ts)
            return False
        except Exception as exc:
            log.warning("chat.stopStream failed (%r): finishing with chat.update", exc)
            self._streams.starts.release()
            await self._hand_over(ts)
            return False
        self._streams.starts.stopped()
        self._shown += text
        self._saw_text(text)
        if session_status is not None:
            self.session_ended = True
        return True

    async def _stop_with(self, note: str | None) -> None:
        """The end of the reply: the rest of the text, its sources and its note go out with
        `chat.stopStream`, which sets the session `active`; what no longer fits in this
        message is posted after it. If Slack refuses the stop, the message is handed to
        chat.update (`_delegate`), which the caller finishes."""
        rest = self._with_note(self._text[self._sent :], note)
        tasks = list(self._tasks.values())
        room = self._byte_budget - self._msg_bytes - self._task_bytes(tasks)
        status = "active" if self._ends_session() else None
        if _bytes(rest) <= room:
            stopped = await self._stop_stream(
                rest, tasks, session_status=status, feedback=self._feedback
            )
            if stopped:
                self._sent_tasks(tasks)
            return
        cut = _cut_fitting(rest, max(room - 8, 0))
        head, remainder = rest[:cut], rest[cut:]
        shown = self._shown + head
        fence = message_split.open_fence(shown)
        carry = ""
        if fence is not None:
            head += ("" if shown.endswith("\n") else "\n") + fence[1]
            carry = fence[0] + "\n"
        if not await self._stop_stream(head, tasks, session_status=status):
            return
        self._sealed.append(self._ts or "")
        self._ts = None
        await self._post_rest(carry + remainder)

    async def _post_rest(self, content: str) -> None:
        """Post the end of the reply as ordinary messages (nothing left to stream), the
        feedback buttons under the last."""
        pieces = message_split.split(content) if content.strip() else []
        if not pieces and not self._sealed:
            pieces = [messages.EMPTY_REPLY]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            tag = self._feedback if last else None
            response = await post_with_backoff(self._poster(piece, tag), what="chat.postMessage")
            self._sealed.append(str(response["ts"]))
            self._saw_text(piece)

    def _poster(self, body: str, tag: FeedbackTag | None) -> Callable[[], Awaitable[Any]]:
        content = with_buttons(body, tag) if tag is not None else {"markdown_text": body}
        return lambda: self._client.chat_postMessage(
            channel=self.channel, thread_ts=self.thread_ts, **content
        )

    async def _hand_over(self, ts: str | None) -> None:
        """Slack's streaming gave out: the rest of the reply is a `chat.update` reply — in
        message `ts` (a stream Slack ended; `chat.update` works on it again), or in a new
        message posted now."""
        sealed_ts = ts
        interval = self._update_interval
        if sealed_ts is not None:
            self._ts = None
            self._delegate_carry = 0
            shown = self._shown
            # What the message shows, plus everything not yet sent: the take-over's first edit.
            text = shown + self._text[self._sent :]
            self._delegate_carry = len(shown) - (self._sent - self._msg_start)
            self._delegate = UpdateReply.taking_over(
                self._client,
                self._edit_budget,
                channel=self.channel,
                thread_ts=self.thread_ts,
                ts=sealed_ts,
                text=text,
                interval=interval,
                sources=self._sources,
                stop_button=self._stop_button,
            )
            return
        text = self._carry + self._text[self._sent :]
        self._delegate_carry = len(self._carry)
        self._msg_start = self._sent
        delegate = UpdateReply(
            self._client,
            self._edit_budget,
            channel=self.channel,
            thread_ts=self.thread_ts,
            interval=interval,
            stop_button=self._stop_button,
            sources=self._sources,
        )
        self._delegate = delegate
        await delegate.show_from(text)
        self._saw_text(text)
