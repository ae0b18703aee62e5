"""The fakes must behave like Slack and Anthropic as seen through the real clients.

Every test talks to a fake through slack_sdk, Bolt or the anthropic SDK over real HTTP, so a fake
that drifts from the wire format the clients expect fails here rather than in a bot test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import Base64ImageSourceParam, Message, MessageParam, TextBlockParam
from slack_bolt.async_app import AsyncApp, AsyncSay
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from fakes.claude import FakeClaude, Script
from fakes.slack import (
    FakeSlack,
    FakeSocketModeServer,
    event_callback,
    message_event,
    signed_event_request,
)

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def web(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)


@pytest.fixture
async def claude() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


@pytest.fixture
async def client(claude: FakeClaude) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(api_key="k", base_url=claude.base_url, max_retries=0) as c:
        yield c


def user_turn(text: str = "hi") -> list[MessageParam]:
    return [{"role": "user", "content": text}]


def text_of(message: Message) -> str:
    block = message.content[0]
    assert block.type == "text"
    return block.text


# -- Slack Web API ------------------------------------------------------------------------------


async def test_auth_test_and_wrong_token(slack: FakeSlack, web: AsyncWebClient) -> None:
    response = await web.auth_test()
    assert (response["user_id"], response["bot_id"], response["team_id"]) == ("UBOT", "BBOT", "T1")

    with pytest.raises(SlackApiError) as e:
        await AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url).auth_test()
    assert e.value.response["error"] == "invalid_auth"
    assert [c.error for c in slack.calls] == [None, "invalid_auth"]


async def test_post_update_delete(slack: FakeSlack, web: AsyncWebClient) -> None:
    root = slack.add_user_message("C1", "U1", "question")
    posted = await web.chat_postMessage(channel="C1", thread_ts=root["ts"], text="thinking…")
    ts = posted["ts"]
    assert posted["message"]["bot_id"] == "BBOT"
    assert slack.messages[("C1", ts)]["thread_ts"] == root["ts"]

    updated = await web.chat_update(channel="C1", ts=ts, markdown_text="**done**")
    assert (updated["ts"], updated["text"]) == (ts, "**done**")
    assert slack.final_text("C1", ts) == "**done**"
    assert [m["ts"] for m in slack.bot_messages("C1", root["ts"])] == [ts]
    assert slack.calls_to("chat.update")[0].params["markdown_text"] == "**done**"

    with pytest.raises(SlackApiError) as e:
        await web.chat_update(channel="C1", ts="1.000001", text="x")
    assert e.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as e:
        await web.chat_update(channel="C1", ts=root["ts"], text="x")
    assert e.value.response["error"] == "cant_update_message"

    await web.chat_delete(channel="C1", ts=ts)
    assert ("C1", ts) not in slack.messages


async def test_ts_format_and_order(slack: FakeSlack) -> None:
    stamps = [slack.next_ts() for _ in range(1000)]
    assert all(len(s) == 17 and s[10] == "." for s in stamps)
    assert stamps == sorted(set(stamps), key=lambda s: tuple(map(int, s.split("."))))
    assert abs(float(stamps[0]) - time.time()) < 5


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": "x" * 4001}, "msg_too_long"),
        ({"markdown_text": "x" * 12001}, "msg_too_long"),
        ({"markdown_text": "a", "text": "b"}, "markdown_text_conflict"),
        ({"markdown_text": "a", "blocks": [{"type": "divider"}]}, "markdown_text_conflict"),
    ],
)
async def test_message_rules(web: AsyncWebClient, kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(SlackApiError) as e:
        await web.chat_postMessage(channel="C1", **kwargs)
    assert e.value.response["error"] == error


async def test_no_text(web: AsyncWebClient) -> None:
    # slack_sdk itself warns first (a UserWarning: an error under our pytest config).
    with (
        pytest.warns(UserWarning, match="`text` argument is missing"),
        pytest.raises(SlackApiError) as e,
    ):
        await web.chat_postMessage(channel="C1")
    assert e.value.response["error"] == "no_text"


async def test_message_limits_are_inclusive(slack: FakeSlack, web: AsyncWebClient) -> None:
    a = await web.chat_postMessage(channel="C1", text="x" * 4000)
    b = await web.chat_postMessage(channel="C1", markdown_text="y" * 12000)
    assert slack.final_text("C1", a["ts"]) == "x" * 4000
    assert slack.final_text("C1", b["ts"]) == "y" * 12000


async def test_replies_pagination_and_filters(slack: FakeSlack, web: AsyncWebClient) -> None:
    root = slack.add_user_message("C1", "U1", "root")
    replies = [slack.add_user_message("C1", "U2", f"r{i}", thread_ts=root["ts"]) for i in range(5)]
    slack.add_user_message("C1", "U1", "elsewhere")
    slack.add_user_message("C2", "U1", "other channel", thread_ts=root["ts"])

    pages = []
    async for page in await web.conversations_replies(channel="C1", ts=root["ts"], limit=2):
        pages.append([m["text"] for m in page["messages"]])
    assert pages == [["root", "r0"], ["r1", "r2"], ["r3", "r4"]]
    assert slack.calls_to("conversations.replies")[-1].params.get("cursor")

    first = await web.conversations_replies(channel="C1", ts=root["ts"], limit=2)
    assert first["has_more"] is True
    assert first["messages"][0]["reply_count"] == 5

    # Asking with a reply's ts still returns the whole thread.
    whole = await web.conversations_replies(channel="C1", ts=replies[2]["ts"])
    assert len(whole["messages"]) == 6 and whole["has_more"] is False

    window = await web.conversations_replies(
        channel="C1", ts=root["ts"], oldest=replies[0]["ts"], latest=replies[3]["ts"]
    )
    assert [m["text"] for m in window["messages"]] == ["r1", "r2"]
    window = await web.conversations_replies(
        channel="C1",
        ts=root["ts"],
        oldest=replies[0]["ts"],
        latest=replies[3]["ts"],
        inclusive=True,
    )
    assert [m["text"] for m in window["messages"]] == ["r0", "r1", "r2", "r3"]

    with pytest.raises(SlackApiError) as e:
        await web.conversations_replies(channel="C1", ts="123.456")
    assert e.value.response["error"] == "thread_not_found"


async def test_ratelimited_is_429_with_retry_after(slack: FakeSlack, web: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as e:
        await web.chat_postMessage(channel="C1", text="hi")
    assert e.value.response.status_code == 429
    assert e.value.response.headers["Retry-After"] == "7"
    assert e.value.response["error"] == "ratelimited"
    await web.chat_postMessage(channel="C1", text="hi")  # only the next call failed

    slack.fail_next("chat.postMessage", "channel_not_found", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as e:
            await web.chat_postMessage(channel="C1", text="hi")
        assert e.value.response.status_code == 200
    assert [c.error for c in slack.calls_to("chat.postMessage")] == [
        "ratelimited",
        None,
        "channel_not_found",
        "channel_not_found",
    ]


async def test_sdk_retry_handler_honours_retry_after(slack: FakeSlack) -> None:
    web = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next("chat.postMessage", retry_after=0)
    response = await web.chat_postMessage(channel="C1", text="hi")
    assert response["ok"]
    assert [c.error for c in slack.calls_to("chat.postMessage")] == ["ratelimited", None]


async def test_tier3_chat_update_budget(web: AsyncWebClient) -> None:
    async with FakeSlack(chat_update_per_minute=3) as slack:
        slack.minute_seconds = 0.5
        web = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        ts = (await web.chat_postMessage(channel="C1", text="a"))["ts"]
        for i in range(3):
            await web.chat_update(channel="C1", ts=ts, text=f"edit {i}")
        with pytest.raises(SlackApiError) as e:
            await web.chat_update(channel="C1", ts=ts, text="too many")
        assert e.value.response.status_code == 429
        assert e.value.response.headers["Retry-After"] == "1"  # rounded up, at least 1
        await asyncio.sleep(0.55)
        await web.chat_update(channel="C1", ts=ts, text="fine again")
        assert slack.final_text("C1", ts) == "fine again"


async def test_delay(slack: FakeSlack, web: AsyncWebClient) -> None:
    slack.delay("auth.test", 0.2)
    started = time.monotonic()
    await web.auth_test()
    assert time.monotonic() - started >= 0.2


async def test_users_info(slack: FakeSlack, web: AsyncWebClient) -> None:
    slack.add_user("U1", display_name="alice", real_name="Alice Liddell")
    slack.missing_users.add("UGONE")
    alice = (await web.users_info(user="U1"))["user"]
    assert (alice["profile"]["display_name"], alice["real_name"]) == ("alice", "Alice Liddell")
    made_up = (await web.users_info(user="U9"))["user"]
    assert made_up["profile"]["display_name"] == "user-U9"
    with pytest.raises(SlackApiError) as e:
        await web.users_info(user="UGONE")
    assert e.value.response["error"] == "user_not_found"


async def test_form_multipart_and_token_param(slack: FakeSlack) -> None:
    """The sync client and Bolt responders send forms; files.upload sends multipart."""
    url = slack.api_url + "chat.postMessage"
    async with aiohttp.ClientSession() as http:
        form = {"token": slack.bot_token, "channel": "C1", "text": "form", "thread_ts": "1.5"}
        async with http.post(url, data=form) as r:
            assert (await r.json())["ok"]
        multipart = aiohttp.FormData()
        multipart.add_field("channel", "C1")
        multipart.add_field("blocks", json.dumps([{"type": "divider"}]))
        multipart.add_field("attachment", b"bytes", filename="a.bin")
        headers = {"Authorization": f"Bearer {slack.bot_token}"}
        async with http.post(url, data=multipart, headers=headers) as r:
            assert (await r.json())["ok"]
    form_call, multipart_call = slack.calls
    assert form_call.params == {"channel": "C1", "text": "form", "thread_ts": "1.5"}
    assert multipart_call.params["blocks"] == [{"type": "divider"}]  # JSON fields decoded
    assert multipart_call.params["attachment"] == b"bytes"


async def test_files_info_and_downloads(slack: FakeSlack, web: AsyncWebClient) -> None:
    file = slack.add_file(name="cat.png", mimetype="image/png", content=PNG)
    info = (await web.files_info(file=file["id"]))["file"]
    assert (info["filetype"], info["size"]) == ("png", len(PNG))

    auth = {"Authorization": f"Bearer {slack.bot_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(file["url_private_download"], headers=auth) as r:
            assert (r.status, r.content_type, await r.read()) == (200, "image/png", PNG)
        async with http.get(file["url_private"]) as r:
            # Like Slack: no token is not a 401 but a 200 sign-in page.
            assert (r.status, r.content_type) == (200, "text/html")
            assert b"Sign in" in await r.read()
    assert [(d.had_auth_header, d.auth_header_value) for d in slack.downloads] == [
        (True, f"Bearer {slack.bot_token}"),
        (False, None),
    ]
    with pytest.raises(SlackApiError) as e:
        await web.files_info(file="FNOPE")
    assert e.value.response["error"] == "file_not_found"


async def test_cross_host_redirect_drops_the_token(slack: FakeSlack) -> None:
    """PLATFORM_FACTS: aiohttp drops Authorization when a redirect changes host."""
    target = slack.add_file(name="a.txt", mimetype="text/plain", content=b"payload")
    other_host = target["url_private_download"].replace("127.0.0.1", "localhost")
    moved = slack.add_file(name="b.txt", mimetype="text/plain", content=b"", redirect_to=other_host)

    auth = {"Authorization": f"Bearer {slack.bot_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(moved["url_private_download"], headers=auth) as r:
            assert r.content_type == "text/html"  # the token did not survive the hop
        via = f"{slack.base_url}/redirect?to={target['url_private_download']}"
        async with http.get(via, headers=auth) as r:
            assert await r.read() == b"payload"  # same host: the token is kept
    assert [d.had_auth_header for d in slack.downloads] == [True, False, True, True]


async def test_file_serving_controls(slack: FakeSlack) -> None:
    """Public files skip the token; a status replaces the body; padding streams, and counts."""
    public = slack.add_file(name="p.txt", mimetype="text/plain", content=b"cdn", public=True)
    broken = slack.add_file(name="b.txt", mimetype="text/plain", content=b"x", status=503)
    padded = slack.add_file(
        name="z.bin",
        mimetype="application/octet-stream",
        content=b"ab",
        padded_to=200_000,
        chunked=True,
    )
    auth = {"Authorization": f"Bearer {slack.bot_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(public["url_private"]) as r:
            assert await r.read() == b"cdn"
        async with http.get(broken["url_private"], headers=auth) as r:
            assert r.status == 503
        async with http.get(padded["url_private"], headers=auth) as r:
            assert r.content_length is None
            assert await r.read() == b"ab" + bytes(200_000 - 2)
        via = f"{slack.base_url}/redirect?hops=3&to={public['url_private']}"
        async with http.get(via) as r:
            assert await r.read() == b"cdn"
    assert slack.bytes_sent[padded["id"]] == 200_000
    assert slack.sent_in_full == {public["id"], padded["id"]}
    assert [d.path.partition("?")[0] for d in slack.downloads][-4:] == ["/redirect"] * 3 + [
        f"/files-pri/T1-{public['id']}/p.txt"
    ]


async def test_wait_for_explains_timeout(slack: FakeSlack, web: AsyncWebClient) -> None:
    await web.auth_test()
    with pytest.raises(AssertionError, match=r"after 0.1s; last Slack calls: \[auth.test\]"):
        await slack.wait_for(lambda: slack.calls_to("chat.postMessage"), timeout=0.1)

    async def post_later() -> None:
        await asyncio.sleep(0.05)
        await web.chat_postMessage(channel="C1", text="hi")

    task = asyncio.create_task(post_later())
    calls = await slack.wait_for(lambda: slack.calls_to("chat.postMessage"))
    assert calls[0].params["text"] == "hi"
    await task


async def test_bolt_http_mode_answers_a_signed_mention(slack: FakeSlack) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
        signing_secret="secret",
    )

    @app.event("app_mention")
    async def answer(event: dict[str, str], say: AsyncSay) -> None:
        await say(text=f"hello <@{event['user']}>", thread_ts=event["ts"])

    mention = slack.add_user_message("C1", "U1", "<@UBOT> hi")
    body, headers = signed_event_request(
        "secret", event_callback(message_event(mention, type="app_mention")), retry_num=1
    )
    assert SignatureVerifier("secret").is_valid_request(body, headers)
    assert headers["X-Slack-Retry-Num"] == "1"

    request = AsyncBoltRequest(body=body.decode(), headers=dict(headers.items()))
    response = await app.async_dispatch(request)
    assert response.status == 200
    [reply] = await slack.wait_for(lambda: slack.bot_messages("C1", mention["ts"]))
    assert reply["text"] == "hello <@U1>"


async def test_socket_mode_round_trip(slack: FakeSlack) -> None:
    async with FakeSocketModeServer() as server:
        slack.attach_socket_mode(server)
        received: list[SocketModeRequest] = []

        async def ack(client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
            received.append(request)
            await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

        client = SocketModeClient(
            app_token=slack.app_token,
            web_client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
        )
        client.socket_mode_request_listeners.append(ack)
        try:
            await client.connect()
            await server.wait_connected()
            payload = event_callback({"type": "app_mention", "text": "hi"})
            envelope_id = await server.push(payload, retry_attempt=1, retry_reason="timeout")
            assert (await server.wait_ack(envelope_id)) == {"envelope_id": envelope_id}
        finally:
            await client.close()
        assert received[0].type == "events_api"
        assert received[0].retry_attempt == 1
        assert received[0].payload["event_id"] == payload["event_id"]
        assert slack.calls_to("apps.connections.open")[0].error is None

    with pytest.raises(SlackApiError) as e:  # the bot token is not an app token
        await AsyncWebClient(base_url=slack.api_url).apps_connections_open(
            app_token=slack.bot_token
        )
    assert e.value.response["error"] == "invalid_auth"


async def test_event_ids_are_unique() -> None:
    ids = {event_callback({"type": "message"})["event_id"] for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("Ev") for i in ids)


# -- Anthropic Messages API --------------------------------------------------------------------


async def test_stream_yields_scripted_text(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.default = Script(text="The answer is 42.", chars_per_token=3)
    async with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, system="Be brief.", messages=user_turn()
    ) as stream:
        types = [event.type async for event in stream]
        message = await stream.get_final_message()

    deltas = types.count("content_block_delta")
    assert types == [
        "message_start",
        "content_block_start",
        *["content_block_delta", "text"] * deltas,  # the SDK adds a `text` event per delta
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert deltas == 6
    assert text_of(message) == "The answer is 42."
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 6
    count = await client.messages.count_tokens(
        model="claude-sonnet-4-6", system="Be brief.", messages=user_turn()
    )
    assert message.usage.input_tokens == count.input_tokens > 0
    assert claude.requests[0]["stream"] is True
    assert claude.request_headers[0]["authorization"] == "Bearer k"  # not x-api-key in SDK 2.x


async def test_raw_sse_has_ping_and_real_shapes(claude: FakeClaude) -> None:
    body = {"model": "m", "max_tokens": 10, "stream": True, "messages": user_turn()}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{claude.base_url}/v1/messages", json=body) as r,
    ):
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = (await r.read()).decode()
    events = [block.split("\n") for block in raw.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = json.loads(events[0][1].removeprefix("data: "))
    usage = start["message"]["usage"]
    assert set(usage) >= {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    assert start["message"]["stop_reason"] is None


async def test_pacing(claude: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    claude.default = Script(text="x" * 40, ttft=0.2, tokens_per_second=50)  # 10 tokens
    started = time.monotonic()
    arrivals = []
    async with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=user_turn()
    ) as stream:
        async for _ in stream.text_stream:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 10
    assert 0.2 <= arrivals[0] < 0.4
    assert arrivals[-1] - arrivals[0] == pytest.approx(9 / 50, abs=0.08)


async def test_non_streaming_and_max_tokens(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.default = Script(text="abcdefgh" * 10, chars_per_token=4)
    message = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=user_turn()
    )
    assert text_of(message) == "abcdefgh" * 2 + "abcd"
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 5)


async def test_queue_then_responder_then_default(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.queue.append(Script(text="queued"))
    claude.responder = lambda body: Script(text="echo") if body["max_tokens"] == 7 else None
    texts = []
    for max_tokens in (7, 7, 8):
        m = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=max_tokens, messages=user_turn()
        )
        texts.append(text_of(m))
    assert texts == ["queued", "echo", "Hello from fake Claude."]


async def test_529_raises_overloaded(claude: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    claude.fail_next(529)
    with pytest.raises(anthropic.OverloadedError) as e:
        async with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=100, messages=user_turn()
        ) as stream:
            await stream.get_final_message()
    assert isinstance(e.value, anthropic.InternalServerError)
    assert (e.value.status_code, e.value.type) == (529, "overloaded_error")


async def test_429_with_retry_after(claude: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    claude.fail_next(429, retry_after=3)
    with pytest.raises(anthropic.RateLimitError) as e:
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=user_turn())
    assert e.value.response.headers["retry-after"] == "3"
    assert e.value.type == "rate_limit_error"


async def test_sdk_retries_then_succeeds(claude: FakeClaude) -> None:
    claude.fail_next(529, times=2, retry_after=0.01)
    async with anthropic.AsyncAnthropic(
        api_key="k", base_url=claude.base_url, max_retries=2
    ) as client:
        message = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=user_turn()
        )
    assert text_of(message) == "Hello from fake Claude."
    assert len(claude.requests) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (404, anthropic.NotFoundError),
        (500, anthropic.InternalServerError),
    ],
)
async def test_status_errors(
    claude: FakeClaude,
    client: anthropic.AsyncAnthropic,
    status: int,
    error: type[anthropic.APIStatusError],
) -> None:
    claude.fail_next(status)
    with pytest.raises(error):
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=user_turn())


async def test_api_key_check() -> None:
    async with FakeClaude(api_key="right") as claude:
        for key, ok in (("wrong", False), ("right", True)):
            async with anthropic.AsyncAnthropic(
                api_key=key, base_url=claude.base_url, max_retries=0
            ) as client:
                create = client.messages.create(
                    model="claude-haiku-4-5", max_tokens=10, messages=user_turn()
                )
                if ok:
                    await create
                else:
                    with pytest.raises(anthropic.AuthenticationError):
                        await create


async def test_broken_stream_raises_mid_iteration(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    """The SDK does not wrap a cut-off stream: the transport's own exception escapes."""
    claude.default = Script(text="x" * 40, break_after_chars=10)
    received = ""
    with pytest.raises(Exception) as e:  # the point is which class it is
        async with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=100, messages=user_turn()
        ) as stream:
            async for text in stream.text_stream:
                received += text
    assert received == "x" * 10
    assert not isinstance(e.value, anthropic.APIError)
    assert type(e.value).__name__ == "RemoteProtocolError"


