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
from typing import Any, cast

import aiohttp
import anthropic
import pytest
from anthropic.types import (
    Base64ImageSourceParam,
    DocumentBlockParam,
    Message,
    MessageParam,
    RawMessageStartEvent,
    TextBlockParam,
    ThinkingConfigParam,
    ToolUnionParam,
)
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

from fakes.claude import (
    CURRENT_MODEL,
    Block,
    DocCitation,
    FakeClaude,
    RawBlock,
    RedactedThinking,
    Script,
    ServerToolUse,
    Text,
    Thinking,
    WebCitation,
    WebFetchResult,
    WebSearchResult,
    current_models,
    default_models,
    model_info,
)
from fakes.slack import (
    FakeSlack,
    FakeSocketModeServer,
    event_callback,
    message_event,
    signed_event_request,
)

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
PDF_B64 = base64.b64encode(b"%PDF-1.7\n%fake\n").decode()


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


def assistant_turn(blocks: list[dict[str, Any]]) -> MessageParam:
    """An assistant turn of raw blocks, as a client sends back what it received."""
    return cast(MessageParam, {"role": "assistant", "content": blocks})


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


# -- Scripted content blocks: thinking, server tools, citations --------------------------------

WEB_SEARCH: ToolUnionParam = {"type": "web_search_20260318", "name": "web_search"}
SUMMARIZED: ThinkingConfigParam = {"type": "adaptive", "display": "summarized"}
RUST_BLOG = "https://blog.rust-lang.org/2023/12/21/async-fn-rpit-in-traits.html"


def stream_shape(events: list[Any]) -> list[str]:
    """The raw events as `start:<block>`, `<delta type>`, `stop` or the event's type (the SDK's
    own derived events — `text`, `thinking`, `citation`… — left out)."""
    shape = []
    for event in events:
        if event.type == "content_block_start":
            shape.append(f"start:{event.content_block.type}")
        elif event.type == "content_block_delta":
            shape.append(event.delta.type)
        elif event.type == "content_block_stop":
            shape.append("stop")
        elif event.type in ("message_start", "message_delta", "message_stop"):
            shape.append(event.type)
    return shape


