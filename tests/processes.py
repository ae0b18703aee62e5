"""Real processes a test runs: the bot itself (`python -m slackbot`), and one holding SQLite's
write lock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from fakes.claude import FakeClaude
from fakes.harness import CHANNEL, SIGNING_SECRET, bot_env
from fakes.slack import FakeSlack, event_callback, message_event, signed_event_request

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.asynccontextmanager
async def write_lock_held(path: str) -> AsyncIterator[None]:
    """Another process holds the database's write lock (`BEGIN EXCLUSIVE`) until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCKER,
        path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"locked\n"
        yield
    finally:
        proc.stdin.close()
        await proc.wait()


@contextlib.asynccontextmanager
async def bot_process(
    slack: FakeSlack, claude: FakeClaude, db_path: str, **settings: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """`python -m slackbot` in HTTP mode as its own process, pointed at the fakes (`settings`:
    more environment, e.g. `DATABASE_URL`); yields it once healthy, and kills it on the way
    out if the test has not ended it."""
    port = free_port()
    env = {**os.environ, **bot_env(slack, claude, db_path), "PORT": str(port), **settings}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slackbot", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_healthy(port)
        yield proc, port
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def mention_over_http(
    slack: FakeSlack, port: int, text: str, *, thread_ts: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A person mentions the bot; Slack delivers the signed event. Returns message, payload."""
    message = slack.add_user_message(CHANNEL, "U1", f"<@UBOT> {text}", thread_ts=thread_ts)
    payload = event_callback(message_event(message, type="app_mention"))
    await deliver_over_http(port, payload)
    return message, payload


async def deliver_over_http(port: int, payload: dict[str, Any], *, retry_num: int = 0) -> None:
    """Slack delivers a signed event to the bot on `port` (again, with `retry_num`)."""
    body, headers = signed_event_request(
        SIGNING_SECRET,
        payload,
        retry_num=retry_num or None,
        retry_reason="http_timeout" if retry_num else None,
    )
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/slack/events"
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(port: int, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the bot never became healthy")
            await asyncio.sleep(0.1)