async def test_error_event_raises_mid_iteration(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    """An `error` event after HTTP 200 is a plain APIStatusError with status 200."""
    claude.default = Script(text="y" * 40, error_event_after_chars=8)
    received = ""
    with pytest.raises(anthropic.APIStatusError) as e:
        async with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=100, messages=user_turn()
        ) as stream:
            async for text in stream.text_stream:
                received += text
    assert received == "y" * 8
    assert not isinstance(e.value, anthropic.OverloadedError)
    assert (e.value.status_code, e.value.type) == (200, "overloaded_error")


async def test_non_streaming_break_is_connection_error(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.default = Script(break_after_chars=0)
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=user_turn())


async def test_request_validation(claude: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    prefill: list[MessageParam] = [*user_turn(), {"role": "assistant", "content": "Sure"}]
    with pytest.raises(anthropic.BadRequestError, match="prefill"):
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=prefill)

    def image(data: bytes, media_type: str = "image/png") -> list[MessageParam]:
        source: Base64ImageSourceParam = {
            "type": "base64",
            "media_type": media_type,  # type: ignore[typeddict-item]
            "data": base64.b64encode(data).decode(),
        }
        return [{"role": "user", "content": [{"type": "image", "source": source}]}]

    await client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=image(PNG))
    with pytest.raises(anthropic.BadRequestError, match="does not match"):
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=image(PNG, "image/jpeg")
        )
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(
            model="claude-3-haiku-20240307", max_tokens=10, messages=user_turn()
        )


