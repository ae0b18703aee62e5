"""`slackbot check`: each thing the bot needs, tried once with a short timeout, one row each.

An operator runs it before the first start, after changing a setting, or when the bot does not
answer: the settings, the bot token and its scopes, the app token (Socket Mode) or the signing
secret (HTTP mode), the model, and the database. Each row says what was found and, when it is
wrong, what to do. No secret is printed: rows carry Slack's error codes and exception class
names, never a token, and the whole table goes through the log's secret mask as well.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import anthropic
import httpx2
import sqlite_utils
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot.config import Settings
from slackbot.errors import AlreadyRunning, ConfigError
from slackbot.logs import mask_secrets
from slackbot.migrations import POSTGRES, migrations
from slackbot.model_lookup import learn_model
from slackbot.scopes import missing_scopes
from slackbot.sqlite_store import SqliteStore

#: Each check gives up after this many seconds (the network calls inside it sooner).
CHECK_TIMEOUT = 10.0
#: The Slack and Anthropic calls' own timeout, inside `CHECK_TIMEOUT`.
CALL_TIMEOUT = 5.0
#: Slack's signing secrets are 32 lowercase hexadecimal characters (Basic Information → App
#: Credentials); no API can verify one, so its shape is all that can be checked.
SIGNING_SECRET_SHAPE = re.compile(r"[0-9a-f]{32}")

Status = Literal["ok", "FAIL", "skip"]


@dataclass(frozen=True)
class Result:
    """One row: the check, how it went (`skip`: does not apply here), and what to do."""

    check: str
    status: Status
    detail: str

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"


def ok(check: str, detail: str) -> Result:
    return Result(check, "ok", detail)


def fail(check: str, detail: str) -> Result:
    return Result(check, "FAIL", detail)


def skip(check: str, detail: str) -> Result:
    return Result(check, "skip", detail)


def table(results: list[Result]) -> str:
    """The rows, aligned, under a header line; masked, whatever a detail carries."""
    width = max(len("check"), *(len(r.check) for r in results))
    lines = [f"{'check':<{width}}  result  what was found / what to do"]
    lines += [f"{r.check:<{width}}  {r.status:<6}  {r.detail}" for r in results]
    return mask_secrets("\n".join(lines))


async def run_checks(settings: Settings) -> list[Result]:
    """Every check, in order, each bounded by `CHECK_TIMEOUT`. The scopes row reads the bot
    token's `auth.test` answer; the rest stand alone."""
    async with aiohttp.ClientSession() as session:
        slack = AsyncWebClient(
            token=settings.slack_bot_token,
            base_url=settings.slack_api_url,
            session=session,
            timeout=int(CALL_TIMEOUT),
        )
        try:
            token, granted = await asyncio.wait_for(bot_token(slack), CHECK_TIMEOUT)
        except TimeoutError:
            token, granted = _timed_out("bot token"), None
        return [
            token,
            scopes(granted, token_ok=token.passed),
            await _bounded("app token", lambda: app_token(settings, session)),
            signing_secret(settings),
            await _bounded("model", lambda: model(settings)),
            await _bounded("database", lambda: database(settings)),
        ]


async def _bounded(name: str, check: Callable[[], Awaitable[Result]]) -> Result:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except TimeoutError:
        return _timed_out(name)


def _timed_out(name: str) -> Result:
    return fail(name, f"no answer within {CHECK_TIMEOUT:.0f} s: check the network")


# -- Slack ------------------------------------------------------------------------------------


async def bot_token(slack: AsyncWebClient) -> tuple[Result, str | None]:
    """`auth.test`: Slack takes the token and says who the bot is and where; its answer's
    `x-oauth-scopes` header lists the scopes the token was granted."""
    try:
        auth = await slack.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error")
        return fail(
            "bot token",
            f"Slack refused SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth Token (xoxb-…) "
            "from OAuth & Permissions, reinstalling the app if it was revoked",
        ), None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return fail(
            "bot token",
            f"could not reach Slack at SLACK_API_URL ({type(exc).__name__}): check the network",
        ), None
    found = f"@{auth.get('user')} in {auth.get('team')} ({auth.get('team_id')})"
    return ok("bot token", found), (auth.headers or {}).get("x-oauth-scopes")


def scopes(granted: str | None, *, token_ok: bool) -> Result:
    """The scopes Slack granted the token against the ones manifest.yml requests."""
    if not token_ok:
        return skip("scopes", "needs a bot token Slack accepts")
    if granted is None:
        return fail(
            "scopes",
            "Slack's answer did not say which scopes the token has (no x-oauth-scopes header): "
            "is something between the bot and SLACK_API_URL dropping headers?",
        )
    missing = missing_scopes(granted)
    if missing:
        return fail(
            "scopes",
            f"the token lacks {', '.join(missing)}: add them under OAuth & Permissions → Bot "
            "Token Scopes (or paste manifest.yml again) and reinstall the app",
        )
    return ok("scopes", "every scope manifest.yml requests is granted")


