"""A message's files → image blocks and notes, through the real aiohttp client against the fake
Slack (`fakes.slack`) on 127.0.0.1: which converter a file goes to, in which order results come
back, and that no bad file ends the turn."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from slack_sdk.web.async_client import AsyncWebClient

from fakes.slack import FakeSlack
from slackbot.attachments import Attachments, FileNote, kind_of
from slackbot.images import ImageBlock
from slackbot.slack_files import files_info_from
from tests.images import decode, encode, gradient

TOKEN = "xoxb-test-token"
ROOT = Path(__file__).resolve().parent.parent


def reader(session: aiohttp.ClientSession, slack: FakeSlack, **options: Any) -> Attachments:
    return Attachments(session=session, bot_token=TOKEN, trusted_hosts=[slack.api_url], **options)


@pytest.fixture
def attachments(session: aiohttp.ClientSession, slack: FakeSlack) -> Attachments:
    return reader(session, slack)


def as_image(result: ImageBlock | FileNote) -> ImageBlock:
    assert isinstance(result, ImageBlock), result
    return result


def as_note(result: ImageBlock | FileNote) -> FileNote:
    assert isinstance(result, FileNote), result
    return result


@pytest.mark.parametrize(
    ("file", "kind"),
    [
        ({"mimetype": "image/png", "filetype": "pdf", "name": "a.pdf"}, "image"),
        ({"mimetype": "IMAGE/JPEG"}, "image"),
        ({"mimetype": "application/pdf", "filetype": "png"}, None),
        ({"filetype": "webp", "name": "a.pdf"}, "image"),
        ({"filetype": "pdf", "name": "a.png"}, None),
        ({"name": "Photo.JPG"}, "image"),
        ({"name": "notes.txt"}, None),
        ({}, None),
    ],
)
def test_kind_of_follows_mimetype_then_filetype_then_extension(
    file: dict[str, Any], kind: str | None
) -> None:
    assert kind_of(file) == kind


async def test_small_image_is_downloaded_with_the_token_and_kept(
    attachments: Attachments, slack: FakeSlack
) -> None:
    body = encode(gradient(320, 200), "PNG")
    file = slack.add_file(name="small.png", mimetype="image/png", content=body)

    block = as_image(await attachments.read(file))

    assert (block.name, block.media_type, base64.b64decode(block.data)) == (
        "small.png",
        "image/png",
        body,
    )
    assert [d.auth_header_value for d in slack.downloads] == [f"Bearer {TOKEN}"]


async def test_media_type_comes_from_the_bytes_not_from_slack(
    attachments: Attachments, slack: FakeSlack
) -> None:
    """Slack derives the mimetype from the name; Claude rejects a block whose type is wrong."""
    body = encode(gradient(10, 10), "JPEG")
    file = slack.add_file(name="photo.png", mimetype="image/png", content=body)

    assert as_image(await attachments.read(file)).media_type == "image/jpeg"


async def test_sign_in_page_becomes_a_note_about_the_scope(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    attachments = Attachments(
        session=session, bot_token="xoxb-without-files-read", trusted_hosts=[slack.api_url]
    )
    file = slack.add_file(name="a.png", mimetype="image/png", content=encode(gradient(8, 8), "PNG"))

    assert as_note(await attachments.read(file)) == FileNote(
        name="a.png",
        text=(
            "I couldn't download a.png (Slack refused access — is the `files:read` scope granted?)"
        ),
    )


async def test_unsupported_file_becomes_a_note_without_a_download(
    attachments: Attachments, slack: FakeSlack
) -> None:
    file = slack.add_file(name="report.pdf", mimetype="application/pdf", content=b"%PDF-1") | {
        "pretty_type": "PDF"
    }

    note = as_note(await attachments.read(file))

    assert note == FileNote(
        name="report.pdf",
        text="I can't read report.pdf (PDF) yet — I can only see PNG, JPEG, GIF and WebP images.",
    )
    assert slack.downloads == []


async def test_read_all_keeps_order(attachments: Attachments, slack: FakeSlack) -> None:
    files = [
        slack.add_file(
            name="one.png", mimetype="image/png", content=encode(gradient(10, 10), "PNG")
        ),
        slack.add_file(name="notes.txt", mimetype="text/plain", content=b"hello"),
        slack.add_file(
            name="two.jpg", mimetype="image/jpeg", content=encode(gradient(4000, 3000), "JPEG")
        ),
        slack.add_file(
            name="three.webp", mimetype="image/webp", content=encode(gradient(10, 10), "WEBP")
        ),
        slack.add_file(name="report.pdf", mimetype="application/pdf", content=b"%PDF-1"),
    ]

    images, notes = await attachments.read_all(files)

    assert [image.name for image in images] == ["one.png", "two.jpg", "three.webp"]
    assert [note.name for note in notes] == ["notes.txt", "report.pdf"]
    assert all(isinstance(decode(image.data), Image.Image) for image in images)


async def test_token_never_logged(
    attachments: Attachments, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = encode(gradient(10, 10), "PNG")
    fine = slack.add_file(name="a.png", mimetype="image/png", content=body)
    broken = slack.add_file(name="a.png", mimetype="image/png", content=body, status=500)
    looping = fine | {
        "url_private_download": f"{slack.base_url}/redirect?hops=9&to={fine['url_private']}"
    }

    await attachments.read_all([fine, broken, looping])

    assert caplog.records
    assert TOKEN not in caplog.text


def test_repr_does_not_show_the_token(attachments: Attachments) -> None:
    assert TOKEN not in repr(attachments)


async def test_message_budget_goes_to_files_in_attachment_order(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    """The first file arrives last (its files.info lookup is slow), yet it gets its share."""
    client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)
    attachments = reader(
        session, slack, files_info=files_info_from(client), max_pixels_per_message=25_000
    )
    body = encode(gradient(100, 100), "PNG")  # 10,000 pixels each
    files = [slack.add_file(name=f"{n}.png", mimetype="image/png", content=body) for n in "abcd"]
    files[0] = {"id": files[0]["id"], "file_access": "check_file_info"}
    slack.delay("files.info", 0.3)

    images, notes = await attachments.read_all(files)

    assert [image.name for image in images] == ["a.png", "b.png"]
    assert [note.text for note in notes] == [
        f"I didn't open {name}: this message's images add up to more than the 0.025 megapixels I "
        "open per message."
        for name in ("c.png", "d.png")
    ]
    assert slack.downloads[-1].path.endswith("/a.png")  # it was indeed the last to arrive


async def test_a_file_that_fails_early_does_not_hold_up_the_budget(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    attachments = reader(session, slack, max_pixels_per_message=15_000)
    body = encode(gradient(100, 100), "PNG")
    files = [
        slack.add_file(name="gone.png", mimetype="image/png", content=body, status=404),
        slack.add_file(name="doc.pdf", mimetype="application/pdf", content=b"%PDF-1"),
        slack.add_file(name="broken.png", mimetype="image/png", content=b"not a png"),
        slack.add_file(name="fine.png", mimetype="image/png", content=body),
        slack.add_file(name="late.png", mimetype="image/png", content=body),
    ]

    images, notes = await attachments.read_all(files)

    assert [image.name for image in images] == ["fine.png"]
    assert [note.name for note in notes] == ["gone.png", "doc.pdf", "broken.png", "late.png"]


async def test_against_the_shared_fake_slack(session: aiohttp.ClientSession) -> None:
    async with FakeSlack(bot_token=TOKEN) as fake:
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url, session=session)
        attachments = Attachments(
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

        images, notes = await attachments.read_all([event_file, elsewhere])

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


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_decompression_amplification_is_bounded_per_message_and_process() -> None:
    """Tiny PNGs that decode to ~200 MB each (`tests/decode_memory.py`, in a fresh process):
    each message decodes at most its pixel budget, the files beyond it become notes naming them
    (in attachment order, whatever order the downloads finish in), the rest is still answered,
    and memory stays bounded while decoding and is given back afterwards."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.decode_memory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    over = [f"a{index}.png" for index in range(5, 9)]
    assert result["A"] == {
        "images": ["a1.png", "a2.png", "a3.png", "a4.png", "a-small.png"],
        "notes": [
            [
                name,
                f"I didn't open {name}: this message's images add up to more than the 200 "
                "megapixels I open per message.",
            ]
            for name in over
        ],
    }
    assert result["B"] == {"images": ["b1.png"], "notes": []}
    # Generous bounds over the process's own baseline: decoding all ten, two at a time, grew it
    # by ~700 MB at the peak and kept ~600 MB; one decode at a time is ~270 MB, given back after.
    assert result["peak"] - result["rss_before"] < 400, result
    assert result["rss_after"] - result["rss_before"] < 100, result
