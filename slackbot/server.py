"""Start-up: create the long-lived clients once, recover, then serve HTTP or Socket Mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import aiohttp
import httpx2  # the HTTP client library anthropic is built on: its Timeout type
from aiohttp import web
from anthropic import AsyncAnthropic, DefaultAioHttpClient
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncServerErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import retention
from slackbot.app import build_app
from slackbot.app_home import AppHome
from slackbot.attachments import Attachments
from slackbot.channels import Channels
from slackbot.claude import Claude
from slackbot.code_files import CodeFiles
from slackbot.config import Settings
from slackbot.conversation import Conversations
from slackbot.edit_budget import EditBudgets
from slackbot.errors import ConfigError
from slackbot.feedback import FeedbackDesk
from slackbot.metrics import CONTENT_TYPE, Metrics
from slackbot.model_lookup import learn_model
from slackbot.people import People
from slackbot.reply_choice import ChosenReplies
from slackbot.session_status import SessionStatus
from slackbot.slack_calls import CountRateLimits
from slackbot.slack_files import files_info_from
from slackbot.sqlite_store import SqliteStore
from slackbot.store import Store
from slackbot.update_reply import UpdateReplies

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 20.0


@dataclass
class Bot:
    """Everything a running bot holds; `close()` releases it."""

    settings: Settings
    store: Store
    session: aiohttp.ClientSession
    slack: AsyncWebClient
    anthropic: AsyncAnthropic
    conversations: Conversations
    app: AsyncApp
    metrics: Metrics
    #: The replies and Slack's per-workspace budgets behind them (split among live instances).
    replies: ChosenReplies
    #: SIGTERM came: `/healthz` says 503 so the load balancer moves on; events still answered.
    draining: bool = False

    async def close(self) -> None:
        await self.anthropic.close()
        await self.session.close()
        await self.store.close()


async def open_store(settings: Settings) -> Store:
    """PostgreSQL when `DATABASE_URL` is set, else the SQLite file at `SLACKBOT_DB`."""
    if settings.database_url:
        # Imported here: the driver and its libraries cost a SQLite bot ~20 MB of memory.
        from slackbot.postgres_store import PostgresStore

        return await PostgresStore.open(
            settings.database_url, instance_timeout=settings.instance_timeout
        )
    return await SqliteStore.open(settings.db_path)


async def create_bot(
    settings: Settings,
    *,
    anthropic_max_retries: int = 2,
    store: Store | None = None,
    slack_timeout: float = 60.0,
) -> Bot:
    store = store or await open_store(settings)
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=slack_timeout),
        # aiohttp's default of 100 connections queued half of a 200-mention burst's placeholders
        # behind the other half; the Anthropic client allows 1,000 too.
        connector=aiohttp.TCPConnector(limit=1000),
    )
    slack = AsyncWebClient(
        token=settings.slack_bot_token, base_url=settings.slack_api_url, session=session
    )
    # Connection errors are retried by default; a passing 5xx from Slack should not cost a
    # reply its placeholder or its final text either. Rate limits are handled where the
    # policy differs (an intermediate edit is dropped, a final one waits: see reply.py).
    slack.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    metrics = Metrics()  # this bot's own registry: several bots in one process count apart
    slack.retry_handlers.insert(0, CountRateLimits(metrics.slack_rate_limited))
    anthropic = AsyncAnthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url,
        max_retries=anthropic_max_retries,
        # A stream that stalls (no byte for this long) ends the reply with a note instead of
        # leaving "Thinking…" up for the SDK's default ten minutes.
        timeout=httpx2.Timeout(600.0, connect=10.0, read=settings.claude_read_timeout),
        # aiohttp underneath instead of httpcore/anyio: reading a streamed reply costs about
        # half the CPU, which is what limits how many replies one process can stream at once.
        http_client=DefaultAioHttpClient(),
    )
    try:
        attachments = Attachments(
            session=session,
            bot_token=settings.slack_bot_token,
            trusted_hosts=[settings.slack_api_url, *settings.slack_file_hosts],
            max_bytes=settings.max_file_bytes,
            files_info=files_info_from(slack),
            max_text_bytes=settings.max_text_file_bytes,
        )
    except ValueError as exc:  # a malformed SLACK_FILE_HOSTS entry
        await session.close()
        await store.close()
        raise ConfigError(f"SLACK_FILE_HOSTS: {exc}") from None
    budgets = EditBudgets(
        settings.edit_budget_per_minute, settings.edit_burst, on_wait=metrics.budget_waited
    )
    # Turns from their arrival to their final text, whichever way they stream.
    metrics.count_in_flight(lambda: len(conversations.stops))
    status = SessionStatus(slack, budgets)
    replies = ChosenReplies(
        slack,
        UpdateReplies(slack, budgets, interval=settings.edit_interval),
        status,
        streaming=settings.streaming,
    )
    conversations = Conversations(
        settings=settings,
        metrics=metrics,
        client=slack,
        store=store,
        claude=Claude(
            client=anthropic,
            model=settings.claude_model,
            max_tokens=settings.claude_max_tokens,
            system=settings.system_prompt,
        ),
        people=People(slack),
        channels=Channels(slack),
        attachments=attachments,
        replies=replies,
        code_files=CodeFiles(anthropic, slack, max_bytes=settings.max_file_bytes)
        if "code_execution" in settings.tools
        else None,
        status=status,
    )
    home = AppHome(
        settings,
        client=slack,
        store=store,
        people=conversations.people,
        tasks=conversations.tasks,  # drained on shutdown with the replies
        model=lambda: conversations.claude.model,
    )
    desk = FeedbackDesk(slack, store, conversations.tasks)
    app = build_app(settings, client=slack, conversations=conversations, desk=desk, home=home)
    return Bot(settings, store, session, slack, anthropic, conversations, app, metrics, replies)


#: The largest request body accepted (aiohttp's default, made explicit); above it aiohttp
#: answers 413. Slack's events, a 40,000-character message with its rich-text blocks included,
#: stay below it.
MAX_REQUEST_BYTES = 1024 * 1024


def web_app(bot: Bot) -> web.Application:
    """`POST /slack/events` for Slack, `GET /healthz` for the host's health checks and
    `GET /metrics` for Prometheus."""
    app = bot.app
    secret = bot.settings.slack_signing_secret
    verifier = SignatureVerifier(secret) if secret else None

    async def events(request: web.Request) -> web.Response:
        # The signature is checked here, before anything parses the body: Bolt parses first
        # (a malformed body raised, a 500 with a traceback in the log, for anyone to send) and
        # logs a refused body whole.
        body = await request.read()  # above MAX_REQUEST_BYTES aiohttp answers 413 itself
        if verifier is not None and not _signed_by_slack(verifier, body, request):
            log.info("refused a request to /slack/events: no valid Slack signature")
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_request = await to_bolt_request(request)
        except Exception as exc:  # signed yet malformed: not JSON, not an object, …
            log.info("refused a request to /slack/events: malformed body (%s)", type(exc).__name__)
            return web.json_response({"error": "malformed request"}, status=400)
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    application = monitoring_app(bot)
    application.router.add_post("/slack/events", events)
    return application


def monitoring_app(bot: Bot) -> web.Application:
    """`GET /healthz` and `GET /metrics`: on their own at `SLACKBOT_METRICS_PORT` (Socket
    Mode has no other listener), and part of the HTTP mode app."""

    async def healthz(_: web.Request) -> web.Response:
        # 503: this bot can answer no one (its store is closed or stuck); the host may restart it.
        if bot.draining:  # shutting down: send new work elsewhere (what comes is still answered)
            return web.json_response({"ok": False, "reason": "draining"}, status=503)
        if await bot.store.healthy():
            return web.json_response({"ok": True})
        return web.json_response({"ok": False, "reason": "store not answering"}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=bot.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    application = web.Application(client_max_size=MAX_REQUEST_BYTES)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/metrics", metrics)
    return application


def _signed_by_slack(verifier: SignatureVerifier, body: bytes, request: web.Request) -> bool:
    try:
        return verifier.is_valid(
            body,
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
        )
    except ValueError:  # a timestamp that is no number, a body that is not UTF-8
        return False


async def start_socket_mode(bot: Bot) -> AsyncSocketModeHandler:
    """Connect to Slack over Socket Mode (apps.connections.open, then a WebSocket)."""
    handler = AsyncSocketModeHandler(bot.app, bot.settings.slack_app_token)
    await handler.connect_async()
    log.info("Socket Mode connected; waiting for events")
    return handler


async def start_monitoring(bot: Bot, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """`/healthz` and `/metrics` on `port` (`SLACKBOT_METRICS_PORT`)."""
    runner = web.AppRunner(monitoring_app(bot), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics and health on port %d (GET /metrics, GET /healthz)", port)
    return runner


async def start_http(bot: Bot, host: str = "0.0.0.0") -> web.AppRunner:
    runner = web.AppRunner(web_app(bot), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, bot.settings.port).start()
    log.info("HTTP mode: listening on port %d (POST /slack/events)", bot.settings.port)
    return runner


async def prepare(bot: Bot) -> None:
    """Learn which model to use and who the bot is, and close replies a crash left unfinished,
    before taking events. Raises `ModelRefused` (a `ConfigError`) for a retired or unknown
    CLAUDE_MODEL."""
    limits = await learn_model(bot.anthropic, bot.settings)
    bot.conversations.use_model(limits)
    bot.conversations.attachments.use_model(limits)
    log.info(
        "model %s: %d-token window, %d output tokens per reply (%s)",
        limits.model,
        limits.max_input_tokens,
        bot.conversations.claude.max_tokens,
        "from the Models API" if limits.from_api else "assumed",
    )
    try:
        auth = await bot.slack.auth_test()
    except SlackApiError as exc:
        raise ConfigError(
            f"SLACK_BOT_TOKEN was refused by Slack ({exc.response.get('error')})"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ConfigError(
            f"could not reach Slack at SLACK_API_URL={bot.settings.slack_api_url} ({exc})"
        ) from None
    bot.conversations.bot_user_id = auth.get("user_id")
    # Who counts as external is decided against the installation itself, not an envelope.
    bot.conversations.access.home_team = auth.get("team_id") or None
    bot.conversations.access.home_enterprise = auth.get("enterprise_id") or None
    log.info("connected to Slack as %s (%s)", auth.get("user"), auth.get("team"))
    workspace = auth.get("enterprise_id") or auth.get("team_id")
    if workspace and await bot.store.adopt_workspace(str(workspace)):
        log.info("conversations keyed by the installation %s from now on", workspace)
    if bot.settings.retention_days is not None:
        await retention.prune(bot.store, bot.settings.retention_days)
    await bot.conversations.recover()


async def serve(settings: Settings) -> None:
    bot = await create_bot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    monitoring: web.AppRunner | None = None
    watching: asyncio.Task[None] | None = None
    listening: asyncio.Task[None] | None = None
    pruning: asyncio.Task[None] | None = None
    try:
        await prepare(bot)
        if settings.retention_days is not None:
            pruning = asyncio.create_task(
                retention.keep_pruning(bot.store, settings.retention_days)
            )
        if bot.store.shared:
            watching = asyncio.create_task(watch_instances(bot), name="watch instances")
            listening = asyncio.create_task(take_stops(bot), name="stops from other instances")
        if settings.metrics_port is not None:
            monitoring = await start_monitoring(bot, settings.metrics_port)
        # Hosts send SIGTERM and wait ~30 s: the replies in flight finish meanwhile (one that
        # doesn't is closed with a note at the next start, or by another instance). In HTTP
        # mode the listener stays open while draining, /healthz answering 503 so the load
        # balancer moves on, and whatever still arrives is answered.
        if settings.socket_mode:
            handler = await start_socket_mode(bot)
            await stop.wait()
            bot.draining = True
            await handler.close_async()
            unfinished = await bot.conversations.drain(timeout=SHUTDOWN_GRACE_SECONDS)
        else:
            runner = await start_http(bot)
            await stop.wait()
            bot.draining = True
            unfinished = await bot.conversations.drain(timeout=SHUTDOWN_GRACE_SECONDS)
            await runner.cleanup()
        if unfinished:
            log.warning("stopping with %d reply(ies) unfinished", unfinished)
    finally:
        if pruning is not None:
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
        for task in (watching, listening):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if monitoring is not None:
            await monitoring.cleanup()
        await bot.close()


async def take_stops(bot: Bot) -> None:
    """Many instances: a Stop (Slack's, or a click) that reached another instance is passed on
    through the database, and the instance streaming that reply stops it."""
    async for payload in bot.store.stop_requests():
        await bot.conversations.take_relayed_stop(payload)


async def watch_instances(bot: Bot) -> None:
    """Many instances on one database: each takes an equal part of Slack's per-workspace
    budgets, and what one that went silent left (replies mid-stream, messages acknowledged but
    not begun) is closed or answered by a live one, within about `SLACKBOT_INSTANCE_TIMEOUT`
    of its last heartbeat. Not while draining: this one is leaving."""
    every = max(0.5, bot.settings.instance_timeout / 3)
    while not bot.draining:
        try:
            bot.replies.split_among(await bot.store.live_instances())
        except Exception as exc:  # the database is away: keep the last split
            log.warning("could not count the live instances: %r", exc)
        await asyncio.sleep(every)
        if bot.draining:
            return
        try:
            await bot.conversations.recover()
        except Exception as exc:  # the database is away: the next round tries again
            log.warning("could not look for a silent instance's work: %r", exc)
