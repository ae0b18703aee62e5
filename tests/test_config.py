"""Settings: the issue's variable names, defaults, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from slackbot.config import DEFAULT_MODEL, ConfigError, load_settings

BASE = {
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SLACK_SIGNING_SECRET": "s",
    "ANTHROPIC_API_KEY": "sk-ant-1",
}


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.claude_model == DEFAULT_MODEL and s.claude_model_is_default
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.db_path == "slackbot.db" and s.port == 3000
    assert not s.socket_mode
    assert s.edit_interval == 1.0 and s.edit_budget_per_minute == 45 and s.dm_idle_hours == 24


def test_socket_mode_needs_no_signing_secret() -> None:
    env = {**BASE, "SLACK_APP_TOKEN": "xapp-1"}
    del env["SLACK_SIGNING_SECRET"]
    assert load_settings(env).socket_mode


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({k: v for k, v in BASE.items() if k != "SLACK_BOT_TOKEN"}, "SLACK_BOT_TOKEN"),
        ({k: v for k, v in BASE.items() if k != "ANTHROPIC_API_KEY"}, "ANTHROPIC_API_KEY"),
        ({k: v for k, v in BASE.items() if k != "SLACK_SIGNING_SECRET"}, "SLACK_SIGNING_SECRET"),
        ({**BASE, "SLACK_BOT_TOKEN": "xapp-wrong"}, "SLACK_BOT_TOKEN"),
        ({**BASE, "PORT": "http"}, "PORT"),
        ({**BASE, "CLAUDE_MAX_TOKENS": "0"}, "CLAUDE_MAX_TOKENS"),
        ({**BASE, "SLACK_API_URL": "slack.com"}, "SLACK_API_URL"),
        ({**BASE, "SLACKBOT_EDIT_BUDGET": "lots"}, "SLACKBOT_EDIT_BUDGET"),
        ({**BASE, "SLACKBOT_LOG_FORMAT": "xml"}, "SLACKBOT_LOG_FORMAT"),
        ({**BASE, "SLACKBOT_METRICS_PORT": "metrics"}, "SLACKBOT_METRICS_PORT"),
        ({**BASE, "SLACKBOT_METRICS_PORT": "0"}, "SLACKBOT_METRICS_PORT"),
        ({**BASE, "SLACKBOT_METRICS_PORT": "70000"}, "SLACKBOT_METRICS_PORT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_overrides() -> None:
    s = load_settings(
        {
            **BASE,
            "SLACK_API_URL": "https://slack-gov.com/api",
            "SLACK_FILE_HOSTS": "files.example.com, cdn.example.com",
            "CLAUDE_MODEL": "claude-opus-4-6",
            "SLACKBOT_EDIT_BUDGET": "30/3",
        }
    )
    assert s.slack_api_url == "https://slack-gov.com/api/"
    assert s.slack_file_hosts == ("files.example.com", "cdn.example.com")
    assert s.claude_model == "claude-opus-4-6" and not s.claude_model_is_default
    assert (s.edit_budget_per_minute, s.edit_burst) == (30, 3)


def test_log_format_and_metrics_port() -> None:
    assert (load_settings(BASE).log_format, load_settings(BASE).metrics_port) == ("text", None)
    s = load_settings({**BASE, "SLACKBOT_LOG_FORMAT": "JSON", "SLACKBOT_METRICS_PORT": "9100"})
    assert (s.log_format, s.metrics_port) == ("json", 9100)


def test_cli_missing_setting_is_one_line_and_fast(tmp_path) -> None:
    started = time.monotonic()
    proc = run_slackbot(tmp_path, {}, timeout=30)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "SLACK_BOT_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 10


def test_price_overrides() -> None:
    s = load_settings({**BASE, "SLACKBOT_PRICES": '{"sonnet": [3, 15], "claude-x-1": [1.5, 7]}'})
    assert s.prices == (("sonnet", 3.0, 15.0), ("claude-x-1", 1.5, 7.0))
    assert load_settings(BASE).prices == ()
    for bad in ('{"sonnet": 3}', "[1, 2]", "not json", '{"sonnet": [-1, 2]}'):
        with pytest.raises(ConfigError, match="SLACKBOT_PRICES"):
            load_settings({**BASE, "SLACKBOT_PRICES": bad})


def test_usage_needs_no_credentials() -> None:
    s = load_settings({"SLACKBOT_DB": "/tmp/x.db"}, need_slack=False)
    assert s.db_path == "/tmp/x.db"


async def test_a_token_slack_refuses_stops_start_up_naming_it(slack, claude, db_path) -> None:
    import dataclasses

    from fakes.harness import make_settings
    from slackbot.server import create_bot, prepare

    settings = dataclasses.replace(
        make_settings(slack, claude, db_path), slack_bot_token="xoxb-revoked"
    )
    bot = await create_bot(settings)
    try:
        with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN was refused by Slack"):
            await prepare(bot)
    finally:
        await bot.close()


def test_cli_unreachable_slack_is_one_line(tmp_path) -> None:
    settings = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "ANTHROPIC_API_KEY": "k",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",  # nothing listens on the discard port
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    }
    proc = run_slackbot(tmp_path, settings, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("slackbot: could not reach Slack")


def run_slackbot(
    cwd: object, settings: dict[str, str], *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`python -m slackbot` with only `settings` of the bot's own variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK", "ANTHROPIC"))}
    return subprocess.run(
        [sys.executable, "-m", "slackbot"],
        env={**env, **settings},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_claude_and_tool_settings() -> None:
    s = load_settings(BASE)
    assert s.claude_effort is None and s.tools == ("web_search", "web_fetch")
    assert s.web_search_max_uses == 5 and s.max_text_file_bytes == 512 * 1024
    s = load_settings(
        {
            **BASE,
            "CLAUDE_EFFORT": "High",
            "SLACKBOT_TOOLS": "web_search, code_execution",
            "SLACKBOT_WEB_SEARCH_MAX_USES": "2",
            "SLACKBOT_WEB_ALLOWED_DOMAINS": "docs.rs, Python.org",
            "SLACKBOT_MAX_TEXT_FILE_KB": "64",
        }
    )
    assert s.claude_effort == "high" and s.tools == ("web_search", "code_execution")
    assert s.web_search_max_uses == 2 and s.web_allowed_domains == ("docs.rs", "python.org")
    assert s.max_text_file_bytes == 64 * 1024
    assert load_settings({**BASE, "SLACKBOT_TOOLS": "none"}).tools == ()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"CLAUDE_EFFORT": "extreme"}, "CLAUDE_EFFORT"),
        ({"SLACKBOT_TOOLS": "web_search,browser"}, "SLACKBOT_TOOLS"),
        ({"SLACKBOT_WEB_SEARCH_MAX_USES": "0"}, "SLACKBOT_WEB_SEARCH_MAX_USES"),
        (
            {"SLACKBOT_WEB_ALLOWED_DOMAINS": "a.com", "SLACKBOT_WEB_BLOCKED_DOMAINS": "b.com"},
            "SLACKBOT_WEB_ALLOWED_DOMAINS",
        ),
    ],
)
def test_bad_claude_and_tool_settings_name_the_variable(extra: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({**BASE, **extra})


def test_admin_settings() -> None:
    s = load_settings(
        {
            **BASE,
            "SLACKBOT_ALLOWED_CHANNELS": "C1, C2",
            "SLACKBOT_ALLOWED_USERS": "U1,U2",
            "SLACKBOT_DENIED_USERS": "U3",
            "SLACKBOT_ALLOW_EXTERNAL": "1",
            "SLACKBOT_ALLOW_GUESTS": "0",
            "SLACKBOT_ADMIN_CONTACT": "#it-help or @sam",
            "SLACKBOT_ADMINS": "UADMIN",
            "SLACKBOT_USER_DAILY_TOKENS": "200000",
            "SLACKBOT_WORKSPACE_DAILY_USD": "25.5",
            "SLACKBOT_RETENTION_DAYS": "30",
        }
    )
    assert s.allowed_channels == ("C1", "C2") and s.allowed_users == ("U1", "U2")
    assert s.denied_users == ("U3",) and s.allow_external and not s.allow_guests
    assert s.admin_contact == "#it-help or @sam"
    assert s.is_admin("UADMIN") and not s.is_admin("U1") and not s.is_admin(None)
    assert s.user_daily_tokens == 200_000 and s.workspace_daily_usd == 25.5
    assert s.retention_days == 30


def test_admin_settings_default_to_open_and_unlimited() -> None:
    s = load_settings(BASE)
    assert s.allowed_channels == s.allowed_users == s.denied_users == s.admins == ()
    assert not s.allow_external and not s.allow_guests and s.admin_contact is None
    assert s.user_daily_tokens is None and s.workspace_daily_usd is None
    assert s.retention_days is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLACKBOT_ALLOWED_USERS", "U1;U2"),
        ("SLACKBOT_ALLOW_EXTERNAL", "maybe"),
        ("SLACKBOT_USER_DAILY_TOKENS", "0"),
        ("SLACKBOT_USER_DAILY_TOKENS", "lots"),
        ("SLACKBOT_WORKSPACE_DAILY_USD", "-1"),
        ("SLACKBOT_RETENTION_DAYS", "0"),
    ],
)
def test_bad_admin_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE, name: value})
    assert name in str(raised.value) and "\n" not in str(raised.value)
