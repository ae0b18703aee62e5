"""The order of one turn: dedupe, placeholder, sync, store, history, stream, final text.

This is the only module that touches the store, Slack and Claude together. Whatever fails, the
placeholder is always replaced by an answer or by a readable error, and the reply is stored
before its final edit goes out, so a quick follow-up always sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from slackbot import context_window, message_split, messages
from slackbot.attachments import Attachments
from slackbot.claude import Claude, StreamResult
from slackbot.config import Settings
from slackbot.context_window import Fitted
from slackbot.edit_budget import EditBudgets
from slackbot.events import Incoming
from slackbot.model_lookup import ModelLimits
from slackbot.people import People
from slackbot.reply import LiveReply, call_with_retry
from slackbot.sequencer import Sequencer
from slackbot.store import Store, Turn, UsageRecord, WindowState
from slackbot.thread_sync import sync_thread
from slackbot.user_turn import UserTurn, read_message

log = logging.getLogger(__name__)

#: How often a streaming reply's text is saved, so a crash can close it with what was shown.
CHECKPOINT_SECONDS = 2.0


@dataclass(frozen=True)
class _Prepared:
    """A turn ready for Claude, and what is recorded about it afterwards."""

    fitted: Fitted
    ratio: float
    state: WindowState
    notes: list[str]
    estimates: dict[int, int]


@dataclass
class Conversations:
    settings: Settings
    client: AsyncWebClient
    store: Store
    claude: Claude
    people: People
    attachments: Attachments
    budgets: EditBudgets
    bot_user_id: str | None = None
    #: What the model accepts: the fallback until start-up asks the Models API (`use_model`).
    limits: ModelLimits | None = None
    sequencer: Sequencer = field(default_factory=Sequencer)
    #: Messages taken through `handle` so far (answered, duplicate or failed): for monitoring.
    handled: int = 0
    _running: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.limits is None:
            self.use_model(ModelLimits(model=self.claude.model))

    def use_model(self, limits: ModelLimits) -> None:
        """Talk to `limits.model` from now on, with `max_tokens` within what it accepts."""
        max_tokens = limits.output_tokens(self.settings.claude_max_tokens)
        if max_tokens < self.settings.claude_max_tokens:
            log.warning(
                "CLAUDE_MAX_TOKENS=%d is more than %s allows here: using %d",
                self.settings.claude_max_tokens,
                limits.model,
                max_tokens,
            )
        self.limits = limits
        self.claude = dataclasses.replace(self.claude, model=limits.model, max_tokens=max_tokens)

    @property
    def model_limits(self) -> ModelLimits:
        assert self.limits is not None  # set in __post_init__
        return self.limits

    def start(self, msg: Incoming) -> asyncio.Task[None]:
        """Answer `msg` in a task the bot holds on to until it is done.

        asyncio keeps only weak references to tasks, and Bolt does not keep the task it runs a
        listener in: a turn waiting on its own helpers could be garbage-collected mid-reply.
        """
        task = asyncio.create_task(self.handle(msg), name=f"answer {msg.channel}/{msg.ts}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def drain(self, timeout: float) -> int:
        """Let the replies in flight finish (on shutdown); returns how many were still running."""
        running = list(self._running)
        if running:
            await asyncio.wait(running, timeout=timeout)
        return sum(1 for task in running if not task.done())

    async def handle(self, msg: Incoming) -> None:
        """Answer one message; never raises (errors end up in the thread and the log)."""
        ticket = self.sequencer.enter(msg.sequence_key)
        try:
            if msg.is_reset:
                await self._reset(msg)
                return
            conversation_id = await self.store.claim_conversation(
                msg.event_id,
                msg.channel,
                msg.ts,
                team=msg.team,
                thread_root=msg.thread_root,
                idle_seconds=self.settings.dm_idle_hours * 3600,
            )
            if conversation_id is None:
                log.info("duplicate delivery of %s/%s ignored", msg.channel, msg.ts)
                return
            await self._answer(msg, conversation_id, queued=ticket.must_wait, wait_turn=ticket.wait)
        except Exception:
            log.exception("could not answer %s/%s", msg.channel, msg.ts)
        finally:
            ticket.release()
            self.handled += 1

    async def _reset(self, msg: Incoming) -> None:
        """`reset` in a DM: the next top-level message starts a fresh conversation."""
        if await self.store.claim_event(msg.event_id, msg.channel, msg.ts):
            await self.store.reset_dm(msg.team, msg.channel)
            await self._post(msg.channel, None, messages.RESET_DONE)

    async def _answer(
        self, msg: Incoming, conversation_id: int, *, queued: bool, wait_turn: Any
    ) -> None:
        # The message's own content (speaker's name, images) does not depend on the store or on
        # earlier turns: fetch it while the placeholder goes out.
        reading = asyncio.create_task(
            read_message(
                msg.message,
                people=self.people,
                attachments=self.attachments,
                bot_user_id=self.bot_user_id,
            )
        )
        try:
            await self._answer_with(msg, conversation_id, reading, queued, wait_turn)
        finally:
            reading.cancel()  # not needed if the turn failed early; collect it either way
            await asyncio.gather(reading, return_exceptions=True)

    async def _answer_with(
        self,
        msg: Incoming,
        conversation_id: int,
        reading: asyncio.Task[UserTurn],
        queued: bool,
        wait_turn: Any,
    ) -> None:
        # The placeholder goes out at once and the history is prepared meanwhile; Claude is
        # called once both are done, so the placeholder always comes first.
        placeholder = messages.QUEUED if queued else messages.PLACEHOLDER
        posting = asyncio.ensure_future(self._post(msg.channel, msg.thread_root, placeholder))
        prepared: _Prepared | None = None
        try:
            await wait_turn()
            prepared = await self._prepare(msg, conversation_id, reading)
        except Exception:
            log.exception("turn failed before Claude answered")
        first_ts = await posting  # if Slack refuses even this, there is nowhere to answer
        # Stored the moment the placeholder exists (a crash from here on leaves a reply to
        # close at the next start), but not waited for before the stream starts.
        begin = asyncio.ensure_future(
            self.store.begin_reply(
                conversation_id, answers_ts=msg.ts, channel=msg.channel, first_ts=first_ts
            )
        )
        live = LiveReply(
            self.client,
            self.budgets.for_team(msg.team),
            channel=msg.channel,
            thread_ts=msg.thread_root,
            first_ts=first_ts,
            interval=self.settings.edit_interval,
        )
        note: str | None = messages.incomplete(messages.INTERNAL)
        result, notice = StreamResult(), False
        if prepared is not None:
            result = await self._stream(live, begin, prepared.fitted.messages())
            notice = prepared.fitted.omitted and not prepared.state.trim_noticed
            note = self._note_for(result, prepared.notes, context_trimmed=notice)
        try:
            reply_id = await begin
        except Exception:  # the store failed: the placeholder still gets replaced
            log.exception("could not store the reply to %s/%s", msg.channel, msg.ts)
            await live.finish(note)
            return
        await self._close(live, reply_id, result, note)
        if prepared is None:
            return
        try:
            await self.store.save_token_estimates(prepared.estimates)
            await self._account(msg, conversation_id, reply_id, prepared, result, notice)
        except Exception:
            log.exception("could not record usage of reply %s", reply_id)

    async def _prepare(
        self, msg: Incoming, conversation_id: int, reading: asyncio.Task[UserTurn]
    ) -> _Prepared:
        """Everything Claude is sent: the thread synced and stored, then fitted to the window."""
        turns, state, notes = await self._store_turns(msg, conversation_id, reading)
        turns, estimates = await context_window.with_estimates(turns)
        fitted, ratio = await context_window.fit_to_window(
            self.claude, self.model_limits, turns, state
        )
        return _Prepared(fitted, ratio, state, notes, estimates)

    async def _account(
        self,
        msg: Incoming,
        conversation_id: int,
        reply_id: int,
        prepared: _Prepared,
        result: StreamResult,
        notice: bool,
    ) -> None:
        """Store the reply's usage, the cut and the calibration learnt from the API's count."""
        fitted, ratio = prepared.fitted, prepared.ratio
        if result.prompt_tokens:
            ratio = context_window.calibration(result.prompt_tokens, fitted.raw_tokens)
        await self.store.save_window_state(
            conversation_id,
            kept_from_id=fitted.trim.kept_from_id,
            images_from_id=fitted.trim.images_from_id,
            token_ratio=ratio,
            trim_noticed=notice,
        )
        await self.store.record_usage(
            UsageRecord(
                message_id=reply_id,
                conversation_id=conversation_id,
                team=msg.team,
                channel=msg.channel,
                user_id=msg.user,
                model=result.model,
                line=self.model_limits.line,
                input_tokens=result.usage.get("input_tokens", 0),
                output_tokens=result.usage.get("output_tokens", 0),
                cache_creation_input_tokens=result.usage.get("cache_creation_input_tokens", 0),
                cache_read_input_tokens=result.usage.get("cache_read_input_tokens", 0),
                stop_reason=result.stop_reason,
                error=type(result.error).__name__ if result.error is not None else None,
                seconds=round(result.seconds, 3),
                first_token_seconds=(
                    round(result.first_token_seconds, 3)
                    if result.first_token_seconds is not None
                    else None
                ),
            )
        )

    async def _store_turns(
        self, msg: Incoming, conversation_id: int, reading: asyncio.Task[UserTurn]
    ) -> tuple[list[Turn], WindowState, list[str]]:
        """Sync the thread (best-effort), store the message being answered, and load the
        history up to it with the conversation's budget state."""
        if msg.thread_ts is not None:
            await sync_thread(
                client=self.client,
                store=self.store,
                people=self.people,
                attachments=self.attachments,
                conversation_id=conversation_id,
                channel=msg.channel,
                thread_ts=msg.thread_ts,
                up_to_ts=msg.ts,
                bot_user_id=self.bot_user_id,
            )
        turn = await reading
        turns, state = await self.store.add_turn_and_load(conversation_id, **turn.store_fields())
        return turns, state, turn.note_texts

    async def _stream(
        self, live: LiveReply, begin: asyncio.Future[int], history: list[dict[str, Any]]
    ) -> StreamResult:
        live.start()
        checkpoint = asyncio.create_task(self._checkpoint(live, begin))
        try:
            return await self.claude.stream(history, live.append)
        finally:
            checkpoint.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoint

    async def _checkpoint(self, live: LiveReply, begin: asyncio.Future[int]) -> None:
        reply_id = await asyncio.shield(begin)  # cancelling the checkpoint must not cancel it
        saved = ""
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            if live.text != saved:
                saved = live.text
                await self.store.update_reply(
                    reply_id, text=saved, message_ts=live.message_ts, status="streaming"
                )

    @staticmethod
    def _note_for(
        result: StreamResult, file_notes: list[str], *, context_trimmed: bool = False
    ) -> str | None:
        lines = [f"_{note}_" for note in file_notes]
        if context_trimmed:
            lines.append(messages.CONTEXT_TRIMMED)
        if result.error is not None:
            lines.append(messages.incomplete(messages.claude_failure(result.error)))
        elif result.stop_reason == "max_tokens":
            lines.append(messages.MAX_TOKENS_NOTE)
        elif result.stop_reason == "refusal":
            lines.append(messages.REFUSAL_NOTE)
        elif not result.text.strip():
            lines.append(messages.EMPTY_REPLY)
        return "\n".join(lines) or None

    async def _close(
        self, live: LiveReply, reply_id: int, result: StreamResult, note: str | None
    ) -> None:
        """Store the reply, then put its final text in Slack (in that order)."""
        status = "done" if result.error is None else "incomplete"
        await self.store.update_reply(
            reply_id,
            text=live.text,
            message_ts=live.message_ts,
            status=status,
            stop_reason=result.stop_reason,
        )
        try:
            message_ts = await live.finish(note)
        except Exception:
            log.exception("final edit failed for reply %s", reply_id)
            return
        if len(message_ts) > 1:
            await self.store.update_reply(
                reply_id, text=live.text, message_ts=message_ts, status=status
            )

    async def _post(self, channel: str, thread_ts: str | None, body: str) -> str:
        response = await call_with_retry(
            lambda: self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, markdown_text=body
            ),
            what="post",
        )
        return str(response["ts"])

    async def recover(self) -> int:
        """Close replies that a crash left unfinished, so none says "Thinking…" forever."""
        closed = 0
        for reply in await self.store.unfinished_replies():
            note = messages.incomplete(messages.INTERRUPTED)
            content = f"{reply.text.rstrip()}\n\n{note}" if reply.text.strip() else note
            pieces = message_split.split(content)
            try:
                for ts, piece in zip(reply.message_ts, pieces, strict=False):
                    edit = functools.partial(
                        self.client.chat_update, channel=reply.channel, ts=ts, markdown_text=piece
                    )
                    await call_with_retry(edit, what="recovery edit")
            except Exception:
                log.exception("could not close interrupted reply %s", reply.id)
            await self.store.update_reply(
                reply.id, text=reply.text, message_ts=reply.message_ts, status="incomplete"
            )
            closed += 1
        if closed:
            log.info("closed %d reply(ies) left unfinished by a restart", closed)
        return closed
