"""Bring the store up to date with a Slack thread before answering in it.

People talk in a thread between mentions, and the bot may be mentioned mid-way through a thread
it has never seen: those messages become context. `conversations.replies` is rate-limited hard
for some apps, so this is best-effort — on any failure the bot answers from what it has stored.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot.attachments import Attachments
from slackbot.events import is_person_message
from slackbot.people import People
from slackbot.store import Store
from slackbot.user_turn import read_message, store_user_turn

log = logging.getLogger(__name__)

#: Upper bound on pages fetched for one sync (200 messages a page).
MAX_PAGES = 25


async def fetch_thread(
    client: AsyncWebClient,
    *,
    channel: str,
    thread_ts: str,
    up_to_ts: str,
    after_ts: str | None = None,
) -> list[dict[str, Any]]:
    """The thread's messages up to `up_to_ts` (and from `after_ts` on, when given)."""
    messages: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        response = await client.conversations_replies(
            channel=channel,
            ts=thread_ts,
            latest=up_to_ts,
            inclusive=True,
            limit=200,
            cursor=cursor,
            oldest=after_ts,
        )
        messages.extend(response.get("messages") or [])
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor or not response.get("has_more", True):
            break
    return messages


async def sync_thread(
    *,
    client: AsyncWebClient,
    store: Store,
    people: People,
    attachments: Attachments,
    conversation_id: int,
    channel: str,
    thread_ts: str,
    up_to_ts: str,
    bot_user_id: str | None,
) -> int:
    """Store the thread's human messages up to `up_to_ts` that the store lacks; returns how many."""
    try:
        messages = await fetch_thread(
            client,
            channel=channel,
            thread_ts=thread_ts,
            up_to_ts=up_to_ts,
            after_ts=await store.sync_point(conversation_id),
        )
    except SlackApiError as exc:
        log.info("thread sync skipped (%s): answering from the store", exc.response.get("error"))
        return 0
    except Exception as exc:  # network trouble: same answer, best-effort
        log.info("thread sync skipped (%r): answering from the store", exc)
        return 0
    known = await store.known_ts(conversation_id)
    added = 0
    for message in messages:
        ts = str(message.get("ts", ""))
        if not ts or ts in known or ts > up_to_ts or not is_person_message(message, bot_user_id):
            continue
        turn = await read_message(
            message, people=people, attachments=attachments, bot_user_id=bot_user_id
        )
        added += int(await store_user_turn(store, conversation_id, turn))
    await store.mark_synced(conversation_id, up_to_ts)
    return added