async def test_document_validation(claude: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    """What the API rejects about documents, so a bad block stored in a thread fails tests."""
    from slackbot.documents import claude_block
    from tests.documents import pdf

    def documents(*blocks: dict[str, Any]) -> Any:
        return [{"role": "user", "content": [*blocks, {"type": "text", "text": "read"}]}]

    good_pdf = claude_block("application/pdf", base64.b64encode(pdf()).decode(), "a.pdf")
    good_text = claude_block("text/plain", "some text", "a.txt")
    await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=documents(good_pdf, good_text)
    )
    not_a_pdf = claude_block("application/pdf", base64.b64encode(PNG).decode(), "b.pdf")
    empty = claude_block("text/plain", "", "b.txt")
    uncited = {k: v for k, v in good_text.items() if k != "citations"}
    for bad, message in [
        (not_a_pdf, "not valid"),
        (empty, "non-empty"),
        ({**good_pdf, "source": {**good_pdf["source"], "data": "%%%"}}, "base64"),
    ]:
        with pytest.raises(anthropic.BadRequestError, match=message):
            await client.messages.create(
                model="claude-sonnet-4-6", max_tokens=10, messages=documents(bad)
            )
    with pytest.raises(anthropic.BadRequestError, match="all or none"):
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=documents(good_pdf, uncited)
        )


