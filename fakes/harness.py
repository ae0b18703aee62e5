"""The real bot (Bolt, slack_sdk, anthropic) wired to fake Slack and Claude servers, in-process.

Tests and the benchmark drive the bot through it over real HTTP: signed Events API requests to the
bot's own aiohttp server, Web API calls to `FakeSlack`, streamed Messages API calls to
`FakeClaude`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import psycopg
from aiohttp import web

from fakes.claude import FakeClaude
from fakes.slack import (
    FakeSlack,
    agent_session_stopped_event,
    app_home_opened,
    event_callback,
    message_event,
    signed_event_request,
    signed_form_request,
    signed_interaction_request,
    slash_command,
)
from slackbot.config import Settings, load_settings
from slackbot.db_read import to_pyformat
from slackbot.server import Bot, create_bot, open_store, web_app

SIGNING_SECRET = "test-signing-secret"
#: How the bot's per-mention context block starts (see `slackbot.request_context`).
CONTEXT_HEADER = "[Context from the Slack app"


def conversation(request: dict[str, Any]) -> list[dict[str, Any]]:
    """A request's messages without the mention's context block (the last user block): the
    conversation as the bot stored and rendered it."""
    messages = [dict(m) for m in request["messages"]]
    for message in messages:
        message["content"] = [
            b
            for b in message["content"]
            if not (b.get("type") == "text" and b.get("text", "").startswith(CONTEXT_HEADER))
        ]
    return messages


CHANNEL = "C1"
DM = "D1"


def bot_env(slack: FakeSlack, claude: FakeClaude, db_path: str) -> dict[str, str]:
    """The environment that points the bot at the fakes (for settings or a real process)."""
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "ANTHROPIC_BASE_URL": claude.base_url,
        "SLACK_API_URL": slack.api_url,
        "SLACKBOT_DB": db_path,
        "SLACKBOT_EDIT_INTERVAL": "0.05",
    }


def make_settings(slack: FakeSlack, claude: FakeClaude, db_path: str, **overrides: Any) -> Settings:
    return dataclasses.replace(load_settings(bot_env(slack, claude, db_path)), **overrides)


class Harness:
    """The bot served over HTTP on 127.0.0.1, plus helpers that act like Slack and a person."""

    def __init__(self, slack: FakeSlack, claude: FakeClaude, bot: Bot, url: str) -> None:
        self.slack = slack
        self.claude = claude
        self.bot = bot
        self.url = url
        self.session = aiohttp.ClientSession()
        self.expected = 0  # deliveries the bot should take through Conversations.handle

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (`?` placeholders) on the bot's database, whichever it
        is: what a test checks was stored, from outside the store's own code."""
        url = self.bot.settings.database_url
        if url:
            with psycopg.connect(url) as conn:
                return list(conn.execute(to_pyformat(sql), params).fetchall())
        with contextlib.closing(sqlite3.connect(self.bot.settings.db_path)) as db:
            return list(db.execute(sql, params).fetchall())

    async def post_event(
        self,
        payload: dict[str, Any],
        *,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        retry_num: int | None = None,
    ) -> aiohttp.ClientResponse:
        body, headers = signed_event_request(
            secret,
            payload,
            timestamp=timestamp,
            retry_num=retry_num,
            retry_reason="http_timeout" if retry_num else None,
        )
        async with self.session.post(self.url, data=body, headers=headers) as response:
            await response.read()
            return response

    async def post_interaction(
        self, payload: dict[str, Any], *, secret: str = SIGNING_SECRET
    ) -> tuple[int, bytes]:
        """Send an interactive payload as Slack does (form-encoded, signed); returns the
        response's status and body."""
        body, headers = signed_interaction_request(secret, payload)
        async with self.session.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.read()

    async def click_feedback(
        self, channel: str, ts: str, *, user: str = "U1", good: bool
    ) -> tuple[int, bytes]:
        """`user` clicks 👍 (`good`) or 👎 under the bot's message `ts`."""
        return await self.post_interaction(
            self.slack.feedback_click(channel, ts, user=user, good=good)
        )

    async def submit_view(
        self, view_id: str, values: dict[str, dict[str, dict[str, Any]]]
    ) -> tuple[int, bytes]:
        """The person a modal was opened for submits it with `values`."""
        return await self.post_interaction(self.slack.view_submission_payload(view_id, values))

    async def open_app_home(
        self, user: str = "U1", *, tab: str, channel: str = DM
    ) -> aiohttp.ClientResponse:
        """`user` opens the app's `tab` (`home`, `messages`); Slack sends `app_home_opened`."""
        return await self.post_event(app_home_opened(user, tab=tab, channel=channel))

    async def mention(
        self,
        text: str,
        *,
        user: str = "U1",
        channel: str = CHANNEL,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
        event_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A person posts `@bot text`; Slack delivers the app_mention. Returns the message."""
        message = self.slack.add_user_message(
            channel,
            user,
            f"<@{self.slack.bot_user_id}> {text}",
            thread_ts=thread_ts,
            files=files,
            attachments=attachments,
        )
        await self.deliver(message, type="app_mention", event_id=event_id)
        return message

    async def dm(
        self, text: str, *, user: str = "U1", thread_ts: str | None = None
    ) -> dict[str, Any]:
        message = self.slack.add_user_message(DM, user, text, thread_ts=thread_ts)
        await self.deliver(message, type="message", channel_type="im")
        return message

    async def deliver(
        self,
        message: dict[str, Any],
        *,
        type: str = "app_mention",
        channel_type: str | None = None,
        event_id: str | None = None,
        ignored: bool = False,
    ) -> dict[str, Any]:
        """Deliver a stored message as Slack would; `ignored` when the bot should not act on it."""
        payload = event_callback(
            message_event(message, type=type, channel_type=channel_type), event_id=event_id
        )
        response = await self.post_event(payload)
        assert response.status == 200
        if not ignored and (type == "app_mention" or channel_type == "im"):
            self.expected += 1
        return payload

    async def stop_session(
        self,
        channel: str,
        thread_ts: str,
        *,
        user: str = "U1",
        streaming_message_ts: list[str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Someone presses Slack's own Stop on the thread's agent session."""
        event = agent_session_stopped_event(channel, thread_ts, user, streaming_message_ts or [])
        return await self.post_event(event_callback(event))

    async def click(
        self, channel: str, ts: str, action_id: str, *, user: str = "U1"
    ) -> tuple[int, bytes]:
        """`user` clicks the button `action_id` on the bot's message `ts`, as Slack sends it
        (a signed, form-encoded `block_actions` payload). Fails if the message has no such
        button now."""
        message = self.slack.messages[(channel, ts)]
        buttons = [
            {**element, "block_id": block.get("block_id", "b")}
            for block in message.get("blocks") or []
            if block.get("type") == "actions"
            for element in block.get("elements") or []
            if element.get("action_id") == action_id
        ]
        assert buttons, f"message {ts} has no {action_id!r} button: {message.get('blocks')}"
        action = {k: v for k, v in buttons[0].items() if k != "action_ts"}
        return await self.post_interaction(
            self.slack.block_actions_payload(channel, ts, user=user, action=action)
        )

    async def command(
        self,
        text: str,
        *,
        user: str = "U1",
        channel: str = CHANNEL,
        secret: str = SIGNING_SECRET,
        **fields: Any,
    ) -> tuple[int, dict[str, Any]]:
        """`/claude text`, posted form-encoded and signed as Slack does; returns the HTTP
        status and the JSON the bot answered with (the ephemeral response)."""
        form = slash_command(text, user_id=user, channel_id=channel, **fields)
        body, headers = signed_form_request(secret, form)
        async with self.session.post(self.url, data=body, headers=headers) as response:
            answer = await response.json(content_type=None) if response.status == 200 else {}
            return response.status, answer

    async def revise(
        self, event: dict[str, Any], *, channel_type: str = "im", team_id: str = "T1"
    ) -> None:
        """Deliver a `message_changed` / `message_deleted` event (see `FakeSlack.edit_message`)
        and wait until the bot has followed it."""
        tasks = self.bot.conversations.tasks
        response = await self.post_event(
            event_callback({**event, "channel_type": channel_type}, team_id=team_id)
        )
        assert response.status == 200
        await self.slack.wait_for(lambda: len(tasks) == 0)

    def replies(self, channel: str, thread_ts: str | None) -> list[dict[str, Any]]:
        return self.slack.bot_messages(channel, thread_ts)

    def texts(self, channel: str, thread_ts: str | None) -> list[str]:
        return [self.slack.final_text(channel, m["ts"]) for m in self.replies(channel, thread_ts)]

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until every accepted event has been answered completely."""
        conversations = self.bot.conversations

        def idle() -> bool:
            return (
                conversations.handled >= self.expected
                and len(conversations.sequencer) == 0
                and not any(
                    "Thinking…" in self.slack.final_text(c, ts) for (c, ts) in self._bot_keys()
                )
            )

        await self.slack.wait_for(idle, timeout=timeout)

    def _bot_keys(self) -> list[tuple[str, str]]:
        return [
            k for k, m in self.slack.messages.items() if m.get("user") == self.slack.bot_user_id
        ]

    async def close(self) -> None:
        await self.session.close()


async def start_harness(
    slack: FakeSlack,
    claude: FakeClaude,
    db_path: str,
    *,
    slack_timeout: float = 60.0,
    **overrides: Any,
) -> tuple[Harness, web.AppRunner]:
    settings = make_settings(slack, claude, db_path, **overrides)
    store = await open_store(settings)  # SQLite at db_path, or PostgreSQL with database_url
    bot = await create_bot(
        settings, anthropic_max_retries=0, store=store, slack_timeout=slack_timeout
    )
    bot.conversations.bot_user_id = slack.bot_user_id  # what start-up learns from auth.test
    await bot.conversations.recover()
    runner = web.AppRunner(web_app(bot), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return Harness(slack, claude, bot, f"http://127.0.0.1:{port}/slack/events"), runner


@contextlib.asynccontextmanager
async def running_harness(
    slack: FakeSlack, claude: FakeClaude, db_path: str, **overrides: Any
) -> AsyncIterator[Harness]:
    """A harness for the length of the block; at its end every accepted event is answered
    before the bot is shut down (`overrides` as for `start_harness`)."""
    harness, runner = await start_harness(slack, claude, db_path, **overrides)
    try:
        yield harness
    finally:
        await harness.settled()
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()
