"""A fake Slack, spoken to over real HTTP and WebSocket on 127.0.0.1.

Tests point the real clients at it (``AsyncWebClient(base_url=slack.api_url)``, Bolt's Socket Mode
client via ``apps.connections.open``), so what is exercised is the wire format slack_sdk really
sends, not our guess of it. The fake keeps the state a test wants to assert on (calls, messages,
downloads) and reproduces the Slack rules our bot has to respect: message size limits,
``markdown_text`` conflicts, ``ratelimited`` with ``Retry-After``, the Tier-3 ``chat.update``
budget, and file downloads that answer an HTML sign-in page when the token is missing. It also
plays the app's pages (``views.publish``, ``views.open`` with the ``trigger_id`` it issued for an
interaction, suggested prompts) and builds the interactive payloads Slack would send
(``block_actions_payload``, ``view_submission_payload``, ``signed_interaction_request``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import WSMsgType, web
from aiohttp.web_request import FileField
from slack_sdk.signature import SignatureVerifier

from fakes.server import HOST, LocalServer
from slackbot.scopes import BOT_SCOPES

TEXT_LIMIT = 4000
MARKDOWN_TEXT_LIMIT = 12000
#: A natively streamed message fails `msg_too_long` past roughly this many bytes of UTF-8,
#: task-card JSON included (field reports: 10.6–11.3 KB).
STREAM_BYTE_LIMIT = 10_600
TASK_STATUSES = ("pending", "in_progress", "complete", "error")
SESSION_STATUSES = ("processing", "active", "suspended", "closed")
#: A message's ``markdown`` blocks together hold at most this many characters.
MARKDOWN_BLOCKS_LIMIT = 12000
MESSAGE_BLOCKS_LIMIT = 50
VIEW_BLOCKS_LIMIT = 100
#: A ``trigger_id`` can open a view for this many seconds after the interaction.
TRIGGER_SECONDS = 3.0
MAX_SUGGESTED_PROMPTS = 4

# Fields slack_sdk sends JSON-encoded when it has to use a form or query string.
_JSON_FIELDS = ("blocks", "attachments", "metadata", "loading_messages", "files", "chunks")

SIGN_IN_PAGE = (
    "<!DOCTYPE html><html><head><title>Slack</title></head>"
    "<body><h1>Sign in to Test</h1><form action='/signin'></form></body></html>"
)

T = TypeVar("T")


@dataclass
class Call:
    """One Web API call as the fake received it (``token`` removed from ``params``)."""

    method: str
    params: dict[str, Any]
    at: float  # time.monotonic(); CLOCK_MONOTONIC is system-wide on Linux
    error: str | None = None  # the ``error`` the fake answered with, None when ok
    response: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The text a post or edit carried: ``markdown_text``, else its markdown blocks'
        text (a message with buttons), else ``text``."""
        if self.params.get("markdown_text"):
            return str(self.params["markdown_text"])
        blocks = self.params.get("blocks") or []
        markdown = [
            b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "markdown"
        ]
        return "\n\n".join(markdown) if markdown else str(self.params.get("text") or "")


class Download(NamedTuple):
    """A GET on a file URL or ``/redirect``; a tuple so tests can unpack it."""

    path: str
    had_auth_header: bool
    auth_header_value: str | None
    host: str = ""  # the Host header: ``127.0.0.1:PORT`` or ``localhost:PORT``


@dataclass(frozen=True)
class _Serving:
    """How a stored file's download answers, besides its content."""

    redirect_to: str | None = None
    public: bool = False
    status: int = 200
    padded_to: int | None = None
    chunked: bool = False


_CHUNK = 64 * 1024


