"""Secrets stay secret; the HTTP endpoint answers only what it should."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from fakes.claude import Script
from fakes.harness import CHANNEL, Harness
from slackbot.logs import RedactSecrets
from slackbot.sqlite_store import SqliteStore
from tests.processes import write_lock_held


def test_redaction_filter_masks_tokens_and_keys() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "auth %s %s", ("xoxb-123-abc", "sk-ant-api03-zzz"), None
    )
    RedactSecrets().filter(record)
    assert record.getMessage() == "auth xoxb-*** sk-ant-***"


async def test_no_token_or_key_in_logs_even_at_debug(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness.claude.queue.append(Script(status=529))
    await harness.mention("first")
    await harness.settled()
    await harness.mention("second")
    await harness.settled()
    for record in caplog.records:
        message = record.getMessage()
        assert harness.slack.bot_token not in message
        assert "sk-ant-test" not in message


async def test_healthz_and_unknown_routes(harness: Harness) -> None:
    base = harness.url.removesuffix("/slack/events")
    async with harness.session.get(f"{base}/healthz") as response:
        assert response.status == 200
        assert (await response.json()) == {"ok": True}
    async with harness.session.get(f"{base}/slack/events") as response:
        assert response.status == 405


async def health(harness: Harness) -> tuple[int, dict[str, object]]:
    base = harness.url.removesuffix("/slack/events")
    async with harness.session.get(f"{base}/healthz") as response:
        return response.status, await response.json()


async def test_healthz_is_503_once_the_store_is_closed(harness: Harness) -> None:
    await harness.bot.store.close()
    assert await health(harness) == (503, {"ok": False, "reason": "store not answering"})


async def test_healthz_is_503_while_the_store_does_not_answer(harness: Harness) -> None:
    store = harness.bot.store
    assert isinstance(store, SqliteStore)
    release = threading.Event()
    stuck = asyncio.ensure_future(store._run(release.wait, 10))  # the store thread is stuck
    try:
        status, body = await asyncio.wait_for(health(harness), 5)
        assert (status, body["ok"]) == (503, False)
    finally:
        release.set()
        await stuck
    assert await health(harness) == (200, {"ok": True})


async def test_healthz_stays_200_while_another_process_holds_the_write_lock(
    harness: Harness,
) -> None:
    store = harness.bot.store
    assert isinstance(store, SqliteStore)
    async with write_lock_held(store.path):
        assert await health(harness) == (200, {"ok": True})


async def test_url_verification_challenge(harness: Harness) -> None:
    response = await harness.post_event(
        {"type": "url_verification", "challenge": "abc123", "token": "x"}
    )
    assert response.status == 200


async def test_conversations_do_not_leak_between_channels(harness: Harness) -> None:
    harness.claude.default = Script(text="ok")
    await harness.mention("secret plan for channel one", channel=CHANNEL)
    await harness.settled()
    await harness.mention("what do you know?", channel="C2")
    await harness.settled()
    texts = [b["text"] for m in harness.claude.requests[-1]["messages"] for b in m["content"]]
    assert texts == ["Alice: what do you know?"]
