"""Bolt wiring: which Slack events the bot answers, handed to `Conversations`.

Bolt verifies request signatures (and rejects stale timestamps) and ignores the bot's own
events. The listeners only decide *whether* a message is for the bot, turn it into an `Incoming`
and admit it; Bolt acknowledges the event when the listener returns. Feedback clicks, the 👎
modal's answer, `app_home_opened` and the Stop button are acknowledged at once: their work runs
beside the ack. Slack's Stop (`agent_session_stopped`) only sets the turn's stop signal.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import feedback
from slackbot.app_home import AppHome
from slackbot.commands import Commands
from slackbot.config import Settings
from slackbot.conversation import Conversations
from slackbot.events import Incoming, enterprise_of, incoming_from, is_person_message, revision_from
from slackbot.stopping import STOP_ACTION

#: Message subtypes that change a message the bot may have stored.
REVISIONS = ("message_changed", "message_deleted")

log = logging.getLogger(__name__)


def build_app(
    settings: Settings,
    *,
    client: AsyncWebClient,
    conversations: Conversations,
    desk: feedback.FeedbackDesk,
    home: AppHome,
) -> AsyncApp:
    app = AsyncApp(
        client=client,
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=bool(settings.slack_signing_secret),
        # The listeners run before the acknowledgement: each records its message in the store
        # first (see `Conversations.admit`), so a crash right after the ack loses nothing.
        process_before_response=True,
        # Unused helpers (say/set_status, workflow function tokens): skipping their middleware
        # spares work on every request.
        attaching_conversation_kwargs_enabled=False,
        attaching_function_token_enabled=False,
    )

    async def dispatch(msg: Incoming, context: AsyncBoltContext) -> None:
        if conversations.bot_user_id is None:
            conversations.bot_user_id = context.bot_user_id
        await conversations.admit(msg)

    @app.event("app_mention")
    async def answer_mention(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        if not is_person_message(event, context.bot_user_id):
            return
        await dispatch(incoming_from(event, body, is_dm=False), context)

    @app.event("message")
    async def answer_direct_message(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        if event.get("subtype") in REVISIONS:
            # Edits and deletions in DMs (and in channels, when the app subscribes to their
            # message events): the store follows; nothing is answered.
            revision = revision_from(event, body, context.bot_user_id)
            if revision is not None:
                conversations.take_revision(revision)
            return
        # Channel messages are answered only through app_mention, so the bot never intrudes.
        if event.get("channel_type") != "im" or not is_person_message(event, context.bot_user_id):
            return
        sessions = settings.dm_mode == "sessions"
        await dispatch(incoming_from(event, body, is_dm=True, sessions=sessions), context)

    @app.event("agent_session_stopped")
    async def stop_session(event: dict[str, Any], body: dict[str, Any]) -> None:
        # Slack's Stop on a thread's agent session; acknowledged whatever it finds (a Stop
        # for a reply that has finished does nothing).
        channel, thread_ts = event.get("channel"), event.get("thread_ts")
        workspace = enterprise_of(body) or str(body.get("team_id") or "")
        if channel and thread_ts:
            await conversations.stop_thread(workspace, str(channel), str(thread_ts))

    @app.action(STOP_ACTION)
    async def stop_reply(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        container = body.get("container") or {}
        channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
        user = str((body.get("user") or {}).get("id") or "")
        if not channel or not user:
            return
        # The ack goes back at once; telling someone they can't stop it may take a moment.
        conversations.tasks.start(
            conversations.press_stop(
                channel=channel,
                answers_ts=str(action.get("value") or ""),
                user=user,
                thread_ts=container.get("thread_ts"),
            ),
            name=f"stop {channel}",
        )

    @app.action(feedback.ACTION_ID)
    async def take_feedback(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        desk.take_click(body)

    @app.view(feedback.REASON_CALLBACK_ID)
    async def take_feedback_reason(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()  # an empty answer closes the modal
        desk.take_reason(body)

    @app.event("app_home_opened")
    async def show_app_home(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        # Usage is kept under the installation (the Grid enterprise, else the team): the same
        # key here, or an org-wide install's Home tab would show no usage.
        team = enterprise_of(body) or str(context.team_id or body.get("team_id") or "")
        home.opened(event, team=team)

    commands = Commands(conversations)

    @app.command("/claude")
    async def answer_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        # The answer is the command's own response: ephemeral, seen by the caller alone.
        await ack(response_type="ephemeral", text=await commands.answer(body))

    @app.error
    async def log_errors(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error for event %s: %r", body.get("event_id"), error)

    return app