async def test_stream_thinking_search_and_cited_text(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.models = current_models()
    claude.default = Script(
        chars_per_token=10,
        blocks=[
            Thinking("Let me search…", signature="sig1"),
            ServerToolUse("web_search", {"query": "rust async traits"}),
            WebSearchResult(
                [{"url": RUST_BLOG, "title": "Async fn in traits", "page_age": "2 years ago"}]
            ),
            Text("Async traits are stable", citations=[WebCitation(RUST_BLOG, "stable in 1.75")]),
            Text(" since 1.75."),
        ],
    )
    async with client.messages.stream(
        model=CURRENT_MODEL,
        max_tokens=1000,
        messages=user_turn("are async traits stable?"),
        tools=[WEB_SEARCH],
        thinking=SUMMARIZED,
    ) as stream:
        events = [event async for event in stream]
        message = await stream.get_final_message()

    assert stream_shape(events) == [
        "message_start",
        *["start:thinking", "thinking_delta", "thinking_delta", "signature_delta", "stop"],
        "start:server_tool_use",
        *["input_json_delta"] * 4,  # "" first, then '{"query": "rust async traits"}' in 10s
        "stop",
        *["start:web_search_tool_result", "stop"],  # the results come whole
        *["start:text", "citations_delta", "text_delta", "text_delta", "text_delta", "stop"],
        *["start:text", "text_delta", "text_delta", "stop"],
        "message_delta",
        "message_stop",
    ]
    cited_start = [e for e in events if e.type == "content_block_start"][3]
    assert cited_start.content_block.to_dict() == {"type": "text", "text": "", "citations": []}

    thinking, tool_use, result, cited, plain = message.content
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("Let me search…", "sig1")
    assert tool_use.type == "server_tool_use"
    assert (tool_use.name, tool_use.input) == ("web_search", {"query": "rust async traits"})
    assert tool_use.id.startswith("srvtoolu_")
    assert result.type == "web_search_tool_result" and result.tool_use_id == tool_use.id
    assert isinstance(result.content, list)
    assert [(r.url, r.title, r.page_age) for r in result.content] == [
        (RUST_BLOG, "Async fn in traits", "2 years ago")
    ]
    assert result.content[0].encrypted_content
    assert cited.type == "text" and cited.text == "Async traits are stable"
    assert cited.citations is not None
    [citation] = cited.citations
    assert citation.type == "web_search_result_location"
    assert (citation.url, citation.title, citation.cited_text) == (
        RUST_BLOG,
        "Async fn in traits",  # from the result, as the script gave none
        "stable in 1.75",
    )
    assert citation.encrypted_index
    assert plain.type == "text" and plain.text == " since 1.75." and plain.citations is None

    usage = message.usage
    assert usage.server_tool_use is not None
    assert (
        usage.server_tool_use.web_search_requests,
        usage.server_tool_use.web_fetch_requests,
    ) == (
        1,
        0,
    )
    assert isinstance(events[0], RawMessageStartEvent)
    start_usage = events[0].message.usage
    assert usage.input_tokens > start_usage.input_tokens  # the results are input too
    assert start_usage.server_tool_use is None  # message_start has the input counts only
    assert usage.output_tokens == 2 + 3 + 3 + 2  # thinking, tool input, text pieces
    assert usage.output_tokens_details is not None
    assert usage.output_tokens_details.thinking_tokens == 2
    # What the fake recorded is what the SDK accumulated.
    assert claude.responses[-1]["content"] == [block.to_dict() for block in message.content]


async def test_redacted_thinking_web_fetch_and_document_citations(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    notes = "Q3 revenue grew 12%. Churn fell to 2%."
    text_doc: DocumentBlockParam = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": notes},
        "title": "notes.txt",
        "citations": {"enabled": True},
    }
    pdf_doc: DocumentBlockParam = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
        "title": "report.pdf",
        "citations": {"enabled": True},
    }
    messages: list[MessageParam] = [
        {"role": "user", "content": [text_doc, pdf_doc, {"type": "text", "text": "summarise"}]}
    ]
    fetch: ToolUnionParam = {
        "type": "web_fetch_20260318",
        "name": "web_fetch",
        "citations": {"enabled": True},
        "max_uses": 2,
    }
    claude.default = Script(
        blocks=[
            RedactedThinking("opaque-bytes"),
            ServerToolUse("web_fetch", {"url": "https://example.com/q3"}),
            WebFetchResult("https://example.com/q3", "Q3 in brief.", title="Q3", seconds=0.05),
            Text("Revenue grew 12%", citations=[DocCitation("Q3 revenue grew 12%.", 0)]),
            Text(" and the report agrees.", citations=[DocCitation("growth", 1, start=3)]),
        ],
    )
    async with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=1000, messages=messages, tools=[fetch]
    ) as stream:
        events = [event async for event in stream]
        message = await stream.get_final_message()

    shape = stream_shape(events)
    assert shape[1:3] == ["start:redacted_thinking", "stop"]
    assert shape.count("start:web_fetch_tool_result") == 1
    redacted, tool_use, fetched, first, second = message.content
    assert redacted.type == "redacted_thinking" and redacted.data == "opaque-bytes"
    assert tool_use.type == "server_tool_use" and tool_use.name == "web_fetch"
    assert tool_use.input == {"url": "https://example.com/q3"}
    assert fetched.type == "web_fetch_tool_result" and fetched.tool_use_id == tool_use.id
    assert fetched.content.type == "web_fetch_result"
    assert fetched.content.url == "https://example.com/q3"
    document = fetched.content.content
    assert (document.title, document.source.data) == ("Q3", "Q3 in brief.")
    assert document.citations is not None and document.citations.enabled  # the tool asked
    assert first.type == "text" and first.citations is not None
    assert first.citations[0].to_dict() == {
        "type": "char_location",
        "cited_text": "Q3 revenue grew 12%.",
        "document_index": 0,
        "document_title": "notes.txt",
        "start_char_index": 0,
        "end_char_index": 20,
    }
    assert second.type == "text" and second.citations is not None
    page = second.citations[0]
    assert page.type == "page_location"
    assert (page.document_index, page.document_title) == (1, "report.pdf")
    assert (page.start_page_number, page.end_page_number) == (3, 4)
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_fetch_requests == 1
    assert message.usage.server_tool_use.web_search_requests == 0