async def test_prompt_cache_accounting(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    system: list[TextBlockParam] = [
        {"type": "text", "text": "You are a bot. " * 50, "cache_control": {"type": "ephemeral"}}
    ]
    history: list[MessageParam] = [
        {"role": "user", "content": "first question " * 20},
        {"role": "assistant", "content": "first answer " * 20},
        {"role": "user", "content": "second question"},
    ]
    first = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=10,
        system=system,
        messages=history[:1],
    )
    u1 = first.usage
    assert u1.cache_read_input_tokens == 0
    assert u1.cache_creation_input_tokens and u1.cache_creation_input_tokens > 0

    # Top-level cache_control marks the last block: the system prefix is read, the rest written.
    second = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=10,
        system=system,
        messages=history,
        cache_control={"type": "ephemeral"},
    )
    u2 = second.usage
    assert u2.cache_read_input_tokens == u1.cache_creation_input_tokens
    assert u2.cache_creation_input_tokens and u2.cache_creation_input_tokens > 0
    assert u2.input_tokens == 0
    total = await client.messages.count_tokens(
        model="claude-sonnet-4-6",
        system=system,
        messages=history,
    )
    assert u2.cache_read_input_tokens + u2.cache_creation_input_tokens == total.input_tokens

    # A different model shares nothing.
    other = await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=10,
        system=system,
        messages=history[:1],
    )
    assert other.usage.cache_read_input_tokens == 0


