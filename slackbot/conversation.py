"""The order of one turn: access and limits, claim, placeholder, sync, store, history, stream,
final text.

This is the only module that touches the store, Slack and Claude together. Whatever fails, the
placeholder is always replaced by an answer or by a readable note, and the reply is stored
before its final edit goes out, so a quick follow-up always sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from slackbot import accounting, context_window, messages, recovery
from slackbot.access import Access, Where
from slackbot.attachments import Attachments
from slackbot.channels import Channels
from slackbot.claude import Claude, request_messages
from slackbot.code_files import CodeFiles
from slackbot.config import Settings
from slackbot.context_window import Fitted
from slackbot.dedup import RecentDeliveries
from slackbot.events import Incoming, Revision
from slackbot.feedback import FeedbackTag
from slackbot.history import without_refused
from slackbot.metrics import Metrics
from slackbot.model_lookup import ModelLimits
from slackbot.people import People
from slackbot.quotas import Quotas
from slackbot.reply import Replies, Reply
from slackbot.request_context import context_for
from slackbot.request_options import request_options
from slackbot.sequencer import Sequencer, Ticket
from slackbot.session_status import SessionStatus
from slackbot.slack_calls import post_with_backoff
from slackbot.slack_text import to_plain_text
from slackbot.stopping import Stops, StopSignal
from slackbot.store import Store, Turn, WindowState
from slackbot.stream_events import StreamResult
from slackbot.tasks import TaskKeeper
from slackbot.thread_sync import sync_thread
from slackbot.user_turn import UserTurn, edited_text, read_message

log = logging.getLogger(__name__)

#: How soon after new content reaches Slack the streaming text is stored, so a crash can close
#: the reply with what was shown; after a failed save, the next waits this much longer.
CHECKPOINT_SECONDS = 0.25
CHECKPOINT_RETRY_SECONDS = 2.0
#: How long Slack's delivery waits for the store to record a message (Slack retries after 3 s).
ACK_WAIT_SECONDS = 2.0
#: Messages acknowledged before a restart are answered after it if they are at most this old.
PENDING_MAX_AGE_SECONDS = 24 * 3600
#: A `pause_turn` is continued at most this many times; then the reply ends with a note.
MAX_CONTINUATIONS = 5
#: How long the final store write of a reply is retried (the reply is in Slack already).
FINAL_STORE_SECONDS = 60.0


@dataclass(frozen=True)
class _Prepared:
    """A turn ready for Claude, and what is recorded about it afterwards."""

    fitted: Fitted
    ratio: float
    state: WindowState
    notes: list[str]
    estimates: dict[int, int]
    #: This mention's context (date, place, asker): sent last, never stored.
    context: str
    #: The Claude client for this channel (its extra instructions in the system prompt).
    claude: Claude


@dataclass(frozen=True)
class Refused:
    """A message the bot won't answer (access rules, a spend limit): `text` goes to the asker
    alone; nothing but the processed-event record is stored."""

    text: str


@dataclass
class Conversations:
    settings: Settings
    client: AsyncWebClient
    store: Store
    claude: Claude
    people: People
    channels: Channels
    attachments: Attachments
    replies: Replies
    #: Uploads the files code execution makes (None: such files are not brought over).
    code_files: CodeFiles | None = None
    bot_user_id: str | None = None
    #: What the model accepts: the fallback until start-up asks the Models API (`use_model`).
    limits: ModelLimits | None = None
    sequencer: Sequencer = field(default_factory=Sequencer)
    tasks: TaskKeeper = field(default_factory=TaskKeeper)
    recent: RecentDeliveries = field(default_factory=RecentDeliveries)
    #: Messages taken through `handle` so far (answered, duplicate or failed): for monitoring.
    handled: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    #: The thread's status while a turn runs (agent session or fallback); None sets none.
    status: SessionStatus | None = None
    #: The turns a Stop (Slack's, or the button) can reach now.
    stops: Stops = field(default_factory=Stops)
    #: Who may use the bot, and the spend limits: checked before a message is stored.
    access: Access = field(init=False)
    quotas: Quotas = field(init=False)

    def __post_init__(self) -> None:
        # SLACKBOT_ADMINS may stop anyone's reply with its Stop button.
        self.stops.is_admin = lambda team, user: self.settings.is_admin(user)
        self.access = Access(self.settings, self.people)
        self.quotas = Quotas(self.settings, self.store)
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
        self.claude = dataclasses.replace(
            self.claude,
            model=limits.model,
            max_tokens=max_tokens,
            options=request_options(self.settings, limits),
        )

    @property
    def model_limits(self) -> ModelLimits:
        assert self.limits is not None  # set in __post_init__
        return self.limits

    async def admit(self, msg: Incoming) -> None:
        """Take a message for the bot before Slack's delivery is acknowledged.

        Its place in the conversation's order is taken at once (arrival order), and its claim
        in the store, which records it to be answered, is waited for up to `ACK_WAIT_SECONDS`:
        a crash right after the acknowledgement leaves it to answer at the next start, and a
        slow store never makes Slack redeliver.
        """
        ticket = self.sequencer.enter(msg.sequence_key)
        claim = asyncio.ensure_future(self._claim(msg))
        self.tasks.start(self.handle(msg, ticket, claim), name=f"answer {msg.channel}/{msg.ts}")
        await asyncio.wait([claim], timeout=ACK_WAIT_SECONDS)

    async def _claim(self, msg: Incoming) -> int | Refused | None:
        """The message's conversation, or None if it was delivered before (0 for `reset`); a
        `Refused` for a person who may not use the bot here or has reached a limit, with only
        the event recorded (so a redelivery is still recognised)."""
        if not self.recent.first_time(msg):
            return None
        refusal = await self._refusal(msg)
        if refusal is not None:
            return (
                refusal if await self.store.claim_event(msg.event_id, msg.channel, msg.ts) else None
            )
        if msg.is_reset or msg.is_reset_hint:
            return 0 if await self.store.claim_event(msg.event_id, msg.channel, msg.ts) else None
        return await self.store.claim_conversation(
            msg.event_id,
            msg.channel,
            msg.ts,
            team=msg.workspace,
            thread_root=msg.thread_root,
            idle_seconds=self.settings.dm_idle_hours * 3600,
            pending=msg.to_json(),
        )

    async def _refusal(self, msg: Incoming) -> Refused | None:
        where = Where(msg.team, msg.enterprise, msg.channel, msg.is_dm)
        reason = await self.access.refusal(msg.user, where, msg.message)
        if reason is not None:
            log.info("refused %s in %s: %s", msg.user, msg.channel, reason)
            return Refused(messages.refused(reason, self.settings.admin_contact))
        if msg.is_reset:
            return None
        over = await self.quotas.over_limit(msg.user, msg.workspace)
        if over is not None:
            log.info("%s in %s is over the %s limit", msg.user, msg.workspace, over.kind)
            now = datetime.now(UTC)
            return Refused(messages.over_limit(over.kind, over.limit, over.resets_at, now))
        return None

    def take_revision(self, revision: Revision) -> None:
        """Follow an edit or deletion after the acknowledgement (held until done on shutdown)."""
        self.tasks.start(self.revise(revision), name=f"revise {revision.channel}/{revision.ts}")

    async def revise(self, revision: Revision) -> None:
        """A person edited or deleted a message: the store follows (nothing is answered)."""
        try:
            if revision.message is None:
                erased = await self.store.erase_user_turn(revision.channel, revision.ts)
                log.info("erased %d turn(s) for a deleted message in %s", erased, revision.channel)
                return
            text = await edited_text(
                revision.message, people=self.people, bot_user_id=self.bot_user_id
            )
            await self.store.edit_user_turn(revision.channel, revision.ts, text)
        except Exception:
            log.exception("could not follow an edit or deletion in %s", revision.channel)

    async def drain(self, timeout: float) -> int:
        """Let the replies in flight finish (on shutdown); returns how many were still running."""
        return await self.tasks.drain(timeout)

    async def recover(self) -> int:
        """At start-up: close replies a crash left unfinished, so none says "Thinking…" forever,
        and answer the messages it had acknowledged but not begun to answer."""
        closed = await recovery.close_unfinished(self.store, self.replies, self.status)
        for pending in await self.store.pending_messages(PENDING_MAX_AGE_SECONDS):
            msg = Incoming.from_json(pending.payload)
            self.recent.first_time(msg)
            await recovery.clear_orphan_placeholders(self.client, msg, self.bot_user_id)
            claimed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
            claimed.set_result(pending.conversation_id)
            ticket = self.sequencer.enter(msg.sequence_key)
            self.tasks.start(self.handle(msg, ticket, claimed), name=f"answer {msg.ts} (again)")
            log.info("answering %s/%s, acknowledged before a restart", msg.channel, msg.ts)
        return closed

    async def handle(
        self, msg: Incoming, ticket: Ticket, claim: Awaitable[int | Refused | None]
    ) -> None:
        """Answer one message; never raises (errors end up in the thread and the log)."""
        try:
            try:
                conversation_id = await claim
            except Exception:
                log.exception("could not record %s/%s", msg.channel, msg.ts)
                await self._say(msg, messages.STORE_FAILED)
                return
            if conversation_id is None:
                log.info("duplicate delivery of %s/%s ignored", msg.channel, msg.ts)
                self.metrics.events_deduplicated.inc()
                return
            if isinstance(conversation_id, Refused):
                await self._whisper(msg, conversation_id.text)
                return
            if msg.is_reset:
                await self._reset(msg)
                return
            if msg.is_reset_hint:
                await self._say(msg, messages.RESET_HINT)
                return
            await self._answer(msg, conversation_id, queued=ticket.must_wait, wait_turn=ticket.wait)
        except Exception:
            log.exception("could not answer %s/%s", msg.channel, msg.ts)
        finally:
            ticket.release()
            self.handled += 1

    async def _say(self, msg: Incoming, text: str) -> None:
        """A short note where the answer would have gone (nothing else could be done); it
        must land like a placeholder, so 5xx answers and network errors are retried too."""
        try:
            await post_with_backoff(
                lambda: self.client.chat_postMessage(
                    channel=msg.channel, thread_ts=msg.thread_root, markdown_text=text
                ),
                what="post",
            )
        except Exception:
            log.exception("could not post a note to %s/%s", msg.channel, msg.ts)

    async def _whisper(self, msg: Incoming, text: str) -> None:
        """A note only the asker sees (`chat.postEphemeral`), in the message's thread."""
        try:
            await self.client.chat_postEphemeral(
                channel=msg.channel, user=msg.user, text=text, thread_ts=msg.thread_ts
            )
        except Exception:
            log.exception("could not tell %s in %s why they were refused", msg.user, msg.channel)

    async def _reset(self, msg: Incoming) -> None:
        """`reset` in a DM: the next top-level message starts a fresh conversation."""
        await self.store.reset_dm(msg.workspace, msg.channel)
        await self._say(msg, messages.RESET_DONE)

    async def _answer(
        self,
        msg: Incoming,
        conversation_id: int,
        *,
        queued: bool,
        wait_turn: Callable[[], Awaitable[None]],
    ) -> None:
        # The message's own content (speaker's name, images) and its context (time zone,
        # channel name) do not depend on the store or on earlier turns: fetch them while the
        # placeholder goes out.
        reading = asyncio.create_task(self._read(msg))
        signal = self.stops.enter(
            team=msg.workspace,
            channel=msg.channel,
            thread_ts=msg.thread_root,
            answers_ts=msg.ts,
            asker=msg.user,
        )
        reply = self.replies.open(msg)
        try:
            await self._answer_with(msg, conversation_id, reply, reading, queued, wait_turn, signal)
        finally:
            self.stops.leave(signal)
            reading.cancel()  # not needed if the turn failed early; collect it either way
            await asyncio.gather(reading, return_exceptions=True)

    async def stop_thread(
        self, workspace: str, channel: str, thread_ts: str, *, relayed: bool = False
    ) -> bool:
        """Slack's Stop on a thread's agent session: stop the reply being written there. A
        Stop for a reply that has finished does nothing (False). With several instances the
        reply may be streaming on another: the Stop is passed on to all (`Store.announce_stop`)
        and the one streaming it stops it (`relayed`: this is such a passed-on Stop)."""
        stopped = self.stops.stop_thread(workspace, channel, thread_ts)
        log.info(
            "Stop for %s/%s: %s", channel, thread_ts, "stopping" if stopped else "nothing running"
        )
        if not stopped and not relayed and self.store.shared:
            await self._pass_on_stop(
                {"kind": "thread", "team": workspace, "channel": channel, "thread_ts": thread_ts}
            )
        return stopped

    async def press_stop(
        self,
        *,
        channel: str,
        answers_ts: str,
        user: str,
        thread_ts: str | None,
        relayed: bool = False,
    ) -> None:
        """A click on a reply's Stop button: the asker (or an admin, `Stops.is_admin`) stops
        it; anyone else is told, privately, that they can't; a finished reply does nothing.
        A reply streaming on another instance gets the click passed on (see `stop_thread`)."""
        allowed = self.stops.stop_button(channel, answers_ts, user)
        if allowed is None and not relayed and self.store.shared:
            await self._pass_on_stop(
                {
                    "kind": "button",
                    "channel": channel,
                    "answers_ts": answers_ts,
                    "user": user,
                    "thread_ts": thread_ts,
                }
            )
            return
        if allowed is not False:
            return
        try:
            await self.client.chat_postEphemeral(
                channel=channel,
                user=user,
                thread_ts=thread_ts,
                text=messages.STOP_NOT_YOURS,
            )
        except Exception as exc:
            log.info("could not tell %s they can't stop this reply: %r", user, exc)

    async def _pass_on_stop(self, stop: dict[str, str | None]) -> None:
        try:
            await self.store.announce_stop(json.dumps(stop))
        except Exception as exc:
            log.warning("could not pass a Stop on to the other instances: %r", exc)

    async def take_relayed_stop(self, payload: str) -> None:
        """A Stop another instance passed on (`Store.stop_requests`): acted on here if the
        reply is streaming here; nothing otherwise."""
        try:
            stop = json.loads(payload)
            if stop.get("kind") == "thread":
                await self.stop_thread(
                    str(stop["team"]), str(stop["channel"]), str(stop["thread_ts"]), relayed=True
                )
            elif stop.get("kind") == "button":
                await self.press_stop(
                    channel=str(stop["channel"]),
                    answers_ts=str(stop["answers_ts"]),
                    user=str(stop["user"]),
                    thread_ts=stop.get("thread_ts"),
                    relayed=True,
                )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignored a malformed Stop from another instance: %r", exc)

    def _session_title(self, msg: Incoming) -> str | None:
        """The session's title, given when it is created: at the thread's first message."""
        if msg.ts != msg.thread_root:
            return None
        plain = to_plain_text(msg.text, names={}, bot_user_id=self.bot_user_id)
        return messages.session_title(plain) or None

    async def _status_begin(self, msg: Incoming) -> None:
        if self.status is None or msg.thread_root is None:
            return
        await self.status.begin(
            team=msg.team,
            channel=msg.channel,
            thread_ts=msg.thread_root,
            title=self._session_title(msg),
            initiator=msg.user,
        )

    async def _status_end(
        self, msg: Incoming, reply: Reply, begun: list[asyncio.Future[None]]
    ) -> None:
        """The turn is over however it ended: the session back to `active`, the fallback
        status cleared (after the start's call, so they land in that order)."""
        if self.status is None or msg.thread_root is None:
            return
        if not begun:
            return  # the turn never got as far as saying it was working
        await asyncio.gather(*begun, return_exceptions=True)
        await self.status.end(
            team=msg.team,
            channel=msg.channel,
            thread_ts=msg.thread_root,
            session_ended=reply.session_ended,
        )

    async def _answer_with(
        self,
        msg: Incoming,
        conversation_id: int,
        reply: Reply,
        reading: asyncio.Task[tuple[UserTurn, str]],
        queued: bool,
        wait_turn: Callable[[], Awaitable[None]],
        signal: StopSignal,
    ) -> None:
        begun: list[asyncio.Future[None]] = []
        try:
            await self._turn(msg, conversation_id, reply, reading, queued, wait_turn, signal, begun)
        finally:
            # Always, errors included: no thread is left saying the bot is working.
            with contextlib.suppress(Exception):
                await self._status_end(msg, reply, begun)

    async def _turn(
        self,
        msg: Incoming,
        conversation_id: int,
        reply: Reply,
        reading: asyncio.Task[tuple[UserTurn, str]],
        queued: bool,
        wait_turn: Callable[[], Awaitable[None]],
        signal: StopSignal,
        begun: list[asyncio.Future[None]],
    ) -> None:
        """The turn from its placeholder to its final text; `begun` gets the status call it
        makes at its start (the end's call waits for it)."""
        # The placeholder goes out at once and the history is prepared meanwhile; Claude is
        # called once both are done, so the placeholder always comes first.
        starting = asyncio.ensure_future(
            reply.start(messages.QUEUED if queued else messages.PLACEHOLDER)
        )
        # Stored the moment the placeholder exists (a crash from here on leaves a reply to
        # close at the next start), but not waited for before the stream starts.
        begin = asyncio.ensure_future(self._begin(msg, conversation_id, starting))
        prepared: _Prepared | None = None
        try:
            await wait_turn()
            await self.store.wait_for_earlier(conversation_id, msg.ts)  # other instances'
            # The thread's status says "working" from the moment this turn's turn comes (the
            # previous reply's end set it back to active).
            begun.append(asyncio.ensure_future(self._status_begin(msg)))
            prepared = await self._prepare(msg, conversation_id, reading)
        except Exception:
            log.exception("turn failed before Claude answered")
        try:
            await starting
        except Exception:  # Slack refused even this: there is nowhere to answer
            log.exception("could not post a placeholder for %s/%s", msg.channel, msg.ts)
            self.metrics.replies.labels("not_posted").inc()
            await asyncio.gather(begin, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.store.forget_pending(msg.channel, msg.ts)
            return
        result = StreamResult(model=self.claude.model)
        note: str | None = messages.incomplete(messages.INTERNAL)
        notice = False
        stopped = signal.stopped
        streamed = False  # the stream was shown to its end (a bug showing it gives no buttons)
        if prepared is not None:
            try:
                stopped = await self._stream(reply, begin, prepared, result, signal)
                notice = prepared.fitted.omitted and not prepared.state.trim_noticed
                note = messages.reply_note(result, prepared.notes, context_trimmed=notice)
                streamed = True
            except Exception:  # a bug showing an event: the reply still ends, with a note
                log.exception("reply to %s/%s broke while streaming", msg.channel, msg.ts)
        if stopped:
            produced = result.produced()
            result.stopped(context_window.estimate_text_tokens(produced) if produced else 0)
            note = None
        try:
            reply_id: int | None = await begin
        except Exception:  # the store failed: the placeholder still gets replaced
            log.exception("could not store the reply to %s/%s", msg.channel, msg.ts)
            reply_id = None
        tag = feedback_for(reply, reply_id, result) if streamed else None
        await self._close(reply, reply_id, result, note, tag, stopped=stopped)
        await self._upload_files(msg, result)
        if prepared is None or reply_id is None:
            return
        try:
            await accounting.account(
                self.store,
                msg,
                conversation_id=conversation_id,
                reply_id=reply_id,
                fitted=prepared.fitted,
                ratio=prepared.ratio,
                estimates=prepared.estimates,
                result=result,
                trim_noticed=notice,
                line=self.model_limits.line,
            )
        except Exception:
            log.exception("could not record usage of reply %s", reply_id)

    async def _upload_files(self, msg: Incoming, result: StreamResult) -> None:
        """Files code execution made go into the thread after the answer (which never waits
        for them); one that can't gets a note."""
        if not result.files or self.code_files is None:
            return
        try:
            notes = await self.code_files.upload(
                result.files, channel=msg.channel, thread_ts=msg.thread_root
            )
        except Exception:
            log.exception("uploading code execution files for %s/%s failed", msg.channel, msg.ts)
            notes = [messages.code_file_failed(None)]
        for note in notes:
            await self._say(msg, note)

    async def _begin(self, msg: Incoming, conversation_id: int, starting: Awaitable[str]) -> int:
        first_ts = await starting
        return await self.store.begin_reply(
            conversation_id, answers_ts=msg.ts, channel=msg.channel, first_ts=first_ts
        )

    async def _read(self, msg: Incoming) -> tuple[UserTurn, str]:
        """The person's message as the store keeps it, and the mention's context."""
        turn, context = await asyncio.gather(
            read_message(
                msg.message,
                people=self.people,
                attachments=self.attachments,
                bot_user_id=self.bot_user_id,
            ),
            context_for(msg, people=self.people, channels=self.channels),
        )
        return turn, context

    async def _prepare(
        self, msg: Incoming, conversation_id: int, reading: asyncio.Task[tuple[UserTurn, str]]
    ) -> _Prepared:
        """Everything Claude is sent: the thread synced and stored, then fitted to the window."""
        turns, state, notes, context = await self._store_turns(msg, conversation_id, reading)
        claude = self.claude.with_channel_prompt(
            await self.store.channel_prompt(msg.workspace, msg.channel)
        )
        turns, estimates = await context_window.with_estimates(turns)
        fitted, ratio = await context_window.fit_to_window(
            claude, self.model_limits, turns, state, extra=context
        )
        return _Prepared(fitted, ratio, state, notes, estimates, context, claude)

    async def _store_turns(
        self, msg: Incoming, conversation_id: int, reading: asyncio.Task[tuple[UserTurn, str]]
    ) -> tuple[list[Turn], WindowState, list[str], str]:
        """Sync the thread (best-effort), store the message being answered, and load the
        history up to it with the conversation's window state."""
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
        turn, context = await reading
        turns, state = await self.store.add_turn_and_load(conversation_id, **turn.store_fields())
        return without_refused(turns), state, turn.note_texts, context

    async def _stream(
        self,
        reply: Reply,
        begin: asyncio.Future[int],
        prepared: _Prepared,
        result: StreamResult,
        signal: StopSignal,
    ) -> bool:
        """Stream the reply until it ends or a person stops it; returns True if stopped.

        A Stop cancels the stream at once: the cancellation closes Claude's HTTP response
        (the SDK's stream context), so the model stops generating and billing.
        """
        if signal.stopped:
            result.close()
            return True
        checkpoint = asyncio.create_task(self._checkpoint(reply, begin))
        streaming = asyncio.ensure_future(self._consume(reply, prepared, result))
        stop = asyncio.ensure_future(signal.event.wait())
        try:
            await asyncio.wait([streaming, stop], return_when=asyncio.FIRST_COMPLETED)
            if not streaming.done():
                streaming.cancel()
                await asyncio.gather(streaming, return_exceptions=True)
                log.info("reply stopped by a person; Claude's stream closed")
                return True
            streaming.result()  # a bug showing an event: raised here, noted by the caller
            return False
        finally:
            stop.cancel()
            streaming.cancel()
            result.close()
            checkpoint.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoint

    async def _consume(self, reply: Reply, prepared: _Prepared, result: StreamResult) -> None:
        """Claude's events into the reply; a `pause_turn` (a long server-tool loop) is
        continued into the same Slack reply, up to `MAX_CONTINUATIONS` times."""
        history = prepared.fitted.messages()
        paused: list[dict[str, Any]] = []
        for _ in range(MAX_CONTINUATIONS + 1):
            request = request_messages(history, context=prepared.context, paused=paused)
            searches = result.web_search_requests
            async for event in prepared.claude.stream(request, searches_used=searches):
                result.take(event)
                reply.take(event)
            if result.error is not None or result.stop_reason != "pause_turn":
                break
            paused = [*paused, *result.content]

    async def _checkpoint(self, reply: Reply, begin: asyncio.Future[int]) -> None:
        """Store the streaming text soon after each time new content reaches Slack, so what a
        crash leaves to close is (all but the last instant of) what people saw; a failed save
        waits a little and tries again (the reply itself never waits for the store). Edits are
        paced and budgeted, so this writes no more often than Slack is edited."""
        reply_id = await asyncio.shield(begin)  # cancelling the checkpoint must not cancel it
        saved, saved_shows = "", 0
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            shows = reply.shows
            if shows == saved_shows:
                continue
            text = reply.text
            if text == saved:
                saved_shows = shows
                continue
            try:
                await self.store.update_reply(
                    reply_id, text=text, message_ts=reply.message_ts, status="streaming"
                )
            except Exception as exc:
                log.warning("checkpoint of reply %s failed: %r", reply_id, exc)
                await asyncio.sleep(CHECKPOINT_RETRY_SECONDS)
            else:
                saved, saved_shows = text, shows

    async def _close(
        self,
        reply: Reply,
        reply_id: int | None,
        result: StreamResult,
        note: str | None,
        feedback: FeedbackTag | None = None,
        *,
        stopped: bool = False,
    ) -> None:
        """Store the reply, then put its final text in Slack (in that order, so a quick
        follow-up sees it). A store that fails does not hold the answer back: it goes to Slack
        anyway and the write is retried, so a restart does not take it for interrupted.

        A stopped reply is stored `stopped` with its text so far: later mentions see that
        partial text as the assistant's turn."""
        status = (
            "stopped"
            if stopped
            else "incomplete"
            if result.error is not None
            else "refused"
            if result.stop_reason == "refusal"
            else "done"
        )
        stored = False
        sent_to = list(reply.message_ts)
        if reply_id is not None:
            try:
                await self._store_final(reply_id, reply, status, result.stop_reason)
                stored = True
            except Exception as exc:
                log.warning("could not store reply %s before its final edit: %r", reply_id, exc)
        try:
            if stopped:
                await reply.stop(feedback=feedback)
            else:
                await reply.finish(note, feedback=feedback)
        except Exception:
            log.exception("final edit failed for reply %s", reply_id)
        self.metrics.reply_closed(
            status,
            result,
            started_at=reply.started_at,
            first_text_at=reply.first_text_at,
            ended_at=time.monotonic(),
        )
        if reply_id is not None and (not stored or reply.message_ts != sent_to):
            await self._store_final(
                reply_id, reply, status, result.stop_reason, retry_for=FINAL_STORE_SECONDS
            )

    async def _store_final(
        self,
        reply_id: int,
        reply: Reply,
        status: str,
        stop_reason: str | None,
        *,
        retry_for: float = 0.0,
    ) -> None:
        """The reply's final record; with `retry_for`, retried with backoff until it lands or
        the time is up (then logged: the answer is in Slack, only the store lacks it)."""
        deadline = asyncio.get_running_loop().time() + retry_for
        pause = 0.5
        while True:
            try:
                await self.store.update_reply(
                    reply_id,
                    text=reply.final_text(),
                    message_ts=reply.message_ts,
                    status=status,
                    stop_reason=stop_reason,
                )
                return
            except Exception as exc:
                if not retry_for:
                    raise
                if asyncio.get_running_loop().time() + pause > deadline:
                    log.error("gave up storing reply %s: %r", reply_id, exc)
                    return
                log.warning("storing reply %s failed (%r); retrying in %.1fs", reply_id, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 8.0)


def feedback_for(reply: Reply, reply_id: int | None, result: StreamResult) -> FeedbackTag | None:
    """The 👍/👎 buttons' tag for a reply that ends with the model's answer; None for one that
    broke off, was refused or has no model text (an error note is nothing to rate)."""
    if result.error is not None or result.stop_reason == "refusal" or not reply.text.strip():
        return None
    return FeedbackTag(reply_id=reply_id, model=result.model)