async def test_thinking_text_is_omitted_unless_summarized(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.default = Script(blocks=[Thinking("a private plan"), Text("Done.")])
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "messages": user_turn(),
    }
    async with client.messages.stream(**kwargs, thinking={"type": "adaptive"}) as stream:
        omitted = await stream.get_final_message()
    async with client.messages.stream(**kwargs, thinking=SUMMARIZED) as stream:
        summarized = await stream.get_final_message()

    hidden, shown = omitted.content[0], summarized.content[0]
    assert hidden.type == "thinking" and shown.type == "thinking"
    assert hidden.thinking == "" and hidden.signature  # the 5.x default display
    assert shown.thinking == "a private plan" and shown.signature != hidden.signature
    # Thinking costs its tokens whether or not it is shown.
    assert omitted.usage.output_tokens == summarized.usage.output_tokens == 4 + 2


async def test_pacing_across_blocks(claude: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    """Hidden thinking (10 tokens) and tool input (4) come first, then a 0.2 s search: the first
    text token is due 0.1 + 0.14 + 0.2 s in, and the text's 10 tokens 0.09 s apart."""
    claude.default = Script(
        ttft=0.1,
        tokens_per_second=100,
        blocks=[
            Thinking("t" * 40),
            ServerToolUse("web_search", {"query": "q"}),
            WebSearchResult([{"url": "https://a.example", "title": "A"}], seconds=0.2),
            Text("x" * 40),
        ],
    )
    started = time.monotonic()
    arrivals = []
    async with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=user_turn(), tools=[WEB_SEARCH]
    ) as stream:
        async for _ in stream.text_stream:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 10
    assert 0.44 <= arrivals[0] < 0.6
    assert arrivals[-1] - arrivals[0] == pytest.approx(9 / 100, abs=0.06)


async def test_max_tokens_cuts_across_blocks(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.default = Script(blocks=[Thinking("abcdefghijkl"), Text("b" * 40), Text("never")])
    for stream_it in (True, False):
        request: dict[str, Any] = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 5,
            "messages": user_turn(),
            "thinking": SUMMARIZED,
        }
        if stream_it:
            async with client.messages.stream(**request) as stream:
                message = await stream.get_final_message()
        else:
            message = await client.messages.create(**request)
        thinking, text = message.content
        assert thinking.type == "thinking" and thinking.thinking == "abcdefghijkl"
        assert thinking.signature  # the signature follows the last thinking token
        assert text.type == "text" and text.text == "bb" * 4
        assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 5)


async def test_a_cut_counts_text_only(claude: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    claude.default = Script(
        blocks=[Thinking("t" * 40), Text("x" * 8), Text("y" * 40)], error_event_after_chars=12
    )
    received = ""
    with pytest.raises(anthropic.APIStatusError) as e:
        async with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=100, messages=user_turn(), thinking=SUMMARIZED
        ) as stream:
            async for text in stream.text_stream:
                received += text
    assert received == "x" * 8 + "y" * 4
    assert e.value.type == "overloaded_error"
    assert claude.responses == []  # only whole replies are recorded


async def test_non_streaming_blocks_match_the_stream(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.default = Script(
        blocks=[
            ServerToolUse("web_search", {"query": "q"}, id="srvtoolu_fixed"),
            WebSearchResult([{"url": "https://a.example", "title": "A"}]),
            Text("A says so.", citations=[WebCitation("https://a.example", "so")]),
            RawBlock({"type": "text", "text": " Raw."}),
        ]
    )
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "messages": user_turn(),
        "tools": [WEB_SEARCH],
    }
    created = await client.messages.create(**request)
    async with client.messages.stream(**request) as stream:
        streamed = await stream.get_final_message()
    assert [b.to_dict() for b in created.content] == [b.to_dict() for b in streamed.content]
    assert created.usage == streamed.usage
    assert created.usage.server_tool_use is not None
    assert created.usage.server_tool_use.web_search_requests == 1
    assert [r["content"] for r in claude.responses] == [[b.to_dict() for b in created.content]] * 2


async def test_max_uses_and_failed_searches_are_not_billed(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    limited: ToolUnionParam = {"type": "web_search_20260318", "name": "web_search", "max_uses": 1}
    claude.default = Script(
        blocks=[
            ServerToolUse("web_search", {"query": "one"}),
            WebSearchResult([{"url": "https://a.example", "title": "A"}]),
            ServerToolUse("web_search", {"query": "two"}),
            WebSearchResult([{"url": "https://b.example", "title": "B"}]),
            ServerToolUse("web_search", {"query": "three"}),
            WebSearchResult(error_code="unavailable"),
            Text("Only one search ran."),
        ]
    )
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=user_turn(), tools=[limited]
    )
    results = [b for b in message.content if b.type == "web_search_tool_result"]
    assert isinstance(results[0].content, list)
    errors = [r.content for r in results[1:]]
    assert [e.error_code for e in errors if not isinstance(e, list)] == [
        "max_uses_exceeded",
        "max_uses_exceeded",  # past max_uses, whatever the script said
    ]
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 1


