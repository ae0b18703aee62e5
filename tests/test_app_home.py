"""The Messages tab's suggested prompts and the Home tab, through `app_home_opened` events sent
to the real Bolt app over signed HTTP."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, DM, Harness, start_harness
from fakes.slack import FakeSlack
from slackbot import messages
from slackbot.app_home import start_of_today
from slackbot.config import load_settings
from slackbot.errors import ConfigError

PROMPTS = "assistant.threads.setSuggestedPrompts"


def view_text(view: dict[str, Any]) -> str:
    texts = []
    for block in view["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        for element in block.get("elements", []):
            texts.append(element.get("text", ""))
    return "\n".join(texts)


def old_usage(db_path: str, *, user: str, days_ago: float, **tokens: int) -> None:
    conn = sqlite3.connect(db_path)
    try:
        row = {
            "team": "T1",
            "channel": CHANNEL,
            "user_id": user,
            "model": "claude-sonnet-5-5",
            "line": "sonnet",
            "created_at": time.time() - days_ago * 86400,
            **tokens,
        }
        conn.execute(
            f"INSERT INTO usage ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
        conn.commit()
    finally:
        conn.close()


def recorded_tokens(db_path: str, *, since: float) -> int:
    conn = sqlite3.connect(db_path)
    try:
        (total,) = conn.execute(
            "SELECT SUM(input_tokens + cache_creation_input_tokens + cache_read_input_tokens"
            " + output_tokens) FROM usage WHERE user_id='U1' AND created_at >= ?",
            [since],
        ).fetchone()
        return int(total)
    finally:
        conn.close()


async def test_messages_tab_gets_the_built_in_prompts_once(harness: Harness) -> None:
    response = await harness.open_app_home("U1", tab="messages", channel=DM)
    assert response.status == 200
    [call] = await harness.slack.wait_for(
        lambda: harness.slack.calls_to("assistant.threads.setSuggestedPrompts")
    )
    assert call.error is None
    assert "thread_ts" not in call.params and call.params["channel_id"] == DM
    prompts = call.params["prompts"]
    assert 3 <= len(prompts) <= 4
    assert [(p["title"], p["message"]) for p in prompts] == list(messages.SUGGESTED_PROMPTS)
    assert harness.slack.suggested_prompts[(DM, None)]["prompts"] == prompts
    # opening the tab again does not set them again
    assert (await harness.open_app_home("U1", tab="messages", channel=DM)).status == 200
    await harness.settled()
    assert len(harness.slack.calls_to("assistant.threads.setSuggestedPrompts")) == 1


async def test_the_setting_overrides_the_prompts(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    ours = (("Standup", "Write my standup from these notes:"), ("Review", "Review this PR."))
    harness, runner = await start_harness(slack, claude, db_path, suggested_prompts=ours)
    try:
        await harness.open_app_home("U2", tab="messages", channel="D2")
        [call] = await slack.wait_for(
            lambda: slack.calls_to("assistant.threads.setSuggestedPrompts")
        )
        assert [(p["title"], p["message"]) for p in call.params["prompts"]] == list(ours)
    finally:
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()


def test_suggested_prompts_setting_is_checked() -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "ANTHROPIC_API_KEY": "k",
        "SLACK_SIGNING_SECRET": "s",
    }
    good = '[{"title": "Hi", "message": "Say hi"}, {"title": "Sum", "message": " Sum it "}]'
    settings = load_settings({**env, "SLACKBOT_SUGGESTED_PROMPTS": good})
    assert settings.suggested_prompts == (("Hi", "Say hi"), ("Sum", "Sum it"))
    assert load_settings(env).suggested_prompts == ()
    for bad in (
        "[{'title': 'x'}]",
        '{"title": "x", "message": "y"}',
        '[{"title": "x"}]',
        '[{"title": "", "message": "y"}]',
        "[]",
        str([{"title": "t", "message": "m"}] * 5).replace("'", '"'),
    ):
        with pytest.raises(ConfigError) as raised:
            load_settings({**env, "SLACKBOT_SUGGESTED_PROMPTS": bad})
        assert "SLACKBOT_SUGGESTED_PROMPTS" in str(raised.value)
        assert "\n" not in str(raised.value)


async def test_home_tab_shows_how_to_use_the_model_and_the_viewers_usage(
    harness: Harness,
) -> None:
    harness.claude.default = Script(text="An answer.")
    await harness.mention("hello", user="U1")
    await harness.settled()
    # a week-old-ish reply costing $3.00 (1M input at $2, 100k output at $10), and an older one
    old_usage(
        harness.bot.store.path,
        user="U1",
        days_ago=3,
        input_tokens=1_000_000,
        output_tokens=100_000,
    )
    old_usage(harness.bot.store.path, user="U1", days_ago=9, input_tokens=5_000_000)

    response = await harness.open_app_home("U1", tab="home")
    assert response.status == 200
    await harness.slack.wait_for(lambda: "U1" in harness.slack.home_views)
    [call] = harness.slack.calls_to("views.publish")
    assert call.error is None and call.params["user_id"] == "U1"
    text = view_text(harness.slack.home_views["U1"])
    assert messages.HOME_ABOUT in text and "mention me" in text
    assert "`claude-sonnet-5-5`" in text
    tokens_today = recorded_tokens(harness.bot.store.path, since=time.time() - 3600)
    assert tokens_today > 0
    [today] = [line for line in text.splitlines() if line.startswith("*Today:*")]
    [week] = [line for line in text.splitlines() if line.startswith("*Last 7 days:*")]
    assert "1 reply" in today and f"{tokens_today:,} tokens" in today
    assert "2 replies" in week and f"{tokens_today + 1_100_000:,} tokens" in week
    assert "≈ $3.00" in week

    # someone else sees only their own usage
    await harness.open_app_home("U2", tab="home")
    await harness.slack.wait_for(lambda: "U2" in harness.slack.home_views)
    other = view_text(harness.slack.home_views["U2"])
    assert "*Today:* 0 replies · 0 tokens · ≈ $0.00" in other


async def test_home_is_not_republished_in_a_tight_loop(harness: Harness) -> None:
    for _ in range(5):
        assert (await harness.open_app_home("U1", tab="home")).status == 200
    await harness.slack.wait_for(lambda: "U1" in harness.slack.home_views)
    await harness.settled()
    assert len(harness.slack.calls_to("views.publish")) == 1


async def test_every_app_home_opened_is_acknowledged(harness: Harness) -> None:
    # a tab the bot has nothing for, and a Home for someone Slack doesn't know
    assert (await harness.open_app_home("U1", tab="about")).status == 200
    assert (await harness.open_app_home("UNOBODY", tab="home")).status == 200
    [call] = await harness.slack.wait_for(lambda: harness.slack.calls_to("views.publish"))
    assert call.error == "user_not_found"
    harness.slack.fail_next("assistant.threads.setSuggestedPrompts", "not_allowed_token_type")
    assert (await harness.open_app_home("U1", tab="messages")).status == 200
    await harness.slack.wait_for(
        lambda: harness.slack.calls_to("assistant.threads.setSuggestedPrompts")
    )
    # a failed attempt is tried again at the next open
    assert (await harness.open_app_home("U1", tab="messages")).status == 200
    calls = await harness.slack.wait_for(
        lambda: [
            c
            for c in harness.slack.calls_to("assistant.threads.setSuggestedPrompts")
            if not c.error
        ]
    )
    assert len(calls) == 1


def test_today_starts_at_the_viewers_midnight() -> None:
    now = 1_767_225_600.0 + 3600 * 5  # 2026-01-01 05:00 UTC
    assert start_of_today(now, None) == 1_767_225_600.0
    assert start_of_today(now, "Not/AZone") == 1_767_225_600.0
    # in New York (UTC-5) it is exactly midnight of 1 January
    assert start_of_today(now, "America/New_York") == now
    # in Los Angeles (UTC-8) it is still 31 December
    assert start_of_today(now, "America/Los_Angeles") == 1_767_225_600.0 - 86400 + 8 * 3600
