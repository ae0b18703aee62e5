"""Start-up learns the model's limits from the Models API; retired or unknown models are refused."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys

import pytest
from aiohttp import web

from fakes.claude import FakeClaude, model_info
from fakes.harness import make_settings
from fakes.slack import FakeSlack
from slackbot.model_lookup import FALLBACK_MAX_INPUT_TOKENS, ModelLimits, ModelRefused, learn_model
from slackbot.server import create_bot, prepare
from tests.started import DEFAULT_MODEL, sonnet_5, started

RETIRED = "claude-3-haiku-20240307"


async def test_limits_come_from_the_models_api(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async with started(slack, claude, db_path, claude_model="claude-haiku-4-5") as harness:
        limits = harness.bot.conversations.model_limits
        assert limits == ModelLimits(
            model="claude-haiku-4-5",
            max_input_tokens=200_000,
            max_tokens=64_000,
            image_input=True,
            pdf_input=True,
            lifecycle="active",
            line="haiku",
            from_api=True,
            adaptive_thinking=True,
            efforts=frozenset({"low", "medium", "high", "max"}),
            server_tools=frozenset({"web_search", "web_fetch", "code_execution"}),
        )
        await harness.mention("hi")
        await harness.settled()
    request = claude.requests[-1]
    assert request["model"] == "claude-haiku-4-5"
    assert request["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert [tool["name"] for tool in request["tools"]] == ["web_search", "web_fetch"]
    assert request["tools"][0]["max_uses"] == 5
    assert request["tools"][1]["citations"] == {"enabled": True}
    assert not {"temperature", "top_p", "top_k", "tool_choice", "output_config"} & set(request)


async def test_max_tokens_is_clamped_to_the_model(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    settings = dict(claude_model="claude-haiku-4-5", claude_model_is_default=False)
    async with started(slack, claude, db_path, claude_max_tokens=100_000, **settings) as harness:
        await harness.mention("hi")
        await harness.settled()
    assert claude.requests[-1]["max_tokens"] == 64_000


async def test_max_tokens_leaves_half_a_small_window_for_input(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.models[DEFAULT_MODEL] = sonnet_5(max_input_tokens=4000)
    async with started(slack, claude, db_path) as harness:
        await harness.mention("hi")
        await harness.settled()
    assert claude.requests[-1]["max_tokens"] == 2000


@pytest.mark.parametrize("model", [RETIRED, "claude-nonexistent-1"])
async def test_retired_or_unknown_model_is_refused_at_start(
    slack: FakeSlack, claude: FakeClaude, db_path: str, model: str
) -> None:
    settings = make_settings(
        slack, claude, db_path, claude_model=model, claude_model_is_default=False
    )
    bot = await create_bot(settings, anthropic_max_retries=0)
    try:
        with pytest.raises(ModelRefused) as refused:
            await prepare(bot)
    finally:
        await bot.close()
    message = str(refused.value)
    assert model in message and "CLAUDE_MODEL" in message and "\n" not in message
    assert slack.calls_to("auth.test") == []  # refused before anything else


async def test_cli_refuses_a_retired_model_in_one_line(
    slack: FakeSlack, claude: FakeClaude, tmp_path
) -> None:
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": "s",
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "ANTHROPIC_BASE_URL": claude.base_url,
        "SLACK_API_URL": slack.api_url,
        "SLACKBOT_DB": str(tmp_path / "bot.db"),
        "CLAUDE_MODEL": RETIRED,
        "PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slackbot",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    text = stderr.decode()
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1] == (
        f"slackbot: CLAUDE_MODEL {RETIRED!r} is retired: set CLAUDE_MODEL to a current model id"
    )


async def test_retired_builtin_default_falls_back_to_newest_of_its_line(
    slack: FakeSlack, claude: FakeClaude, db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    claude.models[DEFAULT_MODEL] = sonnet_5(lifecycle="retired")
    claude.models["claude-sonnet-4-5"] = model_info(
        "claude-sonnet-4-5", "Claude Sonnet 4.5", created_at="2025-09-29T00:00:00Z", line="sonnet"
    )
    caplog.set_level(logging.WARNING, logger="slackbot.model_lookup")
    async with started(slack, claude, db_path) as harness:
        assert harness.bot.conversations.model_limits.model == "claude-sonnet-4-6"
        await harness.mention("hi")
        await harness.settled()
    assert claude.requests[-1]["model"] == "claude-sonnet-4-6"
    assert any(
        DEFAULT_MODEL in r.getMessage() and "claude-sonnet-4-6" in r.getMessage()
        for r in caplog.records
    )


async def test_builtin_default_unknown_to_the_api_also_falls_back(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    assert DEFAULT_MODEL not in claude.models
    async with started(slack, claude, db_path) as harness:
        assert harness.bot.conversations.model_limits.model == "claude-sonnet-4-6"


async def test_an_explicitly_chosen_retired_default_is_refused(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.models[DEFAULT_MODEL] = sonnet_5(lifecycle="retired")
    settings = make_settings(slack, claude, db_path, claude_model_is_default=False)
    bot = await create_bot(settings, anthropic_max_retries=0)
    try:
        with pytest.raises(ModelRefused, match=DEFAULT_MODEL):
            await prepare(bot)
    finally:
        await bot.close()


async def test_deprecated_model_warns_and_is_used(
    slack: FakeSlack, claude: FakeClaude, db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    claude.models[DEFAULT_MODEL] = sonnet_5(lifecycle="deprecated")
    caplog.set_level(logging.WARNING, logger="slackbot.model_lookup")
    async with started(slack, claude, db_path) as harness:
        assert harness.bot.conversations.model_limits.lifecycle == "deprecated"
        assert harness.bot.conversations.claude.model == DEFAULT_MODEL
    assert any("deprecated" in r.getMessage() for r in caplog.records)


async def test_unreachable_models_api_falls_back_to_defaults(
    slack: FakeSlack, claude: FakeClaude, db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="slackbot.model_lookup")
    async with FakeClaude() as gone:
        dead_url = gone.base_url
    settings = make_settings(slack, claude, db_path, anthropic_base_url=dead_url)
    bot = await create_bot(settings, anthropic_max_retries=0)
    try:
        limits = await learn_model(bot.anthropic, settings)
    finally:
        await bot.close()
    assert limits == ModelLimits(model=DEFAULT_MODEL)
    assert limits.max_input_tokens == FALLBACK_MAX_INPUT_TOKENS and not limits.from_api
    assert any("could not look up model" in r.getMessage() for r in caplog.records)


async def test_models_api_server_error_falls_back_to_defaults(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async def overloaded(_: web.Request) -> web.Response:
        error = {"type": "api_error", "message": "Internal server error"}
        return web.json_response({"type": "error", "error": error}, status=500)

    app = web.Application()
    app.router.add_get("/v1/models/{model_id}", overloaded)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = make_settings(slack, claude, db_path, anthropic_base_url=f"http://127.0.0.1:{port}")
    bot = await create_bot(settings, anthropic_max_retries=0)
    try:
        limits = await learn_model(bot.anthropic, settings)
    finally:
        await bot.close()
        await runner.cleanup()
    assert limits == ModelLimits(model=DEFAULT_MODEL)


async def test_a_gateway_without_the_models_api_is_not_a_refusal(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """A 404 that is not the API's own error object (no Models endpoint at that base URL)
    says nothing about the model: start with the fallback limits instead of refusing."""
    from anthropic import AsyncAnthropic

    # FakeSlack serves no /v1/models: aiohttp answers a plain-text 404, as a bare proxy would.
    client = AsyncAnthropic(api_key="k", base_url=slack.base_url, max_retries=0)
    try:
        for model in ("claude-some-proxy-model", None):
            settings = make_settings(slack, claude, db_path)
            if model is not None:
                settings = dataclasses.replace(
                    settings, claude_model=model, claude_model_is_default=False
                )
            limits = await learn_model(client, settings)
            assert limits.model == settings.claude_model
            assert limits.max_input_tokens == FALLBACK_MAX_INPUT_TOKENS
            assert not limits.from_api
    finally:
        await client.close()