@pytest.mark.parametrize(
    ("blocks", "tools", "complaint"),
    [
        ([ServerToolUse("web_search", {"query": "q"})], [], "offers no web_search tool"),
        ([WebSearchResult([])], [WEB_SEARCH], "before any web_search call"),
        ([Text("x", citations=[WebCitation("https://nowhere.example", "x")])], [], "no search"),
        ([Text("x", citations=[DocCitation("x", 0)])], [], "the request has 0"),
    ],
)
async def test_a_script_the_api_could_not_send_is_a_400(
    claude: FakeClaude,
    client: anthropic.AsyncAnthropic,
    blocks: list[Block],
    tools: list[ToolUnionParam],
    complaint: str,
) -> None:
    claude.default = Script(blocks=blocks)
    with pytest.raises(anthropic.BadRequestError, match="FakeClaude script"):
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=user_turn(), tools=tools
        )
    [error] = claude.script_errors
    assert complaint in error


async def test_citing_a_document_without_citations_enabled_is_a_400(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    document: DocumentBlockParam = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "plain"},
    }
    claude.default = Script(blocks=[Text("x", citations=[DocCitation("plain", 0)])])
    with pytest.raises(anthropic.BadRequestError, match="does not enable citations"):
        await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=[{"role": "user", "content": [document, {"type": "text", "text": "hi"}]}],
        )


# -- pause_turn and thinking sent back --------------------------------------------------------


async def test_a_paused_turn_is_continued_with_its_content_verbatim(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.queue = [
        Script(
            blocks=[
                Thinking("Two searches needed."),
                ServerToolUse("web_search", {"query": "rust 1.75"}),
                WebSearchResult([{"url": RUST_BLOG, "title": "Async fn in traits"}]),
            ],
            stop_reason="pause_turn",
        ),
        Script(blocks=[Text("Stable since 1.75.", citations=[WebCitation(RUST_BLOG, "1.75")])]),
    ]
    question = user_turn("are async traits stable?")
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "tools": [WEB_SEARCH],
        "thinking": SUMMARIZED,
    }
    async with client.messages.stream(**request, messages=question) as stream:
        paused = await stream.get_final_message()
    assert paused.stop_reason == "pause_turn"

    # Sent back as the SDK gave it, with a cache breakpoint on the last block as the bot adds.
    content = [block.to_dict() for block in paused.content]
    content[-1]["cache_control"] = {"type": "ephemeral"}
    continued = [*question, assistant_turn(content)]
    async with client.messages.stream(**request, messages=continued) as stream:
        final = await stream.get_final_message()

    assert final.stop_reason == "end_turn"
    [text] = final.content
    assert text.type == "text" and text.citations is not None
    citation = text.citations[0]
    assert citation.type == "web_search_result_location"
    assert citation.title == "Async fn in traits"  # known from the paused turn
    assert claude.continuations == [claude.requests[1]]
    sent_back = claude.requests[1]["messages"][-1]["content"]
    assert [{k: v for k, v in b.items() if k != "cache_control"} for b in sent_back] == (
        claude.responses[0]["content"]
    )


async def test_a_paused_turn_sent_back_changed_is_prefill(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.default = Script(
        blocks=[
            ServerToolUse("web_search", {"query": "one"}),
            WebSearchResult([{"url": "https://a.example", "title": "A"}]),
        ],
        stop_reason="pause_turn",
    )
    question = user_turn()
    paused = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=question, tools=[WEB_SEARCH]
    )
    content = [block.to_dict() for block in paused.content]
    changed = [{**content[0], "input": {"query": "two"}}, content[1]]
    extended: list[dict[str, Any]] = [*content, {"type": "text", "text": "and"}]
    wrongs = [changed, content[:1], extended]
    for wrong in wrongs:
        with pytest.raises(anthropic.BadRequestError, match="prefill"):
            await client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=100,
                messages=[*question, assistant_turn(wrong)],
                tools=[WEB_SEARCH],
            )
    # Paused twice: both replies go back, as two assistant turns or merged into one.
    again = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[*question, assistant_turn(content)],
        tools=[WEB_SEARCH],
    )
    both = content + [block.to_dict() for block in again.content]
    await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[*question, assistant_turn(both)],
        tools=[WEB_SEARCH],
    )
    assert len(claude.continuations) == 2


