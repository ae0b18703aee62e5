"""`GET /metrics`: scraped over HTTP after real replies through the harness and a real process."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, Harness, bot_env, start_harness
from fakes.slack import FakeSlack, FakeSocketModeServer, event_callback, message_event
from tests.processes import free_port, wait_healthy

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    """Every sample `url` serves, by name and labels; the body must parse as Prometheus text."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metrics_url(harness: Harness) -> str:
    return harness.url.removesuffix("/slack/events") + "/metrics"


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_reply_moves_the_counters(harness: Harness) -> None:
    before = await scrape(metrics_url(harness))
    assert value(before, "slackbot_replies_total", outcome="done") == 0
    assert value(before, "slackbot_replies_in_flight") == 0

    harness.claude.default = Script(text="Counted answer. " * 20, tokens_per_second=200)
    mention = await harness.mention("count this")
    await harness.slack.wait_for(lambda: harness.bot.conversations.replies.budgets.open_replies)
    during = await scrape(metrics_url(harness))
    assert value(during, "slackbot_replies_in_flight") == 1
    await harness.settled()
    # Slack redelivers the same event: answered once, counted as deduplicated.
    await harness.deliver(mention, event_id=None)
    await harness.settled()

    after = await scrape(metrics_url(harness))
    assert value(after, "slackbot_replies_total", outcome="done") == 1
    assert value(after, "slackbot_replies_in_flight") == 0
    assert value(after, "slackbot_first_text_seconds_count") == 1
    assert value(after, "slackbot_reply_seconds_count") == 1
    assert (
        0
        < value(after, "slackbot_first_text_seconds_sum")
        <= value(after, "slackbot_reply_seconds_sum")
    )
    with sqlite3.connect(harness.bot.settings.db_path) as db:  # what `slackbot usage` sums
        stored = db.execute("SELECT input_tokens, output_tokens FROM usage").fetchone()
    assert value(after, "slackbot_tokens_total", kind="input") == stored[0] > 0
    assert value(after, "slackbot_tokens_total", kind="output") == stored[1] > 0
    assert value(after, "slackbot_events_deduplicated_total") == 1
    assert value(after, "slackbot_claude_errors_total", type="OverloadedError") == 0


async def test_errors_rate_limits_and_budget_waits_are_counted(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    # One edit a second at most: three replies at once must wait for the budget.
    h, runner = await start_harness(
        slack, claude, db_path, edit_budget_per_minute=60.0, edit_burst=1
    )
    try:
        claude.default = Script(text="Waits for the budget. " * 30, tokens_per_second=100)
        slack.fail_next("chat.update", "ratelimited", retry_after=1)
        for n in range(3):
            await h.mention(f"question {n}", channel=f"C{n + 10}")
        await h.settled(timeout=30)
        claude.default = Script(status=529)  # overloaded
        await h.mention("one more")
        await h.settled()
        samples = await scrape(metrics_url(h))
    finally:
        await runner.cleanup()
        await h.close()
        await h.bot.close()
    assert value(samples, "slackbot_slack_ratelimited_total", method="chat.update") == 1
    waits = sum(
        value(samples, "slackbot_edit_budget_waits_total", priority=p)
        for p in ("final", "first_text", "progress")
    )
    assert waits > 0
    assert value(samples, "slackbot_replies_total", outcome="done") == 3
    assert value(samples, "slackbot_replies_total", outcome="incomplete") == 1
    assert value(samples, "slackbot_claude_errors_total", type="OverloadedError") == 1


async def test_two_bots_in_one_process_count_apart(
    slack: FakeSlack, claude: FakeClaude, tmp_path: object
) -> None:
    first, first_runner = await start_harness(slack, claude, f"{tmp_path}/one.db")
    second, second_runner = await start_harness(slack, claude, f"{tmp_path}/two.db")
    try:
        await first.mention("only the first bot hears this")
        await first.settled()
        one, two = await scrape(metrics_url(first)), await scrape(metrics_url(second))
    finally:
        for h, runner in ((first, first_runner), (second, second_runner)):
            await runner.cleanup()
            await h.close()
            await h.bot.close()
    assert value(one, "slackbot_replies_total", outcome="done") == 1
    assert value(two, "slackbot_replies_total", outcome="done") == 0


async def test_socket_mode_serves_metrics_and_health_on_the_metrics_port(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    port = free_port()
    async with FakeSocketModeServer() as socket_server:
        slack.attach_socket_mode(socket_server)
        env = {
            **os.environ,
            **bot_env(slack, claude, db_path),
            "SLACK_APP_TOKEN": slack.app_token,
            "SLACKBOT_METRICS_PORT": str(port),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "slackbot", env=env, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await wait_healthy(port)
            await socket_server.wait_connected()
            message = slack.add_user_message(CHANNEL, "U1", "<@UBOT> hello over a socket")
            await socket_server.push(event_callback(message_event(message, type="app_mention")))
            await slack.wait_for(
                lambda: any(
                    slack.final_text(CHANNEL, m["ts"]) == "Hello from fake Claude."
                    for m in slack.bot_messages(CHANNEL, message["ts"])
                ),
                timeout=20,
            )
            url = f"http://127.0.0.1:{port}/metrics"
            for _ in range(50):  # the final edit lands a moment before the reply is counted
                samples = await scrape(url)
                if value(samples, "slackbot_replies_total", outcome="done") == 1:
                    break
                await asyncio.sleep(0.1)
            assert value(samples, "slackbot_replies_total", outcome="done") == 1
            assert value(samples, "slackbot_tokens_total", kind="output") > 0
        finally:
            proc.terminate()
            await proc.wait()