async def app_token(settings: Settings, session: aiohttp.ClientSession) -> Result:
    """Socket Mode: `apps.connections.open` hands the app token a WebSocket URL (not opened)."""
    if not settings.socket_mode:
        return skip("app token", "HTTP mode (SLACK_APP_TOKEN is not set)")
    client = AsyncWebClient(
        token=settings.slack_app_token,
        base_url=settings.slack_api_url,
        session=session,
        timeout=int(CALL_TIMEOUT),
    )
    try:
        await client.apps_connections_open(app_token=settings.slack_app_token or "")
    except SlackApiError as exc:
        error = exc.response.get("error")
        return fail(
            "app token",
            f"Slack refused SLACK_APP_TOKEN ({error}): generate an app-level token with the "
            "connections:write scope (Basic Information → App-Level Tokens) and turn Socket "
            "Mode on",
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return fail("app token", f"could not reach Slack ({type(exc).__name__})")
    return ok("app token", "Socket Mode: Slack opens connections for it")


def signing_secret(settings: Settings) -> Result:
    """HTTP mode: the secret is there and shaped like Slack's (no API can verify it)."""
    secret = settings.slack_signing_secret
    if settings.socket_mode:
        return skip("signing secret", "Socket Mode does not use it")
    if not secret:
        return fail("signing secret", "SLACK_SIGNING_SECRET is not set: HTTP mode needs it")
    if not SIGNING_SECRET_SHAPE.fullmatch(secret):
        return fail(
            "signing secret",
            f"SLACK_SIGNING_SECRET is not 32 hexadecimal characters ({len(secret)} characters): "
            "copy the Signing Secret from Basic Information → App Credentials",
        )
    return ok("signing secret", "set, shaped like a Slack signing secret (Slack alone verifies it)")


# -- Claude -----------------------------------------------------------------------------------


async def model(settings: Settings) -> Result:
    """The Models API: the model exists, its lifecycle, its window; the key is taken."""
    client = anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url,
        max_retries=0,
        timeout=httpx2.Timeout(CALL_TIMEOUT),
    )
    try:
        limits = await learn_model(client, settings)
    except ConfigError as exc:  # `ModelRefused`: retired, unknown, or the key refused
        return fail("model", str(exc))
    finally:
        await client.close()
    if not limits.from_api:
        return fail(
            "model",
            f"the Models API did not answer about {settings.claude_model}: check "
            "ANTHROPIC_BASE_URL and the network (the bot would assume a "
            f"{limits.max_input_tokens:,}-token window)",
        )
    detail = f"{limits.model}: {limits.lifecycle}, {limits.max_input_tokens:,}-token window"
    if limits.model != settings.claude_model:
        detail += f" (the built-in {settings.claude_model} is gone: set CLAUDE_MODEL to choose)"
    elif limits.lifecycle == "deprecated":
        detail += ": choose a newer CLAUDE_MODEL soon"
    return ok("model", detail)


# -- the database -----------------------------------------------------------------------------


async def database(settings: Settings) -> Result:
    """The bot's database opens as at start (migrations applied) and answers: PostgreSQL at
    `DATABASE_URL` when it is set, else SQLite at `SLACKBOT_DB`."""
    if settings.database_url:
        return await postgres_database(settings.database_url)
    return await sqlite_database(settings.db_path)


async def postgres_database(url: str) -> Result:
    """Opened with the store's own `open` (reachable within its start-up limit, migrated under
    its lock, so a running bot beside it is no problem), then written to in a transaction that
    is rolled back."""
    from slackbot.postgres_store import PostgresStore, masked

    where = masked(url)
    try:
        store = await PostgresStore.open(url, connect_seconds=CALL_TIMEOUT, register=False)
    except ConfigError as exc:  # unreachable: the one line the start would print
        return fail("database", str(exc))
    except Exception as exc:
        return fail("database", f"DATABASE_URL: {where} cannot be migrated ({_first_line(exc)})")
    try:
        if not await store.healthy():
            return fail("database", f"DATABASE_URL: {where} does not answer a query")
        applied = await store.migrated_now()
        writable = await store.can_write()
    finally:
        await store.close()
    if not writable:
        return fail("database", f"DATABASE_URL: {where} is read-only for this user")
    known = len(POSTGRES)
    if applied:
        return ok("database", f"{where}: {len(applied)} of {known} migrations applied now")
    return ok("database", f"{where}: writable, schema up to date ({known} migrations)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def sqlite_database(path: str) -> Result:
    """Opened with the store's own `open`, which creates or migrates it as a start does (a
    fresh file and an older schema pass) and writes to it; a file a running bot holds is in
    that bot's hands, and passes."""
    known = len(POSTGRES)  # the one list of steps, both backends'
    try:
        pending = await asyncio.to_thread(_pending_migrations, path)
        store = await SqliteStore.open(path)
    except AlreadyRunning:
        return ok(
            "database",
            f"{path}: in use by a running slackbot (which applied its migrations at start)",
        )
    except (sqlite3.Error, OSError) as exc:
        return fail(
            "database",
            f"{path} cannot be opened for writing ({type(exc).__name__}: {exc}): check SLACKBOT_DB"
            " and the directory's permissions",
        )
    try:
        if not await store.healthy():
            return fail("database", f"{path} does not answer a query: is another process on it?")
    finally:
        await store.close()
    if pending is None:
        return ok("database", f"{path}: created, {known} migrations applied")
    if pending:
        return ok("database", f"{path}: older schema, {pending} of {known} migrations applied now")
    return ok("database", f"{path}: writable, schema up to date ({known} migrations)")


def _pending_migrations(path: str) -> int | None:
    """How many migrations the file lacks, read without writing to it; None: no file yet."""
    if not os.path.exists(path):
        return None
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return len(migrations.pending(sqlite_utils.Database(conn)))
    finally:
        conn.close()
