"""Feedback on replies: the 👍/👎 buttons under an answer, the 👎 modal, and keeping the votes.

Every final reply with model text carries one `context_actions` block holding Slack's
`feedback_buttons` (on a long reply, its last message only). The buttons' values carry the
reply's store id and model, so a vote can be grouped by model without a lookup; the vote's
channel, message and person come from Slack's own payload. `chat.update` replies put their text
in a `markdown` block beside the buttons (`markdown_text` cannot be combined with blocks):
`with_buttons`. Native replies (`chat.stopStream(blocks=…)`) take `buttons_block` alone.

Clicks arrive as `block_actions`; Slack resends a click on an already-selected button, so a vote
is kept once per (person, reply message) and a later click or a switch updates it. A 👎 opens a
modal (`views.open`, whose `trigger_id` lives 3 s) asking what was wrong; its `view_submission`
is kept with the vote. The listeners acknowledge at once; the work runs beside the ack.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import messages
from slackbot.store import Store, Vote
from slackbot.tasks import TaskKeeper

log = logging.getLogger(__name__)

#: The feedback buttons' `action_id` (what `app.py` listens for).
ACTION_ID = "reply_feedback"
#: The 👎 modal's `callback_id`, and its reason field's block and action ids.
REASON_CALLBACK_ID = "reply_feedback_reason"
REASON_BLOCK_ID = "reason"
REASON_ACTION_ID = "reason"
#: A `markdown` block's text is capped at 12,000 characters cumulative per message.
MARKDOWN_BLOCK_LIMIT = 12_000
#: Slack's `text` beside blocks is only the notification's fallback; it must stay under 4,000.
FALLBACK_CHARS = 300
REASON_MAX_CHARS = 2000
GOOD, BAD = "good", "bad"


@dataclass(frozen=True)
class FeedbackTag:
    """What a reply's buttons carry: the reply's store id (None if the store failed) and the
    model that wrote it."""

    reply_id: int | None
    model: str | None

    def value(self, vote: str) -> str:
        return json.dumps({"vote": vote, "reply": self.reply_id, "model": self.model})


def buttons_block(tag: FeedbackTag) -> dict[str, Any]:
    """The `context_actions` block with the 👍/👎 buttons, for a reply's last message."""
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": ACTION_ID,
                "positive_button": {
                    "text": {"type": "plain_text", "text": messages.FEEDBACK_GOOD},
                    "accessibility_label": messages.FEEDBACK_GOOD_LABEL,
                    "value": tag.value(GOOD),
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": messages.FEEDBACK_BAD},
                    "accessibility_label": messages.FEEDBACK_BAD_LABEL,
                    "value": tag.value(BAD),
                },
            }
        ],
    }


def with_buttons(markdown: str, tag: FeedbackTag) -> dict[str, Any]:
    """`chat.postMessage`/`chat.update` arguments for `markdown` with the buttons under it: the
    text in a `markdown` block (at most `MARKDOWN_BLOCK_LIMIT` characters), a short fallback."""
    if len(markdown) > MARKDOWN_BLOCK_LIMIT:
        raise ValueError(f"a markdown block holds at most {MARKDOWN_BLOCK_LIMIT} characters")
    fallback = " ".join(markdown.split())
    if len(fallback) > FALLBACK_CHARS:
        fallback = fallback[: FALLBACK_CHARS - 1].rstrip() + "…"
    return {
        "text": fallback or "…",
        "blocks": [{"type": "markdown", "text": markdown}, buttons_block(tag)],
    }


def vote_from_click(body: dict[str, Any]) -> Vote | None:
    """The vote in a `block_actions` payload from the buttons, or None if it isn't one."""
    action = next((a for a in body.get("actions") or [] if a.get("action_id") == ACTION_ID), None)
    if action is None:
        return None
    try:
        value = json.loads(action.get("value") or "")
    except ValueError:
        value = None
    if not isinstance(value, dict) or value.get("vote") not in (GOOD, BAD):
        log.info("feedback click with an unknown value ignored")
        return None
    container = body.get("container") or {}
    user = body.get("user") or {}
    team = (body.get("team") or {}).get("id") or user.get("team_id")
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    message_ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    if not (team and channel and message_ts and user.get("id")):
        log.info("feedback click without team, channel, message or user ignored")
        return None
    reply_id = value.get("reply")
    model = value.get("model")
    return Vote(
        team=str(team),
        channel=str(channel),
        message_ts=str(message_ts),
        user_id=str(user["id"]),
        vote=value["vote"],
        reply_id=reply_id if isinstance(reply_id, int) else None,
        model=model if isinstance(model, str) else None,
    )


