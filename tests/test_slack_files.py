"""Downloading Slack files over real HTTP, against the fake Slack on 127.0.0.1 (`fakes.slack`).

The fake's API URL (`http://127.0.0.1:PORT/api/`) is the configured `SLACK_API_URL`, so that
origin is trusted; the same server addressed as `localhost` is a different, untrusted host.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from fakes.slack import FakeSlack
from slackbot.errors import FileRefused
from slackbot.slack_files import (
    Downloaded,
    Origin,
    SlackFiles,
    files_info_from,
    trusted_origins,
)
from tests.images import encode, gradient

TOKEN = "xoxb-test-token"
HUGE = 200 * 1024 * 1024
PNG = encode(gradient(10, 10), "PNG")


def downloader(session: aiohttp.ClientSession, slack: FakeSlack, **options: Any) -> SlackFiles:
    options.setdefault("bot_token", slack.bot_token)
    return SlackFiles(session=session, trusted_hosts=[slack.api_url], **options)


@pytest.fixture
def files(session: aiohttp.ClientSession, slack: FakeSlack) -> SlackFiles:
    return downloader(session, slack)


async def fetch(files: SlackFiles, file: dict[str, Any]) -> Downloaded:
    """What `Attachments` does before converting: resolve, then download."""
    return await files.download(await files.resolve(file))


async def refusal(files: SlackFiles, file: dict[str, Any]) -> FileRefused:
    with pytest.raises(FileRefused) as refused:
        await fetch(files, file)
    return refused.value


def at(file: dict[str, Any], url: str) -> dict[str, Any]:
    """The file object with its links pointing at `url`."""
    return file | {"url_private": url, "url_private_download": url}


def via_redirect(slack: FakeSlack, target: str, hops: int = 1) -> str:
    return f"{slack.base_url}/redirect?hops={hops}&to={target}"


# --- Which hosts get the token


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://files.slack.com/files-pri/T1-F1/a.png", True),
        ("https://slack.com/files/a.png", True),
        ("https://files-origin.slack.com/files-pri/T1-F1/a.png", True),
        ("https://FILES.Slack.com./a.png", True),
        ("https://slack-files.com/T1-F1-abc", True),
        ("https://files.slack-files.com/a.png", True),
        ("https://slack-gov.com/files/a.png", True),
        ("https://files.slack-gov.com/a.png", True),
        ("https://files.slack.com:443/a.png", True),
        ("http://127.0.0.1:9/files/a.png", True),
        ("HTTP://127.0.0.1:9/files/a.png", True),
        ("https://127.0.0.1/api/", False),  # the API's host, but not its scheme or port
        ("https://127.0.0.1:9/api/", False),  # its port, but https instead of http
        ("http://127.0.0.1/files/a.png", False),  # port 80
        ("http://127.0.0.1:10/files/a.png", False),
        ("https://files.slack.com:8443/a.png", False),
        ("http://files.slack.com:443/a.png", False),
        ("https://evilslack.com/a.png", False),
        ("https://slack.com.evil.com/a.png", False),
        ("https://notslack-files.com/a.png", False),
        ("https://slack.com@evil.com/a.png", False),
        ("https://user:password@files.slack.com/a.png", False),
        ("https://evil.com\\@files.slack.com/a.png", False),
        ("https://evil.com%2efiles.slack.com/a.png", False),
        ("http://files.slack.com/a.png", False),
        ("ftp://files.slack.com/a.png", False),
        ("//files.slack.com/a.png", False),
        ("files.slack.com/a.png", False),
        ("http://localhost:9/files/a.png", False),
        ("http://127.0.0.2/files/a.png", False),
        ("http://sub.127.0.0.1/a.png", False),
        ("", False),
        ("not a url", False),
    ],
)
def test_is_trusted(session: aiohttp.ClientSession, url: str, trusted: bool) -> None:
    files = SlackFiles(
        session=session,
        bot_token=TOKEN,
        trusted_hosts=["http://127.0.0.1:9/api/"],
    )
    assert files.is_trusted(url) is trusted


def test_slack_api_host_stays_https_only(session: aiohttp.ClientSession) -> None:
    """Configuring the real API URL must not make plain-http slack.com trusted."""
    files = SlackFiles(
        session=session,
        bot_token=TOKEN,
        trusted_hosts=["https://slack.com/api/", "files.slack.com", "http://slack.com/api/"],
    )
    assert not files.is_trusted("http://slack.com/files/a.png")
    assert not files.is_trusted("http://files.slack.com/a.png")
    assert files.is_trusted("https://files.slack.com/a.png")


def test_trusted_origins() -> None:
    """SLACK_API_URL exactly; a bare SLACK_FILE_HOSTS name is https on 443, `host:port` https on
    that port, a URL exactly what it says."""
    origins = trusted_origins(
        [
            "http://127.0.0.1:8080/api/",
            "files.example.com",
            "cdn.example.com:8443",
            " https://Grid.Example.com/ ",
            "http://proxy.example.com",
            "",
        ]
    )
    assert origins == {
        Origin("http", "127.0.0.1", 8080),
        Origin("https", "files.example.com", 443),
        Origin("https", "cdn.example.com", 8443),
        Origin("https", "grid.example.com", 443),
        Origin("http", "proxy.example.com", 80),
    }
    assert trusted_origins([]) == frozenset()
    for bad in ("bad%host", "ftp://files.example.com", "files.example.com:99999", "https://"):
        with pytest.raises(ValueError, match="not a host name"):
            trusted_origins([bad])


@pytest.mark.parametrize(
    ("entry", "url", "trusted"),
    [
        ("files.example.com", "https://files.example.com/a.png", True),
        ("files.example.com", "https://files.example.com:443/a.png", True),
        ("files.example.com", "http://files.example.com/a.png", False),
        ("files.example.com", "https://files.example.com:8443/a.png", False),
        ("files.example.com:8443", "https://files.example.com:8443/a.png", True),
        ("files.example.com:8443", "https://files.example.com/a.png", False),
        ("http://files.example.com:8080", "http://files.example.com:8080/a.png", True),
        ("http://files.example.com:8080", "https://files.example.com:8080/a.png", False),
        ("https://files.example.com/", "https://files.example.com/a.png", True),
    ],
)
def test_file_host_entries_mean_one_origin(
    session: aiohttp.ClientSession, entry: str, url: str, trusted: bool
) -> None:
    files = SlackFiles(session=session, bot_token=TOKEN, trusted_hosts=[entry])
    assert files.is_trusted(url) is trusted


def test_repr_does_not_show_the_token(files: SlackFiles) -> None:
    assert TOKEN not in repr(files)


# --- Downloads


async def test_authorised_download_returns_the_bytes(files: SlackFiles, slack: FakeSlack) -> None:
    file = slack.add_file(name="a.png", mimetype="image/png", content=PNG)

    assert await fetch(files, file) == Downloaded(data=PNG, content_type="image/png", size=len(PNG))
    assert [(d.path, d.auth_header_value) for d in slack.downloads] == [
        (f"/files-pri/T1-{file['id']}/download/a.png", f"Bearer {TOKEN}")
    ]


async def test_falls_back_to_url_private(files: SlackFiles, slack: FakeSlack) -> None:
    file = slack.add_file(name="a.png", mimetype="image/png", content=PNG)
    del file["url_private_download"]

    assert (await fetch(files, file)).data == PNG
    assert [d.path for d in slack.downloads] == [f"/files-pri/T1-{file['id']}/a.png"]


async def test_sign_in_page_becomes_a_note_about_the_scope(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    files = downloader(session, slack, bot_token="xoxb-without-files-read")
    file = slack.add_file(name="a.png", mimetype="image/png", content=PNG)

    refused = await refusal(files, file)

    assert (refused.name, refused.text) == (
        "a.png",
        "I couldn't download a.png (Slack refused access — is the `files:read` scope granted?)",
    )


async def test_redirect_to_the_same_trusted_host_keeps_the_token(
    files: SlackFiles, slack: FakeSlack
) -> None:
    target = slack.add_file(name="a.png", mimetype="image/png", content=PNG)
    file = at(target, via_redirect(slack, target["url_private"], hops=3))

    assert (await fetch(files, file)).data == PNG

    assert [d.path.partition("?")[0] for d in slack.downloads] == ["/redirect"] * 3 + [
        f"/files-pri/T1-{target['id']}/a.png"
    ]
    assert {d.auth_header_value for d in slack.downloads} == {f"Bearer {TOKEN}"}


async def test_redirect_to_an_untrusted_host_does_not_send_the_token(
    files: SlackFiles, slack: FakeSlack
) -> None:
    cdn = slack.add_file(name="a.png", mimetype="image/png", content=PNG, public=True)
    elsewhere = cdn["url_private"].replace("127.0.0.1", "localhost")
    file = at(cdn, via_redirect(slack, elsewhere))

    assert (await fetch(files, file)).data == PNG

    assert [
        (d.path.partition("?")[0], d.host.split(":")[0], d.auth_header_value)
        for d in slack.downloads
    ] == [
        ("/redirect", "127.0.0.1", f"Bearer {TOKEN}"),
        (f"/files-pri/T1-{cdn['id']}/a.png", "localhost", None),
    ]


async def test_redirect_loop_is_cut_off(files: SlackFiles, slack: FakeSlack) -> None:
    target = slack.add_file(name="a.png", mimetype="image/png", content=PNG)
    file = at(target, via_redirect(slack, target["url_private"], hops=50))

    assert (await refusal(files, file)).text == "I couldn't download a.png (too many redirects)."
    assert len(slack.downloads) == 6


@pytest.mark.parametrize(
    "url",
    ["http://localhost:{port}/files/a.png", "https://evilslack.com/files/a.png", "::not a url"],
)
async def test_untrusted_initial_url_is_never_fetched(
    files: SlackFiles, slack: FakeSlack, url: str
) -> None:
    file = at(
        slack.add_file(name="a.png", mimetype="image/png", content=PNG), url.format(port=slack.port)
    )

    refused = await refusal(files, file)

    assert refused.text == "I didn't download a.png: its link doesn't point to Slack."
    assert slack.downloads == []


async def test_http_error_becomes_a_note(files: SlackFiles, slack: FakeSlack) -> None:
    file = slack.add_file(name="gone.png", mimetype="image/png", content=PNG, status=404)

    assert (await refusal(files, file)).text == "I couldn't download gone.png (HTTP 404)."


async def test_connection_refused_becomes_a_note(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    file = {
        "id": "F1",
        "name": "a.png",
        "mimetype": "image/png",
        "url_private": f"http://127.0.0.1:{closed_port}/a.png",
    }
    files = SlackFiles(
        session=session,
        bot_token=TOKEN,
        trusted_hosts=[f"http://127.0.0.1:{closed_port}/"],
    )

    assert (await refusal(files, file)).text == "I couldn't download a.png (network error)."


# --- Size limits


async def test_size_from_slack_refused_without_a_request(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    files = downloader(session, slack, max_bytes=1024 * 1024)
    file = slack.add_file(name="big.png", mimetype="image/png", content=PNG) | {
        "size": 30 * 1024 * 1024
    }

    refused = await refusal(files, file)

    assert refused.text == "big.png is too big for me (30 MB; I read files up to 1 MB)."
    assert slack.downloads == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversize_body_is_not_read_to_the_end(
    session: aiohttp.ClientSession, slack: FakeSlack, chunked: bool
) -> None:
    files = downloader(session, slack, max_bytes=1024 * 1024)
    file = slack.add_file(
        name="big.png", mimetype="image/png", content=PNG, padded_to=HUGE, chunked=chunked
    )
    del file["size"]  # an event's copy may lack it, and only the body counts

    refused = await refusal(files, file)

    expected = "" if chunked else "200 MB; "
    assert refused.text == f"big.png is too big for me ({expected}I read files up to 1 MB)."
    assert file["id"] not in slack.sent_in_full
    assert slack.bytes_sent[file["id"]] < HUGE // 4


@pytest.mark.parametrize(
    ("chunked", "slack_says", "size"),
    [(False, False, HUGE), (True, True, HUGE), (True, False, None)],
    ids=["content-length", "slack's size", "unknown"],
)
async def test_a_file_read_from_its_start_stops_there(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    chunked: bool,
    slack_says: bool,
    size: int | None,
) -> None:
    """A text is read from its start: a file over the cap is not refused, and only the bytes
    wanted are transferred, whatever the server announces."""
    files = downloader(session, slack, max_bytes=1024 * 1024)
    log = b"2026-11-02 INFO started\n" * 100
    file = slack.add_file(
        name="huge.log", mimetype="text/plain", content=log, padded_to=HUGE, chunked=chunked
    )
    if slack_says:
        file["size"] = HUGE  # the fake counts only `content`
    else:
        del file["size"]

    downloaded = await files.download(await files.resolve(file), first=64 * 1024)

    assert downloaded.data == (log + bytes(64 * 1024))[: 64 * 1024]
    assert (downloaded.size, downloaded.complete) == (size, False)
    assert file["id"] not in slack.sent_in_full
    assert slack.bytes_sent[file["id"]] < HUGE // 4
    # the start of a file is still at most the cap, and a small file is read whole
    capped = await files.download(file, first=HUGE)
    assert len(capped.data) == 1024 * 1024 and not capped.complete
    small = slack.add_file(name="small.log", mimetype="text/plain", content=log)
    whole = await files.download(small, first=64 * 1024)
    assert (whole.data, whole.size, whole.complete) == (log, len(log), True)
    # and the sign-in page is still no file
    refused = downloader(session, slack, bot_token="xoxb-other")
    with pytest.raises(FileRefused, match="files:read"):
        await refused.download(small, first=64 * 1024)


# --- Files that need files.info, and files that are gone


async def test_check_file_info_goes_through_files_info(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)
    files = downloader(session, slack, files_info=files_info_from(client))
    shared = slack.add_file(name="shared.png", mimetype="image/png", content=PNG)
    event_file = {"id": shared["id"], "mode": "file_access", "file_access": "check_file_info"}

    resolved = await files.resolve(event_file)

    assert resolved["name"] == "shared.png"
    assert (await files.download(resolved)).data == PNG
    assert [call.method for call in slack.calls] == ["files.info"]
    assert [d.path for d in slack.downloads] == [
        f"/files-pri/T1-{shared['id']}/download/shared.png"
    ]


async def test_files_info_failure_becomes_a_note(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)
    files = downloader(session, slack, files_info=files_info_from(client))
    event_file = {"id": "F404", "mode": "file_access", "file_access": "check_file_info"}

    refused = await refusal(files, event_file)

    assert refused.name == "F404"
    assert "files.info" in refused.text


async def test_check_file_info_without_files_info_becomes_a_note(files: SlackFiles) -> None:
    event_file = {"id": "F1", "mode": "file_access", "file_access": "check_file_info"}

    assert (await refusal(files, event_file)).text == (
        "I couldn't download F1: Slack didn't give me a link to it."
    )


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        ("tombstone", "I can't see a.png: it was deleted."),
        (
            "hidden_by_limit",
            "I can't see a.png: it's hidden by this workspace's file history limit.",
        ),
    ],
)
async def test_unavailable_files_become_notes(files: SlackFiles, mode: str, text: str) -> None:
    assert (await refusal(files, {"id": "F1", "name": "a.png", "mode": mode})).text == text


# --- The token goes to exact origins: scheme, host and port


@pytest.fixture
async def other_port() -> AsyncIterator[FakeSlack]:
    """Another server on the same host, 127.0.0.1, on another port: not the configured API."""
    async with FakeSlack() as fake:
        yield fake


async def test_token_not_sent_to_the_api_host_on_another_port(
    files: SlackFiles, slack: FakeSlack, other_port: FakeSlack
) -> None:
    file = other_port.add_file(name="a.png", mimetype="image/png", content=PNG)
    assert file["url_private"].startswith("http://127.0.0.1:")

    refused = await refusal(files, file)

    assert refused.text == "I didn't download a.png: its link doesn't point to Slack."
    assert other_port.downloads == []


async def test_token_not_sent_over_http_when_the_api_url_is_https(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    https_api = slack.api_url.replace("http://", "https://")
    files = SlackFiles(session=session, bot_token=TOKEN, trusted_hosts=[https_api])
    file = slack.add_file(name="a.png", mimetype="image/png", content=PNG)

    refused = await refusal(files, file)

    assert refused.text == "I didn't download a.png: its link doesn't point to Slack."
    assert slack.downloads == []


async def test_token_not_sent_to_a_same_host_redirect_on_another_port(
    files: SlackFiles, slack: FakeSlack, other_port: FakeSlack
) -> None:
    target = other_port.add_file(name="a.png", mimetype="image/png", content=PNG)
    file = slack.add_file(
        name="a.png", mimetype="image/png", content=b"", redirect_to=target["url_private"]
    )

    refused = await refusal(files, file)

    assert "files:read" in refused.text  # the other port answered its sign-in page
    assert [d.auth_header_value for d in slack.downloads] == [f"Bearer {TOKEN}"]
    assert [d.auth_header_value for d in other_port.downloads] == [None]


async def test_token_still_sent_to_the_configured_origin_and_to_file_hosts(
    session: aiohttp.ClientSession, slack: FakeSlack, other_port: FakeSlack
) -> None:
    """The exact origin of SLACK_API_URL, and a SLACK_FILE_HOSTS entry given as a URL."""
    files = SlackFiles(
        session=session,
        bot_token=TOKEN,
        trusted_hosts=[slack.api_url, f"http://127.0.0.1:{other_port.port}"],
    )
    here = slack.add_file(name="a.png", mimetype="image/png", content=PNG)
    there = other_port.add_file(name="b.png", mimetype="image/png", content=PNG)

    assert (await fetch(files, here)).data == PNG
    assert (await fetch(files, there)).data == PNG
    assert [d.auth_header_value for d in (*slack.downloads, *other_port.downloads)] == [
        f"Bearer {TOKEN}"
    ] * 2