async def test_models_api(client: anthropic.AsyncAnthropic) -> None:
    model = await client.models.retrieve("claude-sonnet-4-6")
    assert model.max_input_tokens and model.max_tokens and model.capabilities
    assert model.capabilities.image_input.supported
    assert model.lifecycle == "active"
    ids = [m.id async for m in client.models.list(limit=2)]
    assert ids == ["claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5"]  # two pages
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("claude-nope")


# -- The benchmark's process entry point -------------------------------------------------------


async def test_process_entry_point() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fakes",
        "--reply-chars",
        "50",
        "--chat-update-per-minute",
        "5",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        web = AsyncWebClient(token=info["bot_token"], base_url=info["slack_api_url"])
        await web.chat_postMessage(channel="C1", text="hi")
        async with anthropic.AsyncAnthropic(
            api_key="k", base_url=info["claude_url"], max_retries=0
        ) as client:
            message = await client.messages.create(
                model="claude-sonnet-4-6", max_tokens=100, messages=user_turn()
            )
        assert len(text_of(message)) == 50
        async with aiohttp.ClientSession() as http:
            async with http.get(info["slack_url"] + "/_control/stats") as r:
                stats = await r.json()
            assert stats["calls"] == {"chat.postMessage": 1}
            assert stats["messages"][0]["bot"] is True
            assert "posted_at" in stats["messages"][0]
            async with http.post(info["slack_url"] + "/_control/reset") as r:
                assert r.status == 200
            async with http.get(info["slack_url"] + "/_control/stats") as r:
                assert (await r.json())["calls"] == {}
            async with http.get(info["claude_url"] + "/_control/stats") as r:
                assert (await r.json())["requests"] == 1
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