def reason_modal(vote: Vote) -> dict[str, Any]:
    """The 👎 modal: one optional text field; the vote it belongs to rides in
    `private_metadata`."""
    metadata = {
        "team": vote.team,
        "channel": vote.channel,
        "ts": vote.message_ts,
        "reply": vote.reply_id,
        "model": vote.model,
    }
    return {
        "type": "modal",
        "callback_id": REASON_CALLBACK_ID,
        "private_metadata": json.dumps(metadata),
        "title": {"type": "plain_text", "text": messages.FEEDBACK_MODAL_TITLE},
        "submit": {"type": "plain_text", "text": messages.FEEDBACK_MODAL_SUBMIT},
        "close": {"type": "plain_text", "text": messages.FEEDBACK_MODAL_CLOSE},
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": messages.FEEDBACK_MODAL_INTRO},
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK_ID,
                "label": {"type": "plain_text", "text": messages.FEEDBACK_MODAL_LABEL},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION_ID,
                    "multiline": True,
                    "max_length": REASON_MAX_CHARS,
                    "placeholder": {
                        "type": "plain_text",
                        "text": messages.FEEDBACK_MODAL_PLACEHOLDER,
                    },
                },
            },
        ],
    }


def reason_from_submission(body: dict[str, Any]) -> tuple[Vote, str] | None:
    """The vote and its reason from the modal's `view_submission`, or None if malformed."""
    view = body.get("view") or {}
    user = (body.get("user") or {}).get("id")
    try:
        metadata = json.loads(view.get("private_metadata") or "")
        field = view["state"]["values"][REASON_BLOCK_ID][REASON_ACTION_ID]
    except (ValueError, KeyError, TypeError):
        log.info("feedback modal submission without its metadata or field ignored")
        return None
    if not isinstance(metadata, dict) or not user:
        return None
    team, channel, ts = metadata.get("team"), metadata.get("channel"), metadata.get("ts")
    if not (isinstance(team, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    reply_id = metadata.get("reply")
    model = metadata.get("model")
    vote = Vote(
        team=team,
        channel=channel,
        message_ts=ts,
        user_id=str(user),
        vote=BAD,
        reply_id=reply_id if isinstance(reply_id, int) else None,
        model=model if isinstance(model, str) else None,
    )
    reason = str((field or {}).get("value") or "").strip()[:REASON_MAX_CHARS]
    return vote, reason


class FeedbackDesk:
    """Takes clicks and modal answers: acknowledged by the caller at once, worked on beside
    the ack (in `tasks`, which shutdown drains), never raising."""

    def __init__(self, client: AsyncWebClient, store: Store, tasks: TaskKeeper) -> None:
        self._client = client
        self._store = store
        self._tasks = tasks

    def take_click(self, body: dict[str, Any]) -> None:
        vote = vote_from_click(body)
        if vote is None:
            return
        if vote.vote == BAD:
            # The trigger expires 3 s after the click: the modal goes out before anything else.
            self._tasks.start(self._open_modal(vote, body.get("trigger_id")), name="feedback modal")
        self._tasks.start(self._record(vote), name="feedback vote")

    def take_reason(self, body: dict[str, Any]) -> None:
        found = reason_from_submission(body)
        if found is None:
            return
        vote, reason = found
        self._tasks.start(self._record(vote, reason), name="feedback reason")

    async def _record(self, vote: Vote, reason: str | None = None) -> None:
        try:
            if reason is None:
                await self._store.record_vote(vote)
            else:
                await self._store.record_vote_reason(vote, reason)
        except Exception:
            log.exception("could not store feedback on %s/%s", vote.channel, vote.message_ts)

    async def _open_modal(self, vote: Vote, trigger_id: Any) -> None:
        if not trigger_id:
            return
        try:
            await self._client.views_open(trigger_id=str(trigger_id), view=reason_modal(vote))
        except SlackApiError as exc:  # expired trigger, say: the vote is kept anyway
            log.info("views.open for a 👎 failed: %s", exc.response.get("error"))
        except Exception as exc:
            log.warning("views.open for a 👎 failed: %r", exc)
