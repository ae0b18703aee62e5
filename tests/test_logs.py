"""What a person running the bot reads: the bot's own lines, no third-party request noise."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, bot_env
from fakes.slack import FakeSlack
from tests.processes import free_port, mention_over_http, wait_healthy


async def test_start_up_and_a_reply_log_only_the_bots_own_lines(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="Logged answer.")
    port = free_port()
    env = {**os.environ, **bot_env(slack, claude, db_path), "PORT": str(port)}
    env.pop("SLACKBOT_LOG_LEVEL", None)  # the default, INFO
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slackbot", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_healthy(port)
        message, _ = await mention_over_http(slack, port, "hello")
        await slack.wait_for(
            lambda: any(
                slack.final_text(CHANNEL, m["ts"]) == "Logged answer."
                for m in slack.bot_messages(CHANNEL, message["ts"])
            )
        )
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
    lines = stderr.decode().splitlines()
    assert any("slackbot.server" in line and "listening" in line for line in lines)
    assert not [line for line in lines if "HTTP Request:" in line]
    assert not [line for line in lines if "will be unused" in line]
    assert all(" slackbot" in line for line in lines if " INFO " in line), lines


async def test_json_log_format_is_one_object_per_line(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="Logged answer.")
    port = free_port()
    env = {
        **os.environ,
        **bot_env(slack, claude, db_path),
        "PORT": str(port),
        "SLACKBOT_LOG_FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slackbot", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_healthy(port)
        message, _ = await mention_over_http(slack, port, "hello")
        await slack.wait_for(
            lambda: any(
                slack.final_text(CHANNEL, m["ts"]) == "Logged answer."
                for m in slack.bot_messages(CHANNEL, message["ts"])
            )
        )
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
    records = [json.loads(line) for line in stderr.decode().splitlines()]
    assert records
    assert all(set(r) == {"time", "level", "logger", "message"} for r in records), records
    assert any(r["logger"] == "slackbot.server" and "listening" in r["message"] for r in records)
    assert all(r["time"].endswith("+00:00") for r in records)


MASKED = """
import logging
from slackbot import logs
logs.configure("INFO", "json")
try:
    raise RuntimeError("refused xoxb-111-222-secret")
except RuntimeError:
    logging.getLogger("slackbot.x").exception("call with sk-ant-api03-secret failed")
"""


def test_json_lines_mask_secrets_in_the_message_and_the_exception() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MASKED], capture_output=True, text=True, timeout=30, check=True
    )
    (line,) = done.stderr.splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["logger"] == "slackbot.x"
    assert record["message"] == "call with sk-ant-*** failed"
    assert "RuntimeError: refused xoxb-***" in record["exception"]
    assert "secret" not in line


def test_a_bad_log_format_is_one_line() -> None:
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "ANTHROPIC_API_KEY": "sk-ant-1",
        "SLACKBOT_LOG_FORMAT": "xml",
    }
    done = subprocess.run(
        [sys.executable, "-m", "slackbot"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "slackbot: SLACKBOT_LOG_FORMAT must be one of text, json, got 'xml'"
    ]
