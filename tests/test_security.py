"""Secrets stay secret; the HTTP endpoint answers only what it should."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import AsyncIterator

import pytest
from slack_sdk.signature import SignatureVerifier

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, SIGNING_SECRET, Harness, conversation, start_harness
from fakes.slack import FakeSlack
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


@pytest.fixture
async def logged_harness(
    slack: FakeSlack, claude: FakeClaude, db_path: str, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Harness]:
    """A harness whose every log record is captured: the level is set before Bolt's loggers
    are made, as they copy the root logger's level then."""
    caplog.set_level(logging.DEBUG)
    h, runner = await start_harness(slack, claude, db_path)
    try:
        yield h
    finally:
        await h.settled()
        await runner.cleanup()
        await h.close()
        await h.bot.close()


JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("body", "headers", "signed", "status"),
    [
        pytest.param(
            b"\x00\xff\xfe{",
            {"Content-Type": "application/octet-stream"},
            False,
            401,
            id="bytes-that-are-not-text",
        ),
        pytest.param(b"{not json", JSON, False, 401, id="invalid-json"),
        pytest.param(b'{"type": "event_callback"}', JSON, False, 401, id="json-unsigned"),
        pytest.param(
            b"{}",
            {**JSON, "X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
            False,
            401,
            id="timestamp-not-a-number",
        ),
        pytest.param(b"", {}, False, 401, id="empty"),
        pytest.param(b"payload=%7Bnot", FORM, False, 401, id="form-with-broken-payload"),
        pytest.param(b'{"a": "' + b"a" * 900_000 + b'"}', JSON, False, 401, id="big-unsigned"),
        pytest.param(b"[" + b" " * 2 * 1024 * 1024 + b"]", JSON, False, 413, id="huge"),
        # signed (so from Slack) yet malformed: Bolt's parsing raised on each
        pytest.param(b"{not json", JSON, True, 400, id="signed-invalid-json"),
        pytest.param(b"[1, 2]", JSON, True, 400, id="signed-json-array"),
        pytest.param(b"payload=%7Bnot", FORM, True, 400, id="signed-form-with-broken-payload"),
    ],
)
async def test_a_bad_body_gets_a_4xx_and_at_most_one_short_log_line(
    logged_harness: Harness,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str],
    signed: bool,
    status: int,
) -> None:
    if signed:
        stamp = str(int(time.time()))
        signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=stamp, body=body)
        headers = {**headers, "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
    harness = logged_harness
    caplog.clear()
    data = io.BytesIO(body)  # raw bytes this big make aiohttp warn
    async with harness.session.post(harness.url, data=data, headers=headers) as response:
        assert response.status == status
    assert len(caplog.records) <= 1
    assert all(r.exc_info is None and len(r.getMessage()) < 120 for r in caplog.records)
    assert "Traceback" not in caplog.text
    # the bot still takes Slack's events
    harness.claude.default = Script(text="ok")
    await harness.mention("still there?")
    await harness.settled()
    assert harness.texts(CHANNEL, None)


async def test_conversations_do_not_leak_between_channels(harness: Harness) -> None:
    harness.claude.default = Script(text="ok")
    await harness.mention("secret plan for channel one", channel=CHANNEL)
    await harness.settled()
    await harness.mention("what do you know?", channel="C2")
    await harness.settled()
    texts = [b["text"] for m in conversation(harness.claude.requests[-1]) for b in m["content"]]
    assert texts == ["Alice: what do you know?"]