async def test_cache_breakpoints_on_a_continued_turn(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    """The prompt the paused request wrote is read back by its continuation; the paused
    blocks, up to the breakpoint on the last of them, are written."""
    claude.queue = [
        Script(
            blocks=[
                ServerToolUse("web_search", {"query": "q"}),
                WebSearchResult([{"url": "https://a.example", "title": "A"}]),
            ],
            stop_reason="pause_turn",
        ),
        Script(text="Done."),
    ]
    system: list[TextBlockParam] = [{"type": "text", "text": "You are a bot. " * 50}]
    question = user_turn("q " * 200)
    request: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 100, "system": system}
    paused = await client.messages.create(
        **request, messages=question, tools=[WEB_SEARCH], cache_control={"type": "ephemeral"}
    )
    content = [block.to_dict() for block in paused.content]
    content[-1]["cache_control"] = {"type": "ephemeral"}
    final = await client.messages.create(
        **request, messages=[*question, assistant_turn(content)], tools=[WEB_SEARCH]
    )
    written = paused.usage.cache_creation_input_tokens
    assert written and final.usage.cache_read_input_tokens == written
    added = claude.estimate_tokens(claude.requests[1]) - claude.estimate_tokens(claude.requests[0])
    assert final.usage.cache_creation_input_tokens == added > 0
    assert final.usage.input_tokens == 0


async def test_thinking_goes_back_signed_and_unchanged(
    claude: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    claude.default = Script(blocks=[Thinking("plan"), Text("Answer.")])
    first = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=user_turn(), thinking=SUMMARIZED
    )
    thinking = first.content[0].to_dict()

    def history(block: dict[str, Any]) -> list[MessageParam]:
        reply = assistant_turn([block, {"type": "text", "text": "A"}])
        return [*user_turn(), reply, *user_turn("and then?")]

    await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=history(thinking)
    )
    unsigned = {k: v for k, v in thinking.items() if k != "signature"}
    with pytest.raises(anthropic.BadRequestError, match="signature: Field required"):
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=100, messages=history(unsigned)
        )
    with pytest.raises(anthropic.BadRequestError, match="cannot be modified"):
        await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=100,
            messages=history({**thinking, "thinking": "a better plan"}),
        )
    with pytest.raises(anthropic.BadRequestError, match="data: Field required"):
        await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=100,
            messages=history({"type": "redacted_thinking", "data": ""}),
        )


# -- Request checks of the current models ----------------------------------------------------


@pytest.fixture
async def current(claude: FakeClaude) -> FakeClaude:
    """The fake with CURRENT_MODEL listed, and a model with none of the newer features."""
    claude.models = current_models()
    claude.models["claude-plain"] = model_info(
        "claude-plain",
        "Plain",
        created_at="2025-01-01T00:00:00Z",
        line=None,
        pdf_input=False,
        thinking_types=("disabled",),
        effort_levels=(),
        server_tools=("web_search",),
    )
    return claude


FETCH: ToolUnionParam = {"type": "web_fetch_20260318", "name": "web_fetch"}


