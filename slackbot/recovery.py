"""Closing what a crash left open, with the reply's own finishing code.

A message is recorded before its delivery is acknowledged; one whose reply was never begun is
answered again at start-up (`conversation.Conversations.recover`), after the placeholder a crash
may have left for it is removed (`clear_orphan_placeholders`).

A reply is stored the moment its placeholder exists and checkpointed while it streams; one
still marked `streaming` at start-up was cut off by a crash or a kill. It is finished the way a
live reply finishes (`Reply.finish`): the stored text plus an "interrupted" note, laid over the
messages it had, and new messages for whatever no longer fits, so the note is always visible.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from slackbot import messages
from slackbot.events import Incoming
from slackbot.reply import Replies
from slackbot.session_status import SessionStatus
from slackbot.store import Store

log = logging.getLogger(__name__)


async def close_unfinished(
    store: Store, replies: Replies, status: SessionStatus | None = None
) -> int:
    """Finish every reply a crash left streaming, and set its thread's session back to
    `active` (or clear the fallback status): no spinner outlives a crash. Returns how many
    were closed."""
    closed = 0
    for unfinished in await store.unfinished_replies():
        try:
            await replies.reopen(
                channel=unfinished.channel,
                thread_ts=unfinished.thread_ts,
                message_ts=unfinished.message_ts,
            )
        except Exception:
            log.exception("could not reopen interrupted reply %s", unfinished.id)
        reply = replies.resume(
            team=unfinished.team,
            channel=unfinished.channel,
            thread_ts=unfinished.thread_ts,
            message_ts=unfinished.message_ts,
            text=unfinished.text,
        )
        message_ts = list(unfinished.message_ts)
        try:
            message_ts = await reply.finish(messages.incomplete(messages.INTERRUPTED))
        except Exception:
            log.exception("could not close interrupted reply %s", unfinished.id)
        await store.update_reply(
            unfinished.id, text=unfinished.text, message_ts=message_ts, status="incomplete"
        )
        if status is not None and unfinished.thread_ts is not None:
            await status.end(
                team=unfinished.team, channel=unfinished.channel, thread_ts=unfinished.thread_ts
            )
        closed += 1
    if closed:
        log.info("closed %d reply(ies) left unfinished by a restart", closed)
    return closed


async def clear_orphan_placeholders(
    client: AsyncWebClient, msg: Incoming, bot_user_id: str | None
) -> int:
    """Delete placeholders the bot posted for `msg` before a crash, whose reply it never stored
    (the crash came between the post and the store write). Best-effort; returns how many."""
    if bot_user_id is None:
        return 0
    try:
        if msg.thread_root is not None:
            response = await client.conversations_replies(
                channel=msg.channel, ts=msg.thread_root, oldest=msg.ts, limit=200
            )
        else:
            response = await client.conversations_history(
                channel=msg.channel, oldest=msg.ts, limit=50
            )
    except Exception as exc:
        log.info("could not look for placeholders left for %s/%s: %r", msg.channel, msg.ts, exc)
        return 0
    deleted = 0
    for message in response.get("messages") or []:
        if _is_placeholder(message, bot_user_id) and message.get("ts") != msg.ts:
            try:
                await client.chat_delete(channel=msg.channel, ts=message["ts"])
                deleted += 1
            except Exception as exc:
                log.info("could not delete placeholder %s: %r", message.get("ts"), exc)
    return deleted


def _is_placeholder(message: dict[str, Any], bot_user_id: str) -> bool:
    # Slack may return the Markdown source or its plain rendering: compare without emphasis.
    text = str(message.get("text") or "").strip("_ ")
    placeholders = {messages.PLACEHOLDER.strip("_ "), messages.QUEUED.strip("_ ")}
    return message.get("user") == bot_user_id and text in placeholders
