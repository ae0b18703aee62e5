"""Closing what a crash left open, with the reply's own finishing code.

A reply is stored the moment its placeholder exists and checkpointed while it streams; one
still marked `streaming` at start-up was cut off by a crash or a kill. It is finished the way a
live reply finishes (`Reply.finish`): the stored text plus an "interrupted" note, laid over the
messages it had, and new messages for whatever no longer fits, so the note is always visible.
"""

from __future__ import annotations

import logging

from slackbot import messages
from slackbot.reply import Replies
from slackbot.store import Store

log = logging.getLogger(__name__)


async def close_unfinished(store: Store, replies: Replies) -> int:
    """Finish every reply a crash left streaming; returns how many were closed."""
    closed = 0
    for unfinished in await store.unfinished_replies():
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
        closed += 1
    if closed:
        log.info("closed %d reply(ies) left unfinished by a restart", closed)
    return closed