@pytest.mark.parametrize(
    ("params", "model", "complaint"),  # sent as extra_body: SDK 2.x has no temperature kwarg
    [
        ({"temperature": 0.5}, CURRENT_MODEL, "temperature"),
        ({"top_p": 0.9}, CURRENT_MODEL, "top_p"),
        ({"top_k": 5}, "claude-sonnet-4-6", "top_k"),
        ({"tools": [WEB_SEARCH], "tool_choice": {"type": "any"}}, CURRENT_MODEL, "forced"),
        (
            {"tools": [WEB_SEARCH], "tool_choice": {"type": "tool", "name": "web_search"}},
            CURRENT_MODEL,
            "forced",
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, CURRENT_MODEL, "'enabled'"),
        ({"thinking": {"type": "sometimes"}}, CURRENT_MODEL, "thinking.type"),
        ({"thinking": {"type": "adaptive"}}, "claude-plain", "'adaptive' is not supported"),
        ({"thinking": {"type": "adaptive", "display": "full"}}, CURRENT_MODEL, "display"),
        ({"output_config": {"effort": "extreme"}}, CURRENT_MODEL, "effort"),
        ({"output_config": {"effort": "xhigh"}}, "claude-sonnet-4-6", "'xhigh' is not supported"),
        ({"output_config": {"effort": "low"}}, "claude-plain", "'low' is not supported"),
        (
            {"tools": [{**WEB_SEARCH, "allowed_domains": ["a.dev"], "blocked_domains": ["b.dev"]}]},
            CURRENT_MODEL,
            "cannot be used together",
        ),
        (
            {"tools": [{**FETCH, "allowed_domains": ["a.dev"], "blocked_domains": ["b.dev"]}]},
            CURRENT_MODEL,
            "cannot be used together",
        ),
        ({"tools": [{**WEB_SEARCH, "max_uses": 0}]}, CURRENT_MODEL, "max_uses"),
        ({"tools": [{**FETCH, "citations": {"enabled": "yes"}}]}, CURRENT_MODEL, "citations"),
        (
            {"tools": [{"type": "web_search_20991231", "name": "web_search"}]},
            CURRENT_MODEL,
            "unknown tool type",
        ),
        (
            {"tools": [{"type": "web_search_20260318", "name": "search"}]},
            CURRENT_MODEL,
            "Input should be 'web_search'",
        ),
        ({"tools": [FETCH]}, "claude-plain", "web_fetch is not supported"),
        ({"tools": [WEB_SEARCH, WEB_SEARCH]}, CURRENT_MODEL, "unique"),
        ({"tools": [{"name": "lookup"}]}, CURRENT_MODEL, "input_schema"),
    ],
)
async def test_what_current_models_refuse(
    current: FakeClaude,
    client: anthropic.AsyncAnthropic,
    params: dict[str, Any],
    model: str,
    complaint: str,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=complaint) as e:
        await client.messages.create(
            model=model, max_tokens=4000, messages=user_turn(), extra_body=params
        )
    assert e.value.type == "invalid_request_error"
    assert current.responses == []


@pytest.mark.parametrize(
    ("params", "model"),
    [
        ({"temperature": 1.0, "top_p": 1.0}, CURRENT_MODEL),  # the defaults, spelled out
        ({"tools": [WEB_SEARCH], "tool_choice": {"type": "auto"}}, CURRENT_MODEL),
        ({"tools": [WEB_SEARCH], "tool_choice": {"type": "none"}}, CURRENT_MODEL),
        (
            {
                "thinking": {"type": "adaptive", "display": "summarized"},
                "output_config": {"effort": "xhigh"},
            },
            CURRENT_MODEL,
        ),
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "low"}}, CURRENT_MODEL),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "claude-sonnet-4-6"),
        ({"thinking": {"type": "adaptive"}}, "claude-model-the-fake-does-not-list"),
        (
            {
                "tools": [
                    {**WEB_SEARCH, "max_uses": 3, "allowed_domains": ["docs.rs"]},
                    {**FETCH, "citations": {"enabled": True}, "blocked_domains": ["x.dev"]},
                    {"type": "code_execution_20260521", "name": "code_execution"},
                    {"name": "lookup", "input_schema": {"type": "object"}},
                ]
            },
            CURRENT_MODEL,
        ),
    ],
)
async def test_what_current_models_accept(
    current: FakeClaude, client: anthropic.AsyncAnthropic, params: dict[str, Any], model: str
) -> None:
    await client.messages.create(
        model=model, max_tokens=4000, messages=user_turn(), extra_body=params
    )
    assert current.requests[-1]["model"] == model


async def test_legacy_rules_per_model(
    current: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    current.legacy_rule_models.add("claude-sonnet-4-6")
    legacy = {
        "temperature": 0.2,
        "top_k": 40,
        "tools": [WEB_SEARCH],
        "tool_choice": {"type": "any"},
    }
    await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=user_turn(), extra_body=legacy
    )
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        await client.messages.create(
            model=CURRENT_MODEL, max_tokens=10, messages=user_turn(), extra_body=legacy
        )


def document_turn(source: dict[str, Any], **extra: Any) -> list[MessageParam]:
    block = {"type": "document", "source": source, **extra}
    return [cast(MessageParam, {"role": "user", "content": [block, {"type": "text", "text": "?"}]})]


