"""Slack calls that must land: which failures are retried, how long, and which are not."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from fakes.slack import FakeSlack
from slackbot.slack_calls import post_with_backoff


def client_for(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)


async def test_5xx_and_rate_limits_are_retried_until_the_post_lands(slack: FakeSlack) -> None:
    slack.fail_next("chat.postMessage", "internal_error", status=503, times=3)
    slack.fail_next("chat.postMessage", "ratelimited", retry_after=0)
    client = client_for(slack)
    response = await post_with_backoff(
        lambda: client.chat_postMessage(channel="C1", text="hi"), what="post", backoff=(0.05,)
    )
    assert slack.final_text("C1", response["ts"]) == "hi"
    assert [c.error for c in slack.calls_to("chat.postMessage")] == [
        *["internal_error"] * 3,
        "ratelimited",
        None,
    ]


async def test_a_refusal_retrying_cannot_fix_is_raised_at_once(slack: FakeSlack) -> None:
    slack.fail_next("chat.postMessage", "channel_not_found")
    client = client_for(slack)
    with pytest.raises(SlackApiError):
        await post_with_backoff(
            lambda: client.chat_postMessage(channel="C1", text="hi"), what="post"
        )
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_network_errors_are_retried_then_given_up() -> None:
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # without slack_sdk's own retry of connection errors, to count ours
    client = AsyncWebClient(
        token="xoxb-test", base_url=f"http://127.0.0.1:{port}/api/", retry_handlers=[]
    )
    attempts = 0

    async def post() -> object:
        nonlocal attempts
        attempts += 1
        return await client.chat_postMessage(channel="C1", text="hi")

    with pytest.raises(aiohttp.ClientError):
        await post_with_backoff(post, what="post", give_up_after=1.0, backoff=(0.1, 0.2))
    assert attempts >= 3
