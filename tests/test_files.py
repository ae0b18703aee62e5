"""Downloading Slack files over real HTTP: a small aiohttp server on 127.0.0.1 plays Slack's file
host and `files.info`. 127.0.0.1 is the configured API host (trusted over http); the same server
addressed as `localhost` is a different, untrusted host."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image
from slack_sdk.web.async_client import AsyncWebClient

from fakes.slack import FakeSlack
from slackbot.files import (
    MAX_BASE64_BYTES,
    FileFetcher,
    FileNote,
    ImageBlock,
    files_info_from,
    trusted_hosts_for,
)
from tests.images import (
    animated_gif,
    decode,
    encode,
    gradient,
    jpeg_with_orientation,
    noise,
    png_claiming_size,
)

TOKEN = "xoxb-test-token"
SIGN_IN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"
HUGE = 200 * 1024 * 1024


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    host: str
    authorization: str | None


@dataclass
class FakeSlackFiles:
    """Slack's file host and `files.info`, with state tests assert on.

    `/files/<name>` answers like Slack: the image with the right token, else HTTP 200 and the
    sign-in page. `/public/<name>` ignores the token (a CDN). `/redirect?to=…&hops=n` redirects.
    """

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    file_objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    huge_sent: int = 0
    huge_completed: bool = False
    server: TestServer | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files/{name}", self._private)
        app.router.add_get("/public/{name}", self._public)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/huge", self._huge)
        app.router.add_route("*", "/api/files.info", self._files_info)
        app.middlewares.append(self._record)
        return app

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.seen.append(Seen(request.path, request.host, request.headers.get("Authorization")))
        response: web.StreamResponse = await handler(request)
        return response

    async def _private(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(body=SIGN_IN_PAGE, content_type="text/html")
        return self._serve(request.match_info["name"])

    async def _public(self, request: web.Request) -> web.Response:
        return self._serve(request.match_info["name"])

    def _serve(self, name: str) -> web.Response:
        if name not in self.files:
            return web.Response(status=404)
        body, content_type = self.files[name]
        return web.Response(body=body, content_type=content_type)

    async def _redirect(self, request: web.Request) -> web.Response:
        hops = int(request.query.get("hops", "1"))
        if hops > 1:
            target = f"/redirect?hops={hops - 1}&to={request.query['to']}"
        else:
            target = request.query["to"]
        raise web.HTTPFound(target)

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """A body far over the cap, with or without Content-Length; counts what it wrote."""
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if request.query.get("length"):
            response.content_length = HUGE
        await response.prepare(request)
        chunk = b"\x89PNG\r\n\x1a\n" + bytes(64 * 1024 - 8)
        try:
            while self.huge_sent < HUGE:
                await response.write(chunk)
                self.huge_sent += len(chunk)
            self.huge_completed = True
        except ConnectionError:
            pass  # the client hung up, as it should
        return response

    async def _files_info(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update(await request.post())  # type: ignore[arg-type]
        file = self.file_objects.get(str(params.get("file")))
        if file is None:
            return web.json_response({"ok": False, "error": "file_not_found"})
        return web.json_response({"ok": True, "file": file})


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackFiles]:
    fake = FakeSlackFiles()
    fake.server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await fake.server.start_server()
    yield fake
    await fake.server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make_fetcher(
    session: aiohttp.ClientSession, slack: FakeSlackFiles, **options: Any
) -> FileFetcher:
    options.setdefault("bot_token", TOKEN)
    return FileFetcher(
        session=session,
        trusted_hosts=trusted_hosts_for(slack.url("/api/"), ()),
        **options,
    )


@pytest.fixture
def fetcher(session: aiohttp.ClientSession, slack: FakeSlackFiles) -> FileFetcher:
    return make_fetcher(session, slack)


def slack_file(
    slack: FakeSlackFiles, name: str, mimetype: str, *, path: str | None = None
) -> dict[str, Any]:
    """A Slack file object as events carry it."""
    url = slack.url(path or f"/files/{name}")
    return {
        "id": f"F{abs(hash(name)) % 10**8}",
        "name": name,
        "mimetype": mimetype,
        "filetype": name.rsplit(".", 1)[-1],
        "url_private": url,
        "url_private_download": url + "?download=1",
    }


def image_file(slack: FakeSlackFiles, name: str, body: bytes, media_type: str) -> dict[str, Any]:
    slack.files[name] = (body, media_type)
    return slack_file(slack, name, media_type)


def as_image(result: ImageBlock | FileNote) -> ImageBlock:
    assert isinstance(result, ImageBlock), result
    return result


def as_note(result: ImageBlock | FileNote) -> FileNote:
    assert isinstance(result, FileNote), result
    return result


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
        ("https://127.0.0.1/api/", True),
        ("http://127.0.0.1:9/files/a.png", True),
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
    fetcher = FileFetcher(
        session=session,
        bot_token=TOKEN,
        trusted_hosts=trusted_hosts_for("http://127.0.0.1:9/api/", ()),
    )
    assert fetcher.is_trusted(url) is trusted


def test_slack_api_host_stays_https_only(session: aiohttp.ClientSession) -> None:
    """Configuring the real API URL must not make plain-http slack.com trusted."""
    fetcher = FileFetcher(
        session=session,
        bot_token=TOKEN,
        trusted_hosts=trusted_hosts_for("https://slack.com/api/", ["files.slack.com"]),
    )
    assert not fetcher.is_trusted("http://slack.com/files/a.png")
    assert not fetcher.is_trusted("http://files.slack.com/a.png")
    assert fetcher.is_trusted("https://files.slack.com/a.png")


def test_trusted_hosts_for() -> None:
    hosts = trusted_hosts_for(
        "http://127.0.0.1:8080/api/", ["files.example.com", " https://Grid.Example.com/ ", ""]
    )
    assert hosts == {"127.0.0.1", "files.example.com", "grid.example.com"}
    assert trusted_hosts_for(None, ()) == frozenset()
    with pytest.raises(ValueError, match="bad%host"):
        trusted_hosts_for(None, ["bad%host"])


def test_repr_does_not_show_the_token(fetcher: FileFetcher) -> None:
    assert TOKEN not in repr(fetcher)


# --- Downloads


@pytest.mark.parametrize(
    ("pillow_format", "media_type", "mode"),
    [
        ("PNG", "image/png", "RGBA"),
        ("JPEG", "image/jpeg", "RGB"),
        ("WEBP", "image/webp", "RGB"),
        ("GIF", "image/gif", "P"),
    ],
)
async def test_authorised_download_keeps_a_small_image_as_is(
    fetcher: FileFetcher, slack: FakeSlackFiles, pillow_format: str, media_type: str, mode: str
) -> None:
    body = encode(gradient(320, 200, "RGB").convert(mode), pillow_format)
    file = image_file(slack, f"small.{pillow_format.lower()}", body, media_type)

    block = as_image(await fetcher.fetch(file))

    assert block.media_type == media_type
    assert block.name == file["name"]
    assert base64.b64decode(block.data) == body
    assert decode(block.data).size == (320, 200)
    assert block.to_claude() == {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": block.data},
    }
    assert [(s.path, s.authorization) for s in slack.seen] == [
        (f"/files/{file['name']}", f"Bearer {TOKEN}")
    ]


async def test_falls_back_to_url_private(fetcher: FileFetcher, slack: FakeSlackFiles) -> None:
    file = image_file(slack, "a.png", encode(gradient(10, 10), "PNG"), "image/png")
    del file["url_private_download"]

    assert as_image(await fetcher.fetch(file)).media_type == "image/png"


async def test_media_type_comes_from_the_bytes_not_from_slack(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    """Slack derives the mimetype from the name; Claude rejects a block whose type is wrong."""
    file = image_file(slack, "photo.png", encode(gradient(10, 10), "JPEG"), "image/png")

    assert as_image(await fetcher.fetch(file)).media_type == "image/jpeg"


async def test_sign_in_page_becomes_a_note_about_the_scope(
    session: aiohttp.ClientSession, slack: FakeSlackFiles
) -> None:
    fetcher = make_fetcher(session, slack, bot_token="xoxb-without-files-read")
    file = image_file(slack, "a.png", encode(gradient(10, 10), "PNG"), "image/png")

    note = as_note(await fetcher.fetch(file))

    assert note == FileNote(
        name="a.png",
        text=(
            "I couldn't download a.png (Slack refused access — is the `files:read` scope granted?)"
        ),
    )


async def test_bytes_that_are_not_an_image_become_a_note(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    file = image_file(slack, "a.png", b"GIF89a but not really", "image/png")
    slack.files["b.png"] = (encode(gradient(300, 300), "PNG")[:500], "image/png")
    truncated = slack_file(slack, "b.png", "image/png")

    for result in (await fetcher.fetch(file), await fetcher.fetch(truncated)):
        assert "isn't a valid PNG, JPEG, GIF or WebP image" in as_note(result).text


async def test_redirect_to_the_same_trusted_host_keeps_the_token(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    image_file(slack, "a.png", encode(gradient(10, 10), "PNG"), "image/png")
    file = slack_file(slack, "a.png", "image/png", path="/redirect?hops=3&to=/files/a.png")

    as_image(await fetcher.fetch(file))

    assert [s.path for s in slack.seen] == ["/redirect"] * 3 + ["/files/a.png"]
    assert {s.authorization for s in slack.seen} == {f"Bearer {TOKEN}"}


async def test_redirect_to_an_untrusted_host_does_not_send_the_token(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    body = encode(gradient(10, 10), "PNG")
    slack.files["a.png"] = (body, "image/png")
    target = slack.url("/public/a.png", host="localhost")
    file = slack_file(slack, "a.png", "image/png", path=f"/redirect?to={target}")

    block = as_image(await fetcher.fetch(file))

    assert base64.b64decode(block.data) == body
    assert [(s.path, s.host.split(":")[0], s.authorization) for s in slack.seen] == [
        ("/redirect", "127.0.0.1", f"Bearer {TOKEN}"),
        ("/public/a.png", "localhost", None),
    ]


async def test_redirect_loop_is_cut_off(fetcher: FileFetcher, slack: FakeSlackFiles) -> None:
    image_file(slack, "a.png", encode(gradient(10, 10), "PNG"), "image/png")
    file = slack_file(slack, "a.png", "image/png", path="/redirect?hops=50&to=/files/a.png")

    note = as_note(await fetcher.fetch(file))

    assert note.text == "I couldn't download a.png (too many redirects)."
    assert len(slack.seen) == 6


@pytest.mark.parametrize(
    "url",
    ["http://localhost:{port}/files/a.png", "https://evilslack.com/files/a.png", "::not a url"],
)
async def test_untrusted_initial_url_is_never_fetched(
    fetcher: FileFetcher, slack: FakeSlackFiles, url: str
) -> None:
    file = image_file(slack, "a.png", encode(gradient(10, 10), "PNG"), "image/png")
    file["url_private_download"] = file["url_private"] = url.format(port=slack.port)

    note = as_note(await fetcher.fetch(file))

    assert note.text == "I didn't download a.png: its link doesn't point to Slack."
    assert slack.seen == []


async def test_http_error_becomes_a_note(fetcher: FileFetcher, slack: FakeSlackFiles) -> None:
    file = slack_file(slack, "gone.png", "image/png", path="/status/404")

    assert as_note(await fetcher.fetch(file)).text == "I couldn't download gone.png (HTTP 404)."


async def test_connection_refused_becomes_a_note(fetcher: FileFetcher) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    file = {
        "id": "F1",
        "name": "a.png",
        "mimetype": "image/png",
        "url_private": f"http://127.0.0.1:{closed_port}/a.png",
    }

    assert as_note(await fetcher.fetch(file)).text == "I couldn't download a.png (network error)."


async def test_token_never_logged(
    fetcher: FileFetcher, slack: FakeSlackFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    image_file(slack, "a.png", encode(gradient(10, 10), "PNG"), "image/png")
    files = [
        slack_file(slack, "a.png", "image/png"),
        slack_file(slack, "a.png", "image/png", path="/status/500"),
        slack_file(slack, "a.png", "image/png", path="/redirect?hops=9&to=/files/a.png"),
    ]

    await fetcher.fetch_all(files)

    assert caplog.records
    assert TOKEN not in caplog.text


# --- Size limits


async def test_size_from_slack_refused_without_a_request(
    session: aiohttp.ClientSession, slack: FakeSlackFiles
) -> None:
    fetcher = make_fetcher(session, slack, max_bytes=1024 * 1024)
    file = slack_file(slack, "big.png", "image/png") | {"size": 30 * 1024 * 1024}

    note = as_note(await fetcher.fetch(file))

    assert note.text == "big.png is too big for me (30 MB; I read files up to 1 MB)."
    assert slack.seen == []


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_oversize_body_is_not_read_to_the_end(
    session: aiohttp.ClientSession, slack: FakeSlackFiles, with_length: bool
) -> None:
    fetcher = make_fetcher(session, slack, max_bytes=1024 * 1024)
    path = "/huge?length=1" if with_length else "/huge"
    file = slack_file(slack, "big.png", "image/png", path=path)

    note = as_note(await fetcher.fetch(file))

    expected = "200 MB; " if with_length else ""
    assert note.text == f"big.png is too big for me ({expected}I read files up to 1 MB)."
    assert not slack.huge_completed
    assert slack.huge_sent < HUGE // 4


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (30_000, 30_000),  # Pillow itself raises DecompressionBombError
        (10_000, 10_000),  # Pillow warns (an error under our pytest config)
        (8_000, 7_000),  # below Pillow's limit, above ours
    ],
)
async def test_decompression_bomb_is_refused(
    fetcher: FileFetcher, slack: FakeSlackFiles, width: int, height: int
) -> None:
    file = image_file(slack, "bomb.png", png_claiming_size(width, height), "image/png")

    note = as_note(await fetcher.fetch(file))

    assert note.text.startswith("bomb.png is too large to open (")


async def test_large_photo_is_shrunk_to_the_long_edge(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    file = image_file(slack, "photo.jpg", encode(gradient(4000, 3000), "JPEG"), "image/jpeg")

    block = as_image(await fetcher.fetch(file))

    assert block.media_type == "image/jpeg"
    assert decode(block.data).size == (1568, 1176)


async def test_tall_png_is_shrunk_and_stays_png(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    body = encode(gradient(1500, 4000, "RGBA"), "PNG")
    file = image_file(slack, "tall.png", body, "image/png")

    block = as_image(await fetcher.fetch(file))

    assert block.media_type == "image/png"
    image = decode(block.data)
    assert image.size == (588, 1568)
    assert image.mode == "RGBA"


async def test_noisy_png_is_re_encoded_under_the_base64_limit(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    image = noise(2000, 1500, "RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 200, 200))  # a transparent corner
    body = encode(image, "PNG")
    assert len(body) > MAX_BASE64_BYTES
    file = image_file(slack, "noise.png", body, "image/png")

    block = as_image(await fetcher.fetch(file))

    assert len(block.data) <= MAX_BASE64_BYTES
    assert block.media_type == "image/jpeg"
    result = decode(block.data)
    assert result.size == (1568, 1176)
    corner = result.convert("RGB").getpixel((50, 50))
    assert isinstance(corner, tuple) and min(corner) >= 245  # flattened onto white


async def test_small_animated_gif_is_kept(fetcher: FileFetcher, slack: FakeSlackFiles) -> None:
    body = animated_gif(100, 80, frames=3)
    file = image_file(slack, "wave.gif", body, "image/gif")

    block = as_image(await fetcher.fetch(file))

    assert (block.media_type, base64.b64decode(block.data)) == ("image/gif", body)


async def test_large_animated_gif_becomes_its_first_frame(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    file = image_file(slack, "wide.gif", animated_gif(3200, 200, frames=3), "image/gif")

    block = as_image(await fetcher.fetch(file))

    assert block.media_type == "image/png"
    image = decode(block.data)
    assert image.size == (1568, 98)
    assert getattr(image, "n_frames", 1) == 1


async def test_exif_orientation_is_applied(fetcher: FileFetcher, slack: FakeSlackFiles) -> None:
    file = image_file(slack, "phone.jpg", jpeg_with_orientation(200, 100, 6), "image/jpeg")

    block = as_image(await fetcher.fetch(file))

    image = decode(block.data)
    assert image.size == (100, 200)
    assert image.getexif().get(0x0112) is None


# --- Files that need files.info, and files that aren't images


async def test_check_file_info_goes_through_files_info(
    session: aiohttp.ClientSession, slack: FakeSlackFiles
) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.url("/api/"), session=session)
    fetcher = make_fetcher(session, slack, files_info=files_info_from(client))
    body = encode(gradient(10, 10), "PNG")
    slack.file_objects["F123"] = image_file(slack, "shared.png", body, "image/png")
    event_file = {"id": "F123", "mode": "file_access", "file_access": "check_file_info"}

    block = as_image(await fetcher.fetch(event_file))

    assert block.name == "shared.png"
    assert base64.b64decode(block.data) == body
    assert slack.paths() == ["/api/files.info", "/files/shared.png"]


async def test_files_info_failure_becomes_a_note(
    session: aiohttp.ClientSession, slack: FakeSlackFiles
) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.url("/api/"), session=session)
    fetcher = make_fetcher(session, slack, files_info=files_info_from(client))
    event_file = {"id": "F404", "mode": "file_access", "file_access": "check_file_info"}

    note = as_note(await fetcher.fetch(event_file))

    assert note.name == "F404"
    assert "files.info" in note.text


async def test_check_file_info_without_files_info_becomes_a_note(fetcher: FileFetcher) -> None:
    event_file = {"id": "F1", "mode": "file_access", "file_access": "check_file_info"}

    assert as_note(await fetcher.fetch(event_file)).text == (
        "I couldn't download F1: Slack didn't give me a link to it."
    )


async def test_unsupported_file_becomes_a_note_without_a_download(
    fetcher: FileFetcher, slack: FakeSlackFiles
) -> None:
    file = slack_file(slack, "report.pdf", "application/pdf") | {"pretty_type": "PDF"}

    note = as_note(await fetcher.fetch(file))

    assert note == FileNote(
        name="report.pdf",
        text="I can't read report.pdf (PDF) yet — I can only see PNG, JPEG, GIF and WebP images.",
    )
    assert slack.seen == []


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
async def test_unavailable_files_become_notes(fetcher: FileFetcher, mode: str, text: str) -> None:
    assert as_note(await fetcher.fetch({"id": "F1", "name": "a.png", "mode": mode})).text == text


async def test_fetch_all_keeps_order(fetcher: FileFetcher, slack: FakeSlackFiles) -> None:
    files = [
        image_file(slack, "one.png", encode(gradient(10, 10), "PNG"), "image/png"),
        slack_file(slack, "notes.txt", "text/plain"),
        image_file(slack, "two.jpg", encode(gradient(4000, 3000), "JPEG"), "image/jpeg"),
        image_file(slack, "three.webp", encode(gradient(10, 10), "WEBP"), "image/webp"),
        slack_file(slack, "report.pdf", "application/pdf"),
    ]

    images, notes = await fetcher.fetch_all(files)

    assert [image.name for image in images] == ["one.png", "two.jpg", "three.webp"]
    assert [note.name for note in notes] == ["notes.txt", "report.pdf"]
    assert all(isinstance(decode(image.data), Image.Image) for image in images)


# --- Against the shared fake Slack (tests/fakes/slack.py), as the app will use it


async def test_against_the_shared_fake_slack(session: aiohttp.ClientSession) -> None:
    async with FakeSlack(bot_token=TOKEN) as fake:
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url, session=session)
        fetcher = FileFetcher(
            session=session,
            bot_token=TOKEN,
            trusted_hosts=[fake.api_url],
            files_info=files_info_from(client),
        )
        body = encode(gradient(10, 10), "PNG")
        shared = fake.add_file(name="shared.png", mimetype="image/png", content=body)
        elsewhere = fake.add_file(
            name="elsewhere.png",
            mimetype="image/png",
            content=body,
            redirect_to=shared["url_private"].replace("127.0.0.1", "localhost"),
        )
        event_file = {"id": shared["id"], "mode": "file_access", "file_access": "check_file_info"}

        images, notes = await fetcher.fetch_all([event_file, elsewhere])

        assert [(image.name, base64.b64decode(image.data)) for image in images] == [
            ("shared.png", body)
        ]
        assert [note.name for note in notes] == ["elsewhere.png"]
        assert "files:read" in notes[0].text  # localhost got no token: Slack's sign-in page
        assert [call.method for call in fake.calls] == ["files.info"]
        assert [download.auth_header_value for download in fake.downloads] == [
            f"Bearer {TOKEN}",
            f"Bearer {TOKEN}",
            None,
        ]