@pytest.mark.parametrize(
    ("source", "extra", "model", "complaint"),
    [
        (
            {"type": "base64", "media_type": "application/x-pdf", "data": PDF_B64},
            {},
            CURRENT_MODEL,
            "application/pdf",
        ),
        (
            {"type": "base64", "media_type": "application/pdf", "data": "not base64!"},
            {},
            CURRENT_MODEL,
            "invalid base64",
        ),
        (
            {
                "type": "base64",
                "media_type": "application/pdf",
                "data": base64.b64encode(PNG).decode(),
            },
            {},
            CURRENT_MODEL,
            "PDF specified was not valid",
        ),
        (
            {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
            {},
            "claude-plain",
            "does not support PDF input",
        ),
        (
            {"type": "text", "media_type": "text/csv", "data": "a,b"},
            {},
            CURRENT_MODEL,
            "text/plain",
        ),
        ({"type": "text", "media_type": "text/plain"}, {}, CURRENT_MODEL, "data: Field required"),
        ({"type": "pigeon"}, {}, CURRENT_MODEL, "source.type"),
        (
            {"type": "text", "media_type": "text/plain", "data": "a"},
            {"citations": {"enabled": 1}},
            CURRENT_MODEL,
            "citations.enabled",
        ),
    ],
)
async def test_documents_are_checked(
    current: FakeClaude,
    client: anthropic.AsyncAnthropic,
    source: dict[str, Any],
    extra: dict[str, Any],
    model: str,
    complaint: str,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=complaint):
        await client.messages.create(
            model=model, max_tokens=10, messages=document_turn(source, **extra)
        )


async def test_good_documents_and_the_request_size_limit(
    current: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}
    text = {"type": "text", "media_type": "text/plain", "data": "notes"}
    for source in (pdf, text):
        await client.messages.create(
            model=CURRENT_MODEL,
            max_tokens=10,
            messages=document_turn(source, title="a", citations={"enabled": True}),
        )
    huge = {"type": "text", "media_type": "text/plain", "data": "x" * (32 * 1024 * 1024)}
    with pytest.raises(anthropic.APIStatusError) as e:
        await client.messages.create(
            model=CURRENT_MODEL, max_tokens=10, messages=document_turn(huge)
        )
    assert (e.value.status_code, e.value.type) == (413, "request_too_large")
    with pytest.raises(anthropic.APIStatusError) as e:
        await client.messages.count_tokens(model=CURRENT_MODEL, messages=document_turn(huge))
    assert e.value.status_code == 413


async def test_models_api(client: anthropic.AsyncAnthropic) -> None:
    model = await client.models.retrieve("claude-sonnet-4-6")
    assert model.max_input_tokens and model.max_tokens and model.capabilities
    assert model.capabilities.image_input.supported
    assert model.lifecycle == "active"
    ids = [m.id async for m in client.models.list(limit=2)]
    assert ids == ["claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5"]  # two pages
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("claude-nope")


async def test_current_model_and_described_capabilities() -> None:
    async with (
        FakeClaude(models=current_models()) as claude,
        anthropic.AsyncAnthropic(api_key="k", base_url=claude.base_url, max_retries=0) as client,
    ):
        claude.models["claude-plain"] = model_info(
            "claude-plain",
            "Plain",
            created_at="2025-01-01T00:00:00Z",
            line=None,
            thinking_types=("disabled",),
            effort_levels=(),
            server_tools=("web_search",),
        )
        newest = (await client.models.list(limit=1)).data[0].id
        current = await client.models.retrieve(CURRENT_MODEL)
        plain = await client.models.retrieve("claude-plain")
    assert newest == CURRENT_MODEL == "claude-sonnet-5-5"
    assert (current.display_name, current.line) == ("Claude Sonnet 5.5", "sonnet")
    assert (current.max_input_tokens, current.max_tokens) == (1_000_000, 128_000)
    caps = current.capabilities
    assert caps is not None
    assert caps.thinking.types.adaptive.supported and not caps.thinking.types.enabled.supported
    assert caps.effort.xhigh is not None and caps.effort.xhigh.supported
    assert caps.server_tools.web_search.supported and caps.server_tools.code_execution.supported
    assert caps.server_tools.to_dict()["web_fetch"] == {"supported": True}  # newer than the SDK
    assert plain.capabilities is not None
    assert not plain.capabilities.thinking.supported
    assert not plain.capabilities.effort.supported and not plain.capabilities.effort.low.supported
    assert plain.capabilities.server_tools.to_dict()["web_fetch"] == {"supported": False}
    assert set(default_models()) < set(current_models())


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
