"""`slackbot check`, run as the real command against the fake Slack and the fake Claude."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import yaml

from fakes.claude import FakeClaude
from fakes.harness import bot_env
from fakes.slack import FakeSlack
from slackbot.scopes import BOT_SCOPES
from tests.processes import bot_process, free_port
from tests.test_store import old_database

ROOT = Path(__file__).resolve().parent.parent
#: A signing secret shaped like Slack's (32 hex characters): the harness's own is not.
GOOD_SECRET = "8f742231b10e8888abcd99b1f2e385a5"
MODEL = "claude-sonnet-4-6"  # listed by the fake Models API as active


def env_for(slack: FakeSlack, claude: FakeClaude, db_path: str, **changes: str | None) -> dict:
    env = {
        **os.environ,
        **bot_env(slack, claude, db_path),
        "SLACK_SIGNING_SECRET": GOOD_SECRET,
        "CLAUDE_MODEL": MODEL,
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


async def run_check(env: dict[str, str]) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run `python -m slackbot check`; its exit code, its rows by check, and all it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slackbot",
        "check",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    printed = out.decode() + err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("check"), printed
    rows = {}
    for line in lines[1:]:
        name, _, rest = line.partition("  ")
        status, _, detail = rest.strip().partition("  ")
        rows[name.strip()] = (status.strip(), detail.strip())
    assert proc.returncode is not None  # for the type checker: communicate() waited
    return proc.returncode, rows, printed


def statuses(rows: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {name: status for name, (status, _) in rows.items()}


def assert_no_secret(printed: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in printed


async def test_everything_passes_in_http_mode(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    code, rows, printed = await run_check(env_for(slack, claude, db_path))
    assert code == 0, printed
    assert statuses(rows) == {
        "settings": "ok",
        "bot token": "ok",
        "scopes": "ok",
        "app token": "skip",
        "signing secret": "ok",
        "model": "ok",
        "database": "ok",
    }
    assert "HTTP mode" in rows["settings"][1]
    assert "@slackbot in Test (T1)" in rows["bot token"][1]
    assert rows["model"][1] == f"{MODEL}: active, 1,000,000-token window"
    assert "created" in rows["database"][1]
    assert [c.method for c in slack.calls] == ["auth.test"]
    assert_no_secret(printed, slack.bot_token, GOOD_SECRET, "sk-ant-test")

    # Run again: the database is there and up to date now.
    code, rows, _ = await run_check(env_for(slack, claude, db_path))
    assert code == 0
    assert "up to date" in rows["database"][1]


async def test_a_missing_scope_is_named(slack: FakeSlack, claude: FakeClaude, db_path: str) -> None:
    assert slack.scopes is not None
    slack.scopes.remove("files:write")
    slack.scopes.remove("users:read")
    code, rows, printed = await run_check(env_for(slack, claude, db_path))
    assert code == 1, printed
    status, detail = rows["scopes"]
    assert status == "FAIL"
    assert "users:read, files:write" in detail
    assert "reinstall" in detail
    assert statuses(rows)["bot token"] == "ok"


async def test_scopes_slack_does_not_report_fail(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.scopes = None  # a proxy stripped the header
    code, rows, _ = await run_check(env_for(slack, claude, db_path))
    assert code == 1
    assert rows["scopes"][0] == "FAIL"
    assert "x-oauth-scopes" in rows["scopes"][1]


async def test_a_refused_bot_token_is_reported_without_printing_it(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    wrong = "xoxb-1111-2222-notthetoken"
    code, rows, printed = await run_check(env_for(slack, claude, db_path, SLACK_BOT_TOKEN=wrong))
    assert code == 1
    assert rows["bot token"][0] == "FAIL"
    assert "invalid_auth" in rows["bot token"][1]
    assert rows["scopes"][0] == "skip"
    assert rows["model"][0] == "ok"  # the others still run
    assert_no_secret(printed, wrong, "1111-2222-notthetoken")


async def test_socket_mode_checks_the_app_token(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.socket_url = "wss://127.0.0.1:1/link"  # handed out, never opened by the check
    env = env_for(
        slack, claude, db_path, SLACK_APP_TOKEN=slack.app_token, SLACK_SIGNING_SECRET=None
    )
    code, rows, printed = await run_check(env)
    assert code == 0, printed
    assert rows["app token"][0] == "ok"
    assert rows["signing secret"][0] == "skip"
    assert "Socket Mode" in rows["settings"][1]
    assert "apps.connections.open" in [c.method for c in slack.calls]
    assert_no_secret(printed, slack.app_token)

    wrong = "xapp-1-A1-notthetoken"
    code, rows, printed = await run_check(env_for(slack, claude, db_path, SLACK_APP_TOKEN=wrong))
    assert code == 1
    assert rows["app token"][0] == "FAIL"
    assert "invalid_auth" in rows["app token"][1]
    assert_no_secret(printed, wrong)


async def test_a_signing_secret_of_the_wrong_shape_fails(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    env = env_for(slack, claude, db_path, SLACK_SIGNING_SECRET="not-a-real-signing-secret")
    code, rows, printed = await run_check(env)
    assert code == 1
    assert rows["signing secret"][0] == "FAIL"
    assert "32 hexadecimal" in rows["signing secret"][1]
    assert_no_secret(printed, "not-a-real-signing-secret")


@pytest.mark.parametrize(
    ("model", "says"),
    [("claude-3-haiku-20240307", "is retired"), ("claude-nonesuch-1", "not a model")],
)
async def test_a_model_the_api_refuses_fails(
    slack: FakeSlack, claude: FakeClaude, db_path: str, model: str, says: str
) -> None:
    code, rows, _ = await run_check(env_for(slack, claude, db_path, CLAUDE_MODEL=model))
    assert code == 1
    assert rows["model"][0] == "FAIL"
    assert says in rows["model"][1]


async def test_the_built_in_model_gone_says_which_stands_in(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    # The fake's default list lacks the built-in claude-sonnet-5-5: its newest sonnet stands in.
    code, rows, _ = await run_check(env_for(slack, claude, db_path, CLAUDE_MODEL=None))
    assert code == 0
    assert rows["model"][1].startswith("claude-sonnet-4-6: active")
    assert "set CLAUDE_MODEL" in rows["model"][1]


async def test_a_refused_api_key_or_an_unreachable_api_fails(
    slack: FakeSlack, db_path: str
) -> None:
    async with FakeClaude(api_key="sk-ant-right") as claude:
        env = env_for(slack, claude, db_path, ANTHROPIC_API_KEY="sk-ant-wrongkey")
        code, rows, printed = await run_check(env)
    assert code == 1
    assert "ANTHROPIC_API_KEY was refused" in rows["model"][1]
    assert_no_secret(printed, "sk-ant-wrongkey", "wrongkey")

    env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, rows, _ = await run_check(env)
    assert code == 1
    assert rows["model"][0] == "FAIL"
    assert "did not answer" in rows["model"][1]


async def test_an_older_database_passes_and_is_migrated(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    old_database(db_path, stop_before="m011_create_documents")
    code, rows, printed = await run_check(env_for(slack, claude, db_path))
    assert code == 0, printed
    assert "older schema" in rows["database"][1]
    assert "applied now" in rows["database"][1]
    code, rows, _ = await run_check(env_for(slack, claude, db_path))
    assert "up to date" in rows["database"][1]


async def test_a_database_that_cannot_be_created_fails(
    slack: FakeSlack, claude: FakeClaude, tmp_path: Path
) -> None:
    path = str(tmp_path / "no such directory" / "slackbot.db")
    code, rows, _ = await run_check(env_for(slack, claude, path))
    assert code == 1
    assert rows["database"][0] == "FAIL"
    assert "SLACKBOT_DB" in rows["database"][1]


async def test_a_database_a_running_bot_holds_passes(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async with bot_process(slack, claude, db_path):
        _, rows, printed = await run_check(env_for(slack, claude, db_path))
    assert rows["database"][0] == "ok", printed
    assert "running slackbot" in rows["database"][1]


async def test_settings_that_do_not_load_are_the_one_row(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    code, rows, _ = await run_check(env_for(slack, claude, db_path, ANTHROPIC_API_KEY=None))
    assert code == 1
    assert list(rows) == ["settings"]
    assert rows["settings"] == (
        "FAIL",
        "ANTHROPIC_API_KEY is not set: see the README's settings table",
    )
    assert not slack.calls


def test_the_package_knows_the_manifests_scopes() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert list(BOT_SCOPES) == manifest["oauth_config"]["scopes"]["bot"]


async def test_a_postgresql_database_is_checked_at_database_url(
    slack: FakeSlack, claude: FakeClaude, db_path: str, postgres_url: str
) -> None:
    password_url = postgres_url.replace("postgres@", "postgres:hunter2@")  # trust auth: ignored
    env = env_for(slack, claude, db_path, DATABASE_URL=password_url)
    code, rows, printed = await run_check(env)
    assert code == 0, printed
    assert rows["database"][0] == "ok" and "migrations applied now" in rows["database"][1]
    assert "hunter2" not in printed and "postgres:***@" in rows["database"][1]
    code, rows, _ = await run_check(env)
    assert "up to date" in rows["database"][1]
    unreachable = f"postgresql://bot:hunter2@127.0.0.1:{free_port()}/slackbot"
    code, rows, printed = await run_check(env_for(slack, claude, db_path, DATABASE_URL=unreachable))
    assert code == 1 and rows["database"][0] == "FAIL"
    assert rows["database"][1].startswith("DATABASE_URL: cannot reach")
    assert "hunter2" not in printed