class SlackError(Exception):
    """Raised inside a method handler to answer ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, *, status: int = 200, headers: dict[str, str] | None = None):
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int | None


Handler = Callable[[dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]


def _ts_key(ts: str) -> Decimal:
    # Decimal, not float: a 16-digit Slack ts does not survive a round trip through a double.
    try:
        return Decimal(ts)
    except InvalidOperation:
        return Decimal(0)


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


class FakeSlack(LocalServer):
    """Slack's Web API at ``{api_url}<method>``, plus file downloads and test controls.

    Construct, ``await start()`` (or ``async with``), then seed it (``add_user_message``,
    ``add_file``, ``users``), point the code under test at ``api_url`` and assert on ``calls``,
    ``messages`` and ``downloads``. ``handlers[method] = fn(params) -> dict`` adds or overrides a
    method; ``fn`` may raise ``SlackError``.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T1",
        chat_update_per_minute: int | None = None,
    ) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.app_token = "xapp-test-token"
        #: What Slack sends back as ``x-oauth-scopes`` on every call made with the bot token
        #: (the app token's is ``connections:write``): the manifest's scopes unless a test
        #: takes some away; None sends no such header (a proxy that strips it).
        self.scopes: list[str] | None = list(BOT_SCOPES)
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.chat_update_per_minute = chat_update_per_minute
        self.minute_seconds = 60.0  # shrink to speed up Tier-3 tests and benchmarks
        self.socket_url: str | None = None  # what apps.connections.open hands out
        self.socket_server: FakeSocketModeServer | None = None

        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.missing_users: set[str] = set()
        self.files: dict[str, dict[str, Any]] = {}
        self.file_contents: dict[str, bytes] = {}
        self.file_serving: dict[str, _Serving] = {}
        self.bytes_sent: Counter[str] = Counter()  # body bytes written per file id
        self.sent_in_full: set[str] = set()  # file ids whose whole body was written
        self.downloads: list[Download] = []
        self.handlers: dict[str, Handler] = {}
        #: Files the app uploaded (``files_upload_v2``), completed into a channel or not: each
        #: {id, filename, length, data, channel, thread_ts, title, headers}.
        self.uploads: dict[str, dict[str, Any]] = {}

        self._failures: dict[str, deque[_Failure]] = {}
        self._delays: dict[str, float] = {}
        self._update_times: deque[float] = deque()
        self._timeline: dict[tuple[str, str], dict[str, float | int]] = {}
        self._update_log: dict[tuple[str, str], list[float]] = {}  # every chat.update's time
        self._update_texts: dict[tuple[str, str], list[str]] = {}  # and its text's start
        self._last_ts_us = 0
        self._file_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self.channels: dict[str, dict[str, Any]] = {}
        #: Home views published (``views.publish``), by user id: the latest one.
        self.home_views: dict[str, dict[str, Any]] = {}
        #: Modals opened (``views.open``), by view id, with the user they were opened for.
        self.views: dict[str, dict[str, Any]] = {}
        #: Suggested prompts pinned per channel (``assistant.threads.setSuggestedPrompts``).
        self.suggested_prompts: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._triggers: dict[str, tuple[str, float]] = {}  # trigger_id → (user, issued at)
        self._used_triggers: set[str] = set()
        self._view_ids = itertools.count(1)
        #: Every ``chat.postEphemeral`` the fake accepted: seen by one person, never stored.
        self.ephemerals: list[dict[str, Any]] = []

        # Native streaming (chat.startStream / appendStream / stopStream).
        #: Live streams by (channel, ts): started/last call times, bytes and task ids so far.
        self.streams: dict[tuple[str, str], dict[str, Any]] = {}
        #: A stream expires this long after its start, or after its last call (Slack: ~5 min).
        self.stream_ttl = 300.0
        self.stream_idle_ttl = 300.0
        self.stream_byte_limit = STREAM_BYTE_LIMIT
        #: Tier 2 (startStream + stopStream together) and Tier 4 (appendStream) per minute;
        #: None leaves them unenforced.
        self.stream_start_stop_per_minute: int | None = None
        self.append_per_minute: int | None = None
        self._tier2_times: deque[float] = deque()
        self._tier4_times: deque[float] = deque()
        # Agent sessions and assistant thread status.
        #: False: the app is not declared as an agent (`agents.sessions.*` → not_authorized).
        self.agent_sessions = True
        #: Sessions by (channel, thread_ts): status, title, initiator, every status set.
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}
        #: assistant.threads.setStatus by (channel, thread_ts): every status set, in order.
        self.thread_statuses: dict[tuple[str, str], list[str]] = {}
        #: What the bot POSTed to response URLs (interactive payloads' `response_url`).
        self.responses: list[dict[str, Any]] = []

        self.add_user(bot_user_id, display_name="slackbot", is_bot=True)
        self._methods: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "users.info": self._users_info,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "files.info": self._files_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "assistant.threads.setStatus": self._set_status,
            "agents.sessions.setStatus": self._sessions_set_status,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "assistant.threads.setSuggestedPrompts": self._set_suggested_prompts,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "apps.connections.open": self._apps_connections_open,
        }

    # -- lifecycle ------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/files-pri/{key}/{tail:.*}", self._handle_file)
        app.router.add_get("/redirect", self._handle_redirect)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_get("/_control/stats", self._handle_stats)
        app.router.add_post("/_control/reset", self._handle_reset)
        app.router.add_post("/_control/configure", self._handle_configure)
        app.router.add_post("/_control/user_message", self._handle_seed_message)
        app.router.add_post("/_control/push", self._handle_push)
        app.router.add_post("/_response/{id}", self._handle_response_url)
        return app

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; ``http://localhost:PORT`` reaches it as another host."""
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        # The trailing slash matters: slack_sdk joins method names onto it with urljoin.
        return f"{self.base_url}/api/"

    # -- test controls --------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        times: int = 1,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with ``error``.

        ``ratelimited`` is HTTP 429 with ``Retry-After`` (default 1), as Slack sends it; other
        errors are HTTP 200 unless ``status`` says otherwise.
        """
        if error == "ratelimited":
            status = status or 429
            retry_after = 1 if retry_after is None else retry_after
        queue = self._failures.setdefault(method, deque())
        queue.extend(_Failure(error, status or 200, retry_after) for _ in range(times))

    def delay(self, method: str, seconds: float) -> None:
        """Make every call of ``method`` take ``seconds`` longer (0 removes the delay)."""
        self._delays[method] = seconds

    def attach_socket_mode(self, server: FakeSocketModeServer) -> None:
        """Hand ``server.url`` out from apps.connections.open and expose it to /_control/push."""
        self.socket_server = server
        self.socket_url = server.url

    def next_ts(self) -> str:
        """A fresh message ts ("%d.%06d" from the wall clock), strictly increasing."""
        now_us = time.time_ns() // 1000
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def add_user(
        self,
        user_id: str,
        *,
        display_name: str,
        real_name: str | None = None,
        is_bot: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """Store a users.info user object with the profile fields the bot reads."""
        real_name = real_name or display_name
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": display_name.lower().replace(" ", "."),
            "real_name": real_name,
            "deleted": False,
            "is_bot": is_bot,
            "tz": "Europe/London",
            "profile": {
                "display_name": display_name,
                "display_name_normalized": display_name,
                "real_name": real_name,
                "real_name_normalized": real_name,
            },
            **extra,
        }
        self.users[user_id] = user
        return user

    def add_user_message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Store a message as if someone posted it; build its event with ``message_event``.
        ``attachments`` are Slack's (a shared message, a link preview), not files."""
        return self._store(
            channel,
            user=user,
            text=text,
            thread_ts=thread_ts,
            files=files,
            bot_id=bot_id,
            subtype=subtype,
            attachments=attachments,
        )

    def edit_message(self, channel: str, ts: str, text: str) -> dict[str, Any]:
        """A person edits their message; returns the ``message_changed`` event Slack sends."""
        message = self.messages[(channel, ts)]
        previous = self._public(message)
        message["text"] = text
        event_ts = self.next_ts()
        changed = {**self._public(message), "edited": {"user": message["user"], "ts": event_ts}}
        return {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": channel,
            "ts": event_ts,
            "event_ts": event_ts,
            "message": changed,
            "previous_message": previous,
        }

    def delete_message(self, channel: str, ts: str) -> dict[str, Any]:
        """A person deletes their message; returns the ``message_deleted`` event Slack sends."""
        message = self.messages.pop((channel, ts))
        event_ts = self.next_ts()
        return {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": channel,
            "ts": event_ts,
            "event_ts": event_ts,
            "deleted_ts": ts,
            "previous_message": {**self._public(message), "channel": None},
        }

    def add_bot_message(
        self, channel: str, markdown_text: str, *, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """Store a message as if the bot had posted it (before a crash, say)."""
        return self._store(
            channel,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            text=None,
            markdown_text=markdown_text,
            thread_ts=thread_ts,
        )

    def add_file(
        self,
        *,
        name: str,
        mimetype: str,
        content: bytes,
        filetype: str | None = None,
        redirect_to: str | None = None,
        public: bool = False,
        status: int = 200,
        padded_to: int | None = None,
        chunked: bool = False,
    ) -> dict[str, Any]:
        """Store a file and return its Slack file object; the server must be started.

        With ``redirect_to``, an authorised download answers 302 to that URL instead. A ``public``
        file is served without the token (a CDN's signed link); a ``status`` other than 200 is
        answered to an authorised download instead of the file. ``padded_to`` makes the body
        ``content`` followed by zero bytes up to that size, generated while it is sent, so a huge
        file costs no memory; ``chunked`` leaves out its Content-Length. ``bytes_sent`` and
        ``sent_in_full`` say how much of each body went out.
        """
        file_id = f"F{next(self._file_ids):010d}"
        prefix = f"{self.base_url}/files-pri/{self.team_id}-{file_id}"
        if filetype is None:
            filetype = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        file = {
            "id": file_id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "user": "U0000000001",
            "mode": "hosted",
            "is_external": False,
            "is_public": False,
            "size": len(content),
            "url_private": f"{prefix}/{quote(name)}",
            "url_private_download": f"{prefix}/download/{quote(name)}",
            "permalink": f"{self.base_url}/files/U0000000001/{file_id}/{quote(name)}",
        }
        self.files[file_id] = file
        self.file_contents[file_id] = content
        self.file_serving[file_id] = _Serving(redirect_to, public, status, padded_to, chunked)
        return file

    def reset(self) -> None:
        """Forget what happened (calls, messages, downloads, failures) but keep the set-up."""
        self.calls.clear()
        self.messages.clear()
        self.downloads.clear()
        self.bytes_sent.clear()
        self.sent_in_full.clear()
        self._failures.clear()
        self._update_times.clear()
        self._timeline.clear()
        self._update_log.clear()
        self._update_texts.clear()
        self.streams.clear()
        self._tier2_times.clear()
        self._tier4_times.clear()
        self.sessions.clear()
        self.thread_statuses.clear()
        self.ephemerals.clear()
        self.responses.clear()

    def expire_stream(self, channel: str, ts: str) -> None:
        """End a live stream as Slack's expiry does: later stream calls on it fail
        `message_not_in_streaming_state`; `chat.update` works on the message again."""
        self.streams.pop((channel, ts), None)

    def is_streaming(self, channel: str, ts: str) -> bool:
        stream = self.streams.get((channel, ts))
        return stream is not None and not self._stream_expired(stream)

    def session_status(self, channel: str, thread_ts: str) -> str | None:
        """The agent session's status in that thread, None if there is no session."""
        session = self.sessions.get((channel, thread_ts))
        return None if session is None else str(session["status"])

    def thread_status(self, channel: str, thread_ts: str) -> str | None:
        """The last `assistant.threads.setStatus` status in that thread ("" = cleared)."""
        statuses = self.thread_statuses.get((channel, thread_ts))
        return statuses[-1] if statuses else None
        self.home_views.clear()
        self.views.clear()
        self.suggested_prompts.clear()

    # -- assertions -----------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Messages the bot posted in ``channel`` (in that thread if given), oldest first."""
        found = [
            m
            for m in self.messages.values()
            if m["channel"] == channel
            and m["bot_id"] == self.bot_id
            and (thread_ts is None or m["thread_ts"] == thread_ts)
        ]
        return sorted(found, key=lambda m: _ts_key(m["ts"]))

    def final_text(self, channel: str, ts: str) -> str:
        """The message's current content: ``markdown_text`` if it has one, else its
        ``markdown`` blocks' text (what Slack shows instead of ``text``), else ``text``."""
        message = self.messages.get((channel, ts))
        if message is None:
            raise AssertionError(f"no message {channel}/{ts}; have {sorted(self.messages)}")
        if message["markdown_text"] is not None:
            return str(message["markdown_text"])
        shown = [b["text"] for b in message["blocks"] or [] if b.get("type") == "markdown"]
        if shown:
            return "\n\n".join(shown)
        return str(message["text"] or "")

    def feedback_buttons(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The message's ``feedback_buttons`` element, if it carries one."""
        message = self.messages.get((channel, ts)) or {}
        for block in message.get("blocks") or []:
            if block.get("type") == "context_actions":
                for element in block.get("elements") or []:
                    if element.get("type") == "feedback_buttons":
                        return dict(element)
        return None

    def issue_trigger_id(self, user: str) -> str:
        """A ``trigger_id`` as Slack puts in an interaction's payload: it opens one view, for
        ``TRIGGER_SECONDS``."""
        trigger = f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"
        self._triggers[trigger] = (user, time.monotonic())
        return trigger

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy and return it; woken by every API call.

        It also re-checks every 50 ms, so predicates on state outside the fake work too.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := predicate()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(
                    f"{c.method}({c.error})" if c.error else c.method for c in self.calls[-12:]
                )
                name = getattr(predicate, "__qualname__", repr(predicate))
                raise AssertionError(
                    f"{name} still false after {timeout}s; last Slack calls: [{recent}]"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
        return result

    def stats(self, *, with_text: bool = False) -> dict[str, Any]:
        """What /_control/stats serves: a JSON summary for a benchmark in another process.

        Each message carries its ``posted_at``, ``updated_at`` and ``update_times`` (every
        ``chat.update``, monotonic); ``with_text`` (``?text=1``) adds its current content.
        """
        errors: dict[str, Counter[str]] = {}
        for call in self.calls:
            if call.error:
                errors.setdefault(call.method, Counter())[call.error] += 1
        messages = []
        for key, m in sorted(self.messages.items(), key=lambda kv: _ts_key(kv[0][1])):
            messages.append(
                {
                    "channel": m["channel"],
                    "ts": m["ts"],
                    "thread_ts": m["thread_ts"],
                    "user": m["user"],
                    "bot": m["bot_id"] == self.bot_id,
                    "chars": len(self.final_text(*key)),
                    **self._timeline.get(key, {}),
                    "update_times": self._update_log.get(key, []),
                    **(
                        {
                            "text": self.final_text(*key),
                            "update_texts": self._update_texts.get(key, []),
                        }
                        if with_text
                        else {}
                    ),
                }
            )
        return {
            "now": time.monotonic(),
            "calls": dict(Counter(call.method for call in self.calls)),
            "errors": {method: dict(counts) for method, counts in errors.items()},
            "call_log": [
                {
                    "method": c.method,
                    "at": c.at,
                    "error": c.error,
                    "channel": c.params.get("channel") or c.params.get("channel_id"),
                    "ts": c.params.get("ts") or (c.response or {}).get("ts"),
                    "thread_ts": c.params.get("thread_ts"),
                }
                for c in self.calls
            ],
            "messages": messages,
            "acks": list(self.socket_server.acks) if self.socket_server else [],
        }

    # -- HTTP plumbing --------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        token = params.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ")
        call = Call(method, params, time.monotonic())
        self.calls.append(call)
        try:
            if seconds := self._delays.get(method):
                await asyncio.sleep(seconds)
            status, headers, body = await self._dispatch(method, params, token)
            call.error = None if body.get("ok") else body.get("error")
            call.response = body
            return web.json_response(body, status=status, headers=headers)
        finally:
            self._changed.set()

    async def _dispatch(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        try:
            failures = self._failures.get(method)
            if failures:
                failure = failures.popleft()
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
                raise SlackError(failure.error, status=failure.status, headers=headers)
            expected = self.app_token if method == "apps.connections.open" else self.bot_token
            if token != expected:
                raise SlackError("invalid_auth")
            if method == "chat.update":
                self._take_update_slot()
            elif method in ("chat.startStream", "chat.stopStream"):
                self._take_slot(self._tier2_times, self.stream_start_stop_per_minute)
            elif method == "chat.appendStream":
                self._take_slot(self._tier4_times, self.append_per_minute)
            handler = self.handlers.get(method) or self._methods.get(method)
            if handler is None:
                raise SlackError("unknown_method")
            body = handler(params)
            if not isinstance(body, dict):
                body = await body
            return 200, self._scope_headers(method), body
        except SlackError as e:
            return e.status, e.headers, {"ok": False, "error": e.error}

    def _scope_headers(self, method: str) -> dict[str, str]:
        """Slack names the token's granted scopes on every answer to an authenticated call."""
        if method == "apps.connections.open":
            return {"x-oauth-scopes": "connections:write"}
        if self.scopes is None:
            return {}
        return {"x-oauth-scopes": ",".join(self.scopes)}

    def _take_update_slot(self) -> None:
        """Tier 3: at most ``chat_update_per_minute`` updates in any sliding minute."""
        if self.chat_update_per_minute is None:
            return
        now = time.monotonic()
        window = self.minute_seconds
        while self._update_times and self._update_times[0] <= now - window:
            self._update_times.popleft()
        if len(self._update_times) >= self.chat_update_per_minute:
            wait = self._update_times[0] + window - now
            retry_after = max(1, math.ceil(wait))
            raise SlackError("ratelimited", status=429, headers={"Retry-After": str(retry_after)})
        self._update_times.append(now)

    def _take_slot(self, times: deque[float], per_minute: int | None) -> None:
        """A Tier limit: at most ``per_minute`` calls in any sliding minute."""
        if per_minute is None:
            return
        now = time.monotonic()
        while times and times[0] <= now - self.minute_seconds:
            times.popleft()
        if len(times) >= per_minute:
            wait = times[0] + self.minute_seconds - now
            raise SlackError(
                "ratelimited", status=429, headers={"Retry-After": str(max(1, math.ceil(wait)))}
            )
        times.append(now)

    def _record_download(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization")
        self.downloads.append(Download(request.path_qs, auth is not None, auth, request.host))
        self._changed.set()

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        self._record_download(request)
        file_id = request.match_info["key"].partition("-")[2]
        serving = self.file_serving.get(file_id, _Serving())
        if (
            request.headers.get("Authorization") != f"Bearer {self.bot_token}"
            and not serving.public
        ):
            # Real Slack: 200 and an HTML sign-in page, not a 401.
            return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
        if file_id not in self.files:
            return web.Response(status=404, text="file not found", content_type="text/html")
        if serving.redirect_to:
            raise web.HTTPFound(serving.redirect_to)
        if serving.status != 200:
            return web.Response(status=serving.status, text="error", content_type="text/html")
        return await self._send_file(request, file_id, serving)

    async def _send_file(
        self, request: web.Request, file_id: str, serving: _Serving
    ) -> web.StreamResponse:
        """Streams the body in chunks, counting what was written, until the client hangs up."""
        content = self.file_contents[file_id]
        size = max(len(content), serving.padded_to or 0)
        response = web.StreamResponse(headers={"Content-Type": self.files[file_id]["mimetype"]})
        if not serving.chunked:
            response.content_length = size
        await response.prepare(request)
        try:
            sent = 0
            while sent < size:
                chunk = content[sent : sent + _CHUNK]
                chunk += bytes(min(_CHUNK, size - sent) - len(chunk))
                await response.write(chunk)
                sent += len(chunk)
                self.bytes_sent[file_id] += len(chunk)
            await response.write_eof()
            self.sent_in_full.add(file_id)
        except ConnectionError:
            pass  # the client hung up: what a capped download does
        return response

    async def _handle_redirect(self, request: web.Request) -> web.Response:
        """``/redirect?to=URL`` answers 302 to ``URL``; ``&hops=n`` first through n-1 more."""
        self._record_download(request)
        hops = int(request.query.get("hops", "1"))
        if hops > 1:
            raise web.HTTPFound(
                f"/redirect?{urlencode({'to': request.query['to'], 'hops': hops - 1})}"
            )
        raise web.HTTPFound(request.query["to"])

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats(with_text=_truthy(request.query.get("text"))))

    async def _handle_configure(self, request: web.Request) -> web.Response:
        """Change the Tier-3 ``chat.update`` rule at run time: {chat_update_per_minute,
        minute_seconds} (a null per-minute turns enforcement off)."""
        body = await request.json()
        if "chat_update_per_minute" in body:
            self.chat_update_per_minute = body["chat_update_per_minute"]
            self._update_times.clear()
        if "minute_seconds" in body:
            self.minute_seconds = float(body["minute_seconds"])
        if "stream_start_stop_per_minute" in body:
            self.stream_start_stop_per_minute = body["stream_start_stop_per_minute"]
            self._tier2_times.clear()
        if "append_per_minute" in body:
            self.append_per_minute = body["append_per_minute"]
            self._tier4_times.clear()
        return web.json_response(
            {
                "ok": True,
                "chat_update_per_minute": self.chat_update_per_minute,
                "minute_seconds": self.minute_seconds,
            }
        )

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        self._changed.set()
        return web.Response(text="ok")

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _handle_seed_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        message = self.add_user_message(
            body["channel"], body["user"], body["text"], thread_ts=body.get("thread_ts")
        )
        return web.json_response(message)

    async def _handle_push(self, request: web.Request) -> web.Response:
        if self.socket_server is None:
            return web.json_response({"error": "no socket mode server attached"}, status=409)
        body = await request.json()
        envelope_id = await self.socket_server.push(
            body["payload"], envelope_id=body.get("envelope_id")
        )
        return web.json_response({"envelope_id": envelope_id})

    # -- message state --------------------------------------------------------------------

    def _store(
        self,
        channel: str,
        *,
        user: str,
        text: str | None,
        thread_ts: str | None = None,
        markdown_text: str | None = None,
        blocks: list[Any] | None = None,
        files: list[dict[str, Any]] | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        ts = self.next_ts()
        message = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "thread_ts": thread_ts,
            "user": user,
            "bot_id": bot_id,
            "subtype": subtype,
            "text": text,
            "markdown_text": markdown_text,
            "blocks": blocks,
            "files": files,
            "attachments": attachments,
        }
        self.messages[(channel, ts)] = message
        self._timeline[(channel, ts)] = {"posted_at": time.monotonic(), "updates": 0}
        self._update_log[(channel, ts)] = []
        self._changed.set()
        return message

    def _public(self, message: dict[str, Any]) -> dict[str, Any]:
        """A stored message as the API returns it: absent fields left out, thread info added."""
        out = {
            k: v
            for k, v in message.items()
            if v is not None and k not in ("channel", "streamed", "tasks")
        }
        if out.get("text") is None:
            out["text"] = message["markdown_text"] or ""
        replies = [
            m
            for m in self.messages.values()
            if m["channel"] == message["channel"] and m["thread_ts"] == message["ts"]
        ]
        if replies:
            out["thread_ts"] = message["ts"]
            out["reply_count"] = len(replies)
            out["reply_users"] = sorted({m["user"] for m in replies})
            out["latest_reply"] = max((m["ts"] for m in replies), key=_ts_key)
        if message["bot_id"] == self.bot_id:
            out["app_id"] = "A1"
        return out

    # -- Web API methods ------------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"{self.base_url}/",
            "team": "Test",
            "user": "slackbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _content(self, params: dict[str, Any]) -> tuple[str | None, str | None, list[Any] | None]:
        """Validate text/markdown_text/blocks the way chat.postMessage and chat.update do."""
        text = params.get("text") or None
        markdown_text = params.get("markdown_text") or None
        blocks = params.get("blocks") or None
        if markdown_text is not None and (text is not None or blocks is not None):
            raise SlackError("markdown_text_conflict")
        if text is None and markdown_text is None and blocks is None:
            raise SlackError("no_text")
        if text is not None and len(text) > TEXT_LIMIT:
            raise SlackError("msg_too_long")
        if markdown_text is not None and len(markdown_text) > MARKDOWN_TEXT_LIMIT:
            raise SlackError("msg_too_long")
        if blocks is not None:
            _check_message_blocks(blocks)
        return text, markdown_text, blocks

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            raise SlackError("channel_not_found")
        text, markdown_text, blocks = self._content(params)
        message = self._store(
            channel,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            text=text,
            markdown_text=markdown_text,
            blocks=blocks,
            thread_ts=params.get("thread_ts") or None,
        )
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "message": self._public(message),
        }

    def _own_message(self, params: dict[str, Any], refusal: str) -> dict[str, Any]:
        message = self.messages.get((params.get("channel", ""), params.get("ts", "")))
        if message is None:
            raise SlackError("message_not_found")
        if message["user"] != self.bot_user_id:
            raise SlackError(refusal)
        return message

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(params, "cant_update_message")
        if self.is_streaming(message["channel"], message["ts"]):
            raise SlackError("streaming_state_conflict")
        text, markdown_text, blocks = self._content(params)
        # Like Slack, blocks are kept when an update sends only `text`; `markdown_text`
        # becomes the message's content (Slack renders it as its blocks).
        kept = None if markdown_text is not None else message["blocks"]
        message.update(text=text, markdown_text=markdown_text, blocks=blocks or kept)
        key = (message["channel"], message["ts"])
        timeline = self._timeline.setdefault(key, {"updates": 0})
        timeline["updates"] = int(timeline.get("updates", 0)) + 1
        timeline["updated_at"] = time.monotonic()
        self._update_log.setdefault(key, []).append(timeline["updated_at"])
        shown = markdown_text or text or ""
        self._update_texts.setdefault(key, []).append(shown[:300])
        return {
            "ok": True,
            "channel": message["channel"],
            "ts": message["ts"],
            "text": text if text is not None else markdown_text or "",
            "message": self._public(message),
        }

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(params, "cant_delete_message")
        del self.messages[(message["channel"], message["ts"])]
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        """A message only ``user`` sees; Slack answers with a ``message_ts`` and keeps nothing."""
        channel = params.get("channel")
        if not channel:
            raise SlackError("channel_not_found")
        user = params.get("user")
        if not user:
            raise SlackError("user_not_found")
        text, markdown_text, blocks = self._content(params)
        self.ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "text": text,
                "markdown_text": markdown_text,
                "blocks": blocks,
                "thread_ts": params.get("thread_ts") or None,
            }
        )
        return {"ok": True, "message_ts": self.next_ts()}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = params.get("user", "")
        if not user_id or user_id in self.missing_users:
            raise SlackError("user_not_found")
        user = self.users.get(user_id)
        if user is None:
            name = f"user-{user_id}"
            user = {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "real_name": f"User {user_id}",
                "deleted": False,
                "is_bot": False,
                "profile": {
                    "display_name": name,
                    "display_name_normalized": name,
                    "real_name": f"User {user_id}",
                    "real_name_normalized": f"User {user_id}",
                },
            }
        return {"ok": True, "user": user}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """Thread root and replies, oldest first, paginated by a ts cursor.

        ``oldest``/``latest``/``inclusive`` filter every message, the root included; a
        continuation page does not repeat the root (as Slack's do not).
        """
        channel = params.get("channel", "")
        root = self.messages.get((channel, params.get("ts", "")))
        if root is None:
            raise SlackError("thread_not_found")
        if root["thread_ts"] and (channel, root["thread_ts"]) in self.messages:
            root = self.messages[(channel, root["thread_ts"])]
        root_ts = root["ts"]
        thread = sorted(
            (
                m
                for m in self.messages.values()
                if m["channel"] == channel and (m["ts"] == root_ts or m["thread_ts"] == root_ts)
            ),
            key=lambda m: _ts_key(m["ts"]),
        )
        in_range = _ts_range(params)
        selected = [m for m in thread if in_range(_ts_key(m["ts"]))]
        if cursor := params.get("cursor"):
            try:
                after = _ts_key(base64.urlsafe_b64decode(cursor).decode().removeprefix("ts:"))
            except ValueError as e:
                raise SlackError("invalid_cursor") from e
            selected = [m for m in selected if _ts_key(m["ts"]) > after]
        limit = int(params.get("limit") or 1000)
        limit = min(max(limit, 1), 1000)
        page, has_more = selected[:limit], len(selected) > limit
        next_cursor = ""
        if has_more:
            next_cursor = base64.urlsafe_b64encode(f"ts:{page[-1]['ts']}".encode()).decode()
        return {
            "ok": True,
            "messages": [self._public(m) for m in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """A channel's top-level messages, newest first (no pagination: ``limit`` caps it)."""
        channel = params.get("channel", "")
        in_range = _ts_range(params)
        top = sorted(
            (
                m
                for m in self.messages.values()
                if m["channel"] == channel
                and m["thread_ts"] in (None, m["ts"])
                and in_range(_ts_key(m["ts"]))
            ),
            key=lambda m: _ts_key(m["ts"]),
            reverse=True,
        )
        limit = min(max(int(params.get("limit") or 100), 1), 1000)
        return {
            "ok": True,
            "messages": [self._public(m) for m in top[:limit]],
            "has_more": len(top) > limit,
        }

    def add_channel(self, channel_id: str, name: str, **extra: Any) -> dict[str, Any]:
        """Register a channel's `conversations.info` object (unregistered ones get a default)."""
        self.channels[channel_id] = {"id": channel_id, "name": name, **extra}
        return self.channels[channel_id]

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel", "")
        if not channel:
            raise SlackError("channel_not_found")
        info = self.channels.get(channel)
        if info is None:
            is_im = channel.startswith("D")
            info = {"id": channel, "is_im": is_im}
            if not is_im:
                info["name"] = channel.lower()
        return {"ok": True, "channel": info}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(params.get("file", ""))
        if file is None:
            raise SlackError("file_not_found")
        return {"ok": True, "file": file, "comments": [], "response_metadata": {"next_cursor": ""}}

    def _get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        """Step 1 of an external upload: a one-time URL for ``length`` bytes."""
        filename, length = params.get("filename"), params.get("length")
        if not filename or length is None:
            raise SlackError("invalid_arguments")
        file_id = f"F{next(self._file_ids):08d}UP"
        self.uploads[file_id] = {
            "id": file_id,
            "filename": filename,
            "length": int(length),
            "data": None,
            "channel": None,
        }
        return {
            "ok": True,
            "upload_url": f"{self.base_url}/upload/v1/{file_id}",
            "file_id": file_id,
        }

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """Step 2: the bytes, posted to the URL step 1 gave (no token: the URL is the key)."""
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None or upload["data"] is not None:
            return web.Response(status=404, text="not found")
        data = await request.read()
        upload["data"] = data
        upload["headers"] = dict(request.headers)
        return web.Response(text=f"OK - {len(data)}")

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        """Step 3: share the uploaded files in a channel (and thread): one message holds them."""
        files = params.get("files")
        if not isinstance(files, list) or not files:
            raise SlackError("invalid_arguments")
        shared = []
        for entry in files:
            upload = self.uploads.get(str(entry.get("id")))
            if upload is None:
                raise SlackError("file_not_found")
            if upload["data"] is None or len(upload["data"]) != upload["length"]:
                raise SlackError("file_upload_size_mismatch")
            upload["title"] = entry.get("title") or upload["filename"]
            shared.append(upload)
        channel = params.get("channel_id")
        if channel:
            for upload in shared:
                upload["channel"] = channel
                upload["thread_ts"] = params.get("thread_ts")
            public = [{"id": u["id"], "name": u["filename"], "title": u["title"]} for u in shared]
            self._store(
                str(channel),
                user=self.bot_user_id,
                bot_id=self.bot_id,
                text=params.get("initial_comment") or "",
                thread_ts=params.get("thread_ts"),
                files=public,
            )
        return {"ok": True, "files": [{"id": u["id"], "title": u["title"]} for u in shared]}

    def _set_status(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = params.get("channel_id"), params.get("thread_ts")
        if not channel or not thread_ts or "status" not in params:
            raise SlackError("invalid_arguments")
        loading = params.get("loading_messages")
        if loading is not None and (not isinstance(loading, list) or len(loading) > 10):
            raise SlackError("invalid_arguments")
        self.thread_statuses.setdefault((channel, thread_ts), []).append(str(params["status"]))
        return {"ok": True}

    def _sessions_set_status(self, params: dict[str, Any]) -> dict[str, Any]:
        """`agents.sessions.setStatus`: creates the thread's session on first use (title and
        initiator are taken then only), `not_authorized` for an app not declared an agent."""
        if not self.agent_sessions:
            raise SlackError("not_authorized")
        channel, thread_ts = params.get("channel_id"), params.get("thread_ts")
        status = params.get("status")
        if not channel or not thread_ts or status not in SESSION_STATUSES:
            raise SlackError("invalid_arguments")
        title = params.get("title")
        if title is not None and len(str(title)) > 200:
            raise SlackError("invalid_arguments")
        session = self.sessions.get((channel, thread_ts))
        if session is None:
            session = self.sessions[(channel, thread_ts)] = {
                "title": title,
                "initiator": params.get("initiator_user_id"),
                "history": [],
            }
        session["status"] = status
        session["history"].append(status)
        return {"ok": True}

    # -- native streaming -----------------------------------------------------------------

    def _stream_expired(self, stream: dict[str, Any]) -> bool:
        now = time.monotonic()
        return (
            now - stream["started_at"] > self.stream_ttl
            or now - stream["last_at"] > self.stream_idle_ttl
        )

    def _live_stream(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        message = self._own_message(params, "cant_update_message")
        stream = self.streams.get((message["channel"], message["ts"]))
        if stream is None or self._stream_expired(stream):
            self.streams.pop((message["channel"], message["ts"]), None)
            raise SlackError("message_not_in_streaming_state")
        return message, stream

    def _stream_content(self, params: dict[str, Any], stream: dict[str, Any]) -> tuple[str, int]:
        """Check a stream call's `markdown_text` / `chunks` the way Slack does; returns the
        text it adds and the bytes it costs (task cards counted as their JSON)."""
        markdown_text = params.get("markdown_text")
        chunks = params.get("chunks")
        if markdown_text is not None and chunks is not None:
            raise SlackError("invalid_arguments")
        if markdown_text is not None:
            return str(markdown_text), len(str(markdown_text).encode())
        text, size = "", 0
        for chunk in chunks or []:
            if not isinstance(chunk, dict):
                raise SlackError("invalid_chunks")
            kind = chunk.get("type")
            if kind == "markdown_text":
                if not isinstance(chunk.get("text"), str):
                    raise SlackError("invalid_chunks")
                text += chunk["text"]
                size += len(chunk["text"].encode())
            elif kind == "task_update":
                if not chunk.get("id") or not chunk.get("title"):
                    raise SlackError("invalid_chunks")
                if chunk.get("status") not in TASK_STATUSES:
                    raise SlackError("invalid_chunks")
                for source in chunk.get("sources") or []:
                    if (
                        source.get("type") != "url"
                        or not source.get("url")
                        or not source.get("text")
                    ):
                        raise SlackError("invalid_chunks")
                stream["tasks"][chunk["id"]] = dict(chunk)
                size += len(json.dumps(chunk).encode())
            elif kind in ("plan_update", "blocks"):
                size += len(json.dumps(chunk).encode())
            else:
                raise SlackError("invalid_chunks")
        return text, size

    def _grow(self, message: dict[str, Any], stream: dict[str, Any], text: str, size: int) -> None:
        if stream["bytes"] + size > self.stream_byte_limit:
            raise SlackError("msg_too_long")
        stream["bytes"] += size
        stream["last_at"] = time.monotonic()
        message["markdown_text"] = (message["markdown_text"] or "") + text
        key = (message["channel"], message["ts"])
        timeline = self._timeline.setdefault(key, {"updates": 0})
        timeline["updates"] = int(timeline.get("updates", 0)) + 1
        timeline["updated_at"] = stream["last_at"]
        self._update_log.setdefault(key, []).append(stream["last_at"])
        self._update_texts.setdefault(key, []).append((message["markdown_text"] or "")[:300])

    def _chat_start_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            raise SlackError("channel_not_found")
        if not params.get("thread_ts"):
            raise SlackError("invalid_arguments")
        # Required on every start, DMs included (field reports of these errors in DMs).
        if not params.get("recipient_user_id"):
            raise SlackError("missing_recipient_user_id")
        if not params.get("recipient_team_id"):
            raise SlackError("missing_recipient_team_id")
        stream: dict[str, Any] = {"bytes": 0, "tasks": {}}
        text, size = self._stream_content(params, stream)
        message = self._store(
            channel,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            text=None,
            markdown_text="",
            thread_ts=params["thread_ts"],
        )
        stream.update(
            started_at=time.monotonic(),
            last_at=time.monotonic(),
            recipient=(params["recipient_user_id"], params["recipient_team_id"]),
            thread_ts=params["thread_ts"],
        )
        message["streamed"] = True
        message["tasks"] = stream["tasks"]
        self.streams[(channel, message["ts"])] = stream
        self._grow(message, stream, text, size)
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def _chat_append_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        message, stream = self._live_stream(params)
        text, size = self._stream_content(params, stream)
        self._grow(message, stream, text, size)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def _chat_stop_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        message, stream = self._live_stream(params)
        text, size = self._stream_content(params, stream)
        blocks = params.get("blocks")
        if blocks is not None and (not isinstance(blocks, list) or len(blocks) > 50):
            raise SlackError("invalid_blocks")
        self._grow(message, stream, text, size)
        if blocks:
            message["blocks"] = blocks
        del self.streams[(message["channel"], message["ts"])]
        status = params.get("session_status")
        if status is not None:
            if status not in SESSION_STATUSES:
                raise SlackError("invalid_arguments")
            session = self.sessions.get((message["channel"], stream["thread_ts"]))
            if session is not None:
                session["status"] = status
                session["history"].append(status)
        return {
            "ok": True,
            "channel": message["channel"],
            "ts": message["ts"],
            "message": self._public(message),
        }

    def _set_suggested_prompts(self, params: dict[str, Any]) -> dict[str, Any]:
        """Prompts for a thread, or (no ``thread_ts``) pinned to the Messages tab."""
        channel = params.get("channel_id")
        prompts = params.get("prompts")
        if not channel:
            raise SlackError("channel_not_found")
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_SUGGESTED_PROMPTS:
            raise SlackError("invalid_arguments")
        for prompt in prompts:
            if not isinstance(prompt, dict) or not prompt.get("title") or not prompt.get("message"):
                raise SlackError("invalid_arguments")
        key = (str(channel), params.get("thread_ts") or None)
        self.suggested_prompts[key] = {"title": params.get("title"), "prompts": prompts}
        return {"ok": True}

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user = params.get("user_id")
        view = _json_param(params.get("view"))
        if not user:
            raise SlackError("invalid_arguments")
        if user not in self.users:
            raise SlackError("user_not_found")
        if view.get("type") != "home":
            raise SlackError("invalid_arguments")
        published = self._view_object(view)
        self.home_views[str(user)] = published
        return {"ok": True, "view": published}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        trigger = str(params.get("trigger_id") or "")
        view = _json_param(params.get("view"))
        issued = self._triggers.get(trigger)
        if issued is None:
            raise SlackError("invalid_trigger_id")
        if trigger in self._used_triggers:
            raise SlackError("exchanged_trigger_id")
        user, at = issued
        if time.monotonic() - at > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        if view.get("type") != "modal" or not (view.get("title") or {}).get("text"):
            raise SlackError("invalid_arguments")
        if len(view["title"]["text"]) > 24:
            raise SlackError("invalid_arguments")
        self._used_triggers.add(trigger)
        opened = self._view_object(view)
        self.views[opened["id"]] = {**opened, "user": user}
        return {"ok": True, "view": opened}

    def _view_object(self, view: dict[str, Any]) -> dict[str, Any]:
        blocks = view.get("blocks")
        if not isinstance(blocks, list) or len(blocks) > VIEW_BLOCKS_LIMIT:
            raise SlackError("invalid_blocks")
        if len(str(view.get("private_metadata") or "")) > 3000:
            raise SlackError("invalid_arguments")
        view_id = f"V{next(self._view_ids):010d}"
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "blocks": blocks,
            "private_metadata": view.get("private_metadata") or "",
            "callback_id": view.get("callback_id") or "",
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "title": view.get("title"),
            "clear_on_close": False,
            "notify_on_close": bool(view.get("notify_on_close")),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": "A1",
            "external_id": "",
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }

    # -- interactions (what Slack sends the app) --------------------------------------------

    def block_actions_payload(
        self, channel: str, ts: str, *, user: str, action: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``block_actions`` payload of ``user`` clicking ``action`` in message ``ts``."""
        message = self.messages[(channel, ts)]
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel,
            "is_ephemeral": False,
        }
        if message["thread_ts"]:
            container["thread_ts"] = message["thread_ts"]
        return {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": self.team_id},
            "api_app_id": "A1",
            "token": "verification-token",
            "container": container,
            "trigger_id": self.issue_trigger_id(user),
            "team": {"id": self.team_id, "domain": "test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": channel.lower()},
            "message": {**self._public(message), "type": "message"},
            "state": {"values": {}},
            "response_url": f"{self.base_url}/actions/T1/1/{uuid.uuid4().hex}",
            "actions": [{**action, "action_ts": f"{time.time():.6f}"}],
        }  # fmt: skip

    def feedback_click(self, channel: str, ts: str, *, user: str, good: bool) -> dict[str, Any]:
        """The ``block_actions`` payload of a click on the message's 👍 (``good``) or 👎."""
        element = self.feedback_buttons(channel, ts)
        if element is None:
            raise AssertionError(f"message {channel}/{ts} has no feedback buttons")
        button = element["positive_button" if good else "negative_button"]
        action = {
            "type": "feedback_buttons",
            "action_id": element.get("action_id", ""),
            "block_id": element.get("block_id", "feedback"),
            "text": button["text"],
            "value": button["value"],
        }
        return self.block_actions_payload(channel, ts, user=user, action=action)

    def view_submission_payload(
        self, view_id: str, values: dict[str, dict[str, dict[str, Any]]]
    ) -> dict[str, Any]:
        """The ``view_submission`` of an opened modal, by the person it was opened for, with
        ``values`` as ``view.state.values`` (block id → action id → element state)."""
        view = {k: v for k, v in self.views[view_id].items() if k != "user"}
        user = self.views[view_id]["user"]
        return {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "test"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": self.team_id},
            "api_app_id": "A1",
            "token": "verification-token",
            "trigger_id": self.issue_trigger_id(user),
            "view": {**view, "state": {"values": values}},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }  # fmt: skip

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.socket_url is None:
            raise SlackError("fake_socket_url_not_set")
        return {"ok": True, "url": self.socket_url}


def _json_param(value: Any) -> dict[str, Any]:
    """A view argument: slack_sdk sends it as a JSON string (or an object in a JSON body)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_arguments") from None
    if not isinstance(value, dict):
        raise SlackError("invalid_arguments")
    return value


def _check_message_blocks(blocks: Any) -> None:
    """The Block Kit rules a message's blocks break most often: 50 blocks, the ``markdown``
    blocks' 12,000 characters together, ``context_actions`` holding 1-5 feedback or icon
    buttons, and the feedback buttons' own limits (text 75, value 2,000 characters)."""
    if not isinstance(blocks, list) or not blocks or len(blocks) > MESSAGE_BLOCKS_LIMIT:
        raise SlackError("invalid_blocks")
    markdown = 0
    for block in blocks:
        if not isinstance(block, dict) or not block.get("type"):
            raise SlackError("invalid_blocks")
        if block["type"] == "markdown":
            if not isinstance(block.get("text"), str):
                raise SlackError("invalid_blocks")
            markdown += len(block["text"])
        elif block["type"] == "context_actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 5:
                raise SlackError("invalid_blocks")
            for element in elements:
                if element.get("type") not in ("feedback_buttons", "icon_button"):
                    raise SlackError("invalid_blocks")
                if element["type"] == "feedback_buttons":
                    for side in ("positive_button", "negative_button"):
                        button = element.get(side)
                        if not isinstance(button, dict):
                            raise SlackError("invalid_blocks")
                        text = (button.get("text") or {}).get("text")
                        value = button.get("value")
                        if not isinstance(text, str) or not text or len(text) > 75:
                            raise SlackError("invalid_blocks")
                        if not isinstance(value, str) or not value or len(value) > 2000:
                            raise SlackError("invalid_blocks")
    if markdown > MARKDOWN_BLOCKS_LIMIT:
        raise SlackError("invalid_blocks")


def _ts_range(params: dict[str, Any]) -> Callable[[Decimal], bool]:
    """The ``oldest``/``latest``/``inclusive`` filter of the history methods."""
    inclusive = _truthy(params.get("inclusive"))
    oldest = _ts_key(str(params.get("oldest") or "0"))
    latest = _ts_key(str(params["latest"])) if params.get("latest") else None

    def in_range(ts: Decimal) -> bool:
        above = ts > oldest or (inclusive and ts == oldest)
        below = latest is None or ts < latest or (inclusive and ts == latest)
        return above and below

    return in_range


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Merge query string and body, whichever encoding slack_sdk chose.

    AsyncWebClient sends JSON bodies for chat.* and query strings for ``params=`` methods even
    on POST; the sync client and Bolt's responders use forms; file uploads use multipart.
    """
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, FileField):
                    params[key] = value.file.read()
                else:
                    params[key] = value
    for key in _JSON_FIELDS:
        if isinstance(params.get(key), str):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(params[key])
    return params


# -- Socket Mode ------------------------------------------------------------------------------


class FakeSocketModeServer(LocalServer):
    """Slack's Socket Mode WebSocket: says ``hello``, pushes envelopes, records acks.

    slack_sdk's aiohttp client connects with ``autoping=False`` and sends its own pings;
    aiohttp's server side answers them (``autoping=True``) with the same payload, which is what
    the client checks.
    """

    def __init__(self, *, app_id: str = "A1") -> None:
        super().__init__()
        self.app_id = app_id
        self.acks: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self._ws: web.WebSocketResponse | None = None
        self._open: set[web.WebSocketResponse] = set()
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/link", self._handle_ws)
        return app

    async def close(self) -> None:
        for ws in list(self._open):
            await ws.close()
        await super().close()

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/link"

    async def push(
        self,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        type: str = "events_api",
    ) -> str:
        """Send an envelope (``events_api``, or ``interactive`` for a ``block_actions`` or
        ``view_submission`` payload) to the connected client; returns its envelope_id."""
        if self._ws is None or self._ws.closed:
            raise RuntimeError("no Socket Mode client is connected")
        envelope_id = envelope_id or str(uuid.uuid4())
        await self._ws.send_json(
            {
                "envelope_id": envelope_id,
                "payload": payload,
                "type": type,
                "accept_response_payload": type == "interactive",
                "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
            }
        )
        return envelope_id

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does every few hours."""
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            )

    async def wait_connected(self, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no Socket Mode client connected within {timeout}s") from None

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the client's ack of ``envelope_id`` and return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for ack in self.acks:
                if ack.get("envelope_id") == envelope_id:
                    return ack
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"envelope {envelope_id} not acked within {timeout}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._open.add(ws)
        self._ws = ws
        self.connections += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {
                    "host": "applink-fake",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._connected.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                self.received.append(data)
                if "envelope_id" in data:
                    self.acks.append(data)
                self._changed.set()
        finally:
            self._open.discard(ws)
            if self._ws is ws:
                self._ws = None
                self._connected.clear()
        return ws


# -- Events API helpers ----------------------------------------------------------------------


def event_callback(
    event: dict[str, Any],
    *,
    team_id: str = "T1",
    event_id: str | None = None,
    api_app_id: str = "A1",
    bot_user_id: str = "UBOT",
    enterprise_id: str | None = None,
    installed_team_id: str | None = None,
    is_enterprise_install: bool = False,
) -> dict[str, Any]:
    """Wrap ``event`` in the ``event_callback`` envelope Slack POSTs (or pushes via Socket Mode).

    On Enterprise Grid the envelope carries ``enterprise_id``; an org-wide install
    (``is_enterprise_install``) sees events from several workspaces, each with its own
    ``team_id``, while ``authorizations`` names the installation (``installed_team_id``, None
    for an org-wide one)."""
    installed = team_id if installed_team_id is None and not is_enterprise_install else None
    payload = {
        "token": "verification-token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": enterprise_id,
                "team_id": installed_team_id or installed,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": is_enterprise_install,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }
    if enterprise_id is not None:
        payload["enterprise_id"] = enterprise_id
    return payload


def message_event(
    message: dict[str, Any], *, type: str = "message", channel_type: str | None = "channel"
) -> dict[str, Any]:
    """The Slack event for a stored message (``type="app_mention"`` has no ``channel_type``)."""
    event = {
        "type": type,
        "channel": message["channel"],
        "user": message["user"],
        "text": message["text"] or "",
        "ts": message["ts"],
        "event_ts": message["ts"],
        "team": "T1",
    }
    if type == "message" and channel_type is not None:
        event["channel_type"] = channel_type
    for key in ("thread_ts", "files", "attachments", "subtype", "bot_id"):
        if message.get(key) is not None:
            event[key] = message[key]
    return event


def app_home_opened(
    user: str,
    *,
    tab: str,
    channel: str = "D1",
    team_id: str = "T1",
    enterprise_id: str | None = None,
) -> dict[str, Any]:
    """The ``event_callback`` Slack sends when ``user`` opens the app's ``tab`` (``home``,
    ``messages``)."""
    event = {
        "type": "app_home_opened",
        "user": user,
        "channel": channel,
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }
    return event_callback(
        event,
        team_id=team_id,
        enterprise_id=enterprise_id,
        is_enterprise_install=enterprise_id is not None,
    )


def signed_interaction_request(
    signing_secret: str, payload: dict[str, Any], *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an interactive request (``block_actions``, ``view_submission``) as
    Slack sends it: form-encoded ``payload=<json>``, signed over the raw body."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature or "",
    }
    return body, headers


def slash_command(
    text: str,
    *,
    user_id: str = "U1",
    channel_id: str = "C1",
    team_id: str = "T1",
    enterprise_id: str | None = None,
    command: str = "/claude",
    api_app_id: str = "A1",
) -> dict[str, str]:
    """The form fields Slack POSTs for a slash command (all strings, as in the real body)."""
    fields = {
        "token": "verification-token",
        "team_id": team_id,
        "team_domain": "test",
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else channel_id.lower(),
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": f"https://hooks.slack.invalid/commands/{team_id}/1/x",
        "trigger_id": f"1.{int(time.time())}.{uuid.uuid4().hex[:10]}",
    }
    if enterprise_id is not None:
        fields["enterprise_id"] = enterprise_id
        fields["enterprise_name"] = "Test Org"
    return fields


def signed_form_request(
    signing_secret: str, fields: dict[str, str], *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a form-encoded request (a slash command) as Slack signs it."""
    body = urlencode(fields).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature or "",
    }
    return body, headers


def signed_event_request(
    signing_secret: str,
    payload: dict[str, Any],
    *,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an Events API request as Slack signs it, for Bolt's HTTP mode."""
    body = json.dumps(payload).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature or "",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
    if retry_reason is not None:
        headers["X-Slack-Retry-Reason"] = retry_reason
    return body, headers


def agent_session_stopped_event(
    channel: str, thread_ts: str, user: str, streaming_message_ts: list[str]
) -> dict[str, Any]:
    """The ``agent_session_stopped`` event: someone pressed Stop on the thread's session."""
    return {
        "type": "agent_session_stopped",
        "channel": channel,
        "thread_ts": thread_ts,
        "user": user,
        "event_ts": f"{time.time():.6f}",
        "streaming_message_ts": list(streaming_message_ts),
    }
