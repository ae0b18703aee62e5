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
from slackbot.converter_process import ConverterProcesses
from slackbot.documents import DocumentBlock
from slackbot.images import ImageBlock
from slackbot.model_lookup import ModelLimits
from slackbot.slack_files import files_info_from
from tests import documents
from tests.images import decode, encode, gradient

TOKEN = "xoxb-test-token"
ROOT = Path(__file__).resolve().parent.parent


def reader(session: aiohttp.ClientSession, slack: FakeSlack, **options: Any) -> Attachments:
    return Attachments(session=session, bot_token=TOKEN, trusted_hosts=[slack.api_url], **options)


@pytest.fixture
def attachments(session: aiohttp.ClientSession, slack: FakeSlack) -> Attachments:
    return reader(session, slack)


def as_image(result: ImageBlock | DocumentBlock | FileNote) -> ImageBlock:
    assert isinstance(result, ImageBlock), result
    return result


def as_note(result: ImageBlock | DocumentBlock | FileNote) -> FileNote:
    assert isinstance(result, FileNote), result
    return result


DOCX_MIMETYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.mark.parametrize(
    ("file", "kind"),
    [
        ({"mimetype": "image/png", "filetype": "pdf", "name": "a.pdf"}, "image"),
        ({"mimetype": "IMAGE/JPEG"}, "image"),
        ({"mimetype": "application/pdf", "filetype": "png"}, "pdf"),
        ({"filetype": "webp", "name": "a.pdf"}, "image"),
        ({"filetype": "pdf", "name": "a.png"}, "pdf"),
        ({"name": "Photo.JPG"}, "image"),
        ({"name": "notes.txt"}, "text"),
        ({"mimetype": "text/csv; charset=utf-8", "filetype": "csv"}, "text"),
        ({"mimetype": "application/json"}, "text"),
        ({"mimetype": "application/vnd.api+json"}, "text"),
        ({"mimetype": "text/x-python", "filetype": "python"}, "text"),
        ({"mimetype": "application/octet-stream", "filetype": "yaml"}, "text"),
        ({"mimetype": "application/octet-stream", "filetype": "binary", "name": "x.log"}, "text"),
        ({"mimetype": DOCX_MIMETYPE, "filetype": "docx"}, "office"),
        ({"filetype": "xlsx"}, "office"),
        ({"name": "deck.PPTX"}, "office"),
        # a snippet is text whatever Slack calls its language
        ({"mode": "snippet", "mimetype": "application/x-brainfuck", "filetype": "bf"}, "text"),
        # Slack doesn't say: the bytes will
        (
            {"mimetype": "application/octet-stream", "filetype": "binary", "name": "README"},
            "unknown",
        ),
        ({"filetype": "binary", "name": "data.dat"}, "unknown"),
        ({}, "unknown"),
        # a kind the bot doesn't read: not even downloaded
        ({"mimetype": "video/mp4", "filetype": "mp4"}, None),
        ({"mimetype": "application/zip", "filetype": "zip"}, None),
        ({"mimetype": "image/heic"}, None),
        ({"filetype": "mp4", "name": "clip.txt"}, None),
        ({"mimetype": "application/octet-stream", "filetype": "binary", "name": "a.zip"}, None),
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
    file = slack.add_file(name="talk.mp4", mimetype="video/mp4", content=b"\0" * 64) | {
        "pretty_type": "MPEG 4 Video"
    }

    note = as_note(await attachments.read(file))

    assert note == FileNote(
        name="talk.mp4",
        text=(
            "I can't read talk.mp4 (MPEG 4 Video) yet — I can only see images (PNG, JPEG, GIF, "
            "WebP), PDFs, text files (text, Markdown, CSV, JSON, logs, code…) and Word, Excel and "
            "PowerPoint documents."
        ),
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
        slack.add_file(name="talk.mp4", mimetype="video/mp4", content=b"\0" * 64),
        slack.add_file(
            name="three.webp", mimetype="image/webp", content=encode(gradient(10, 10), "WEBP")
        ),
        slack.add_file(name="report.pdf", mimetype="application/pdf", content=b"%PDF-1"),
        slack.add_file(name="data.csv", mimetype="text/csv", content=b"a,b\n1,2\n"),
    ]

    contents = await attachments.read_all(files)

    assert [image.name for image in contents.images] == ["one.png", "two.jpg", "three.webp"]
    assert [document.name for document in contents.documents] == ["notes.txt", "data.csv"]
    assert [note.name for note in contents.notes] == ["talk.mp4", "report.pdf"]
    assert all(isinstance(decode(image.data), Image.Image) for image in contents.images)


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

    contents = await attachments.read_all(files)

    assert [image.name for image in contents.images] == ["a.png", "b.png"]
    assert [note.text for note in contents.notes] == [
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

    contents = await attachments.read_all(files)

    assert [image.name for image in contents.images] == ["fine.png"]
    assert [n.name for n in contents.notes] == ["gone.png", "doc.pdf", "broken.png", "late.png"]


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

        contents = await attachments.read_all([event_file, elsewhere])

        assert [(image.name, base64.b64decode(image.data)) for image in contents.images] == [
            ("shared.png", body)
        ]
        assert [note.name for note in contents.notes] == ["elsewhere.png"]
        # localhost got no token: Slack's sign-in page
        assert "files:read" in contents.notes[0].text
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


# -- documents ----------------------------------------------------------------------------------


async def test_each_document_kind_is_downloaded_and_converted(
    attachments: Attachments, slack: FakeSlack
) -> None:
    report = documents.pdf(2)
    files = [
        slack.add_file(name="report.pdf", mimetype="application/pdf", content=report),
        slack.add_file(name="plan.docx", mimetype=documents.DOCX, content=documents.word()),
        slack.add_file(name="sales.xlsx", mimetype=documents.XLSX, content=documents.spreadsheet()),
        slack.add_file(name="deck.pptx", mimetype=documents.PPTX, content=documents.slides()),
        slack.add_file(name="data.csv", mimetype="text/csv", content=b"a,b\n1,2\n"),
        slack.add_file(name="win.txt", mimetype="text/plain", content="Größe\r\n".encode("utf-16")),
    ]

    contents = await attachments.read_all(files)

    assert contents.notes == [] and contents.images == []
    pdf, word, sheet, deck, csv, utf16 = contents.documents
    assert (pdf.kind, pdf.media_type, pdf.pages, base64.b64decode(pdf.data)) == (
        "pdf",
        "application/pdf",
        2,
        report,
    )
    assert word.data.startswith("# Quarterly report\n") and word.kind == "text"
    assert "| EU | 42 | 2026-01-02 |" in sheet.data
    assert deck.data.startswith("## Slide 1: Roadmap")
    assert csv.data == "a,b\n1,2\n"
    assert utf16.data == "Größe\n"
    assert [d.name for d in contents.documents] == [f["name"] for f in files]
    assert all(d.auth_header_value == f"Bearer {TOKEN}" for d in slack.downloads)


async def test_bad_documents_get_notes_naming_them_and_good_ones_are_kept(
    attachments: Attachments, slack: FakeSlack
) -> None:
    log = b"".join(b"%06d a line of the log\n" % i for i in range(40_000))
    files = [
        slack.add_file(
            name="secret.pdf", mimetype="application/pdf", content=documents.encrypted_pdf()
        ),
        slack.add_file(name="long.pdf", mimetype="application/pdf", content=documents.pdf(101)),
        slack.add_file(
            name="broken.docx", mimetype=documents.DOCX, content=documents.corrupt_zip()
        ),
        slack.add_file(
            name="bomb.docx", mimetype=documents.DOCX, content=documents.zip_bomb_docx()
        ),
        slack.add_file(
            name="tool.txt", mimetype="text/plain", content=b"\x7fELF\x02\x01" + bytes(64)
        ),
        slack.add_file(name="server.log", mimetype="text/plain", content=log),
        slack.add_file(name="fine.csv", mimetype="text/csv", content=b"x,y\n"),
    ]

    contents = await attachments.read_all(files)

    assert [d.name for d in contents.documents] == ["server.log", "fine.csv"]
    assert [note.text for note in contents.notes] == [
        "I can't read secret.pdf: it is encrypted (password-protected).",
        "I can't read long.pdf: it has 101 pages, and Claude reads at most 100 pages of PDF per "
        "request here.",
        "I couldn't read broken.docx: it isn't a valid Word, Excel or PowerPoint file.",
        "I didn't open bomb.docx: it unpacks to more than the 50 MB I allow.",
        "I couldn't read tool.txt: it doesn't look like text (it holds binary data).",
        "server.log is 977 KB: I read the first 512 KB.",
    ]


async def test_pdf_limits_follow_the_model(attachments: Attachments, slack: FakeSlack) -> None:
    long = slack.add_file(name="long.pdf", mimetype="application/pdf", content=documents.pdf(150))

    attachments.use_model(ModelLimits(model="big", max_input_tokens=1_000_000))
    block = await attachments.read(long)
    assert isinstance(block, DocumentBlock) and block.pages == 150

    attachments.use_model(ModelLimits(model="old", pdf_input=False))
    downloads = len(slack.downloads)
    assert as_note(await attachments.read(long)).text == (
        "I can't read long.pdf: the Claude model I use doesn't read PDFs."
    )
    assert len(slack.downloads) == downloads  # not even downloaded


async def test_a_file_slack_calls_binary_is_sniffed(
    attachments: Attachments, slack: FakeSlack
) -> None:
    def binary(name: str, content: bytes) -> dict[str, Any]:
        return slack.add_file(
            name=name, mimetype="application/octet-stream", filetype="binary", content=content
        )

    files = [
        binary("Makefile", b"all:\n\tpython -m build\n"),
        binary("scan", documents.pdf(1)),
        binary("export", documents.spreadsheet()),
        binary("picture", encode(gradient(10, 10), "PNG")),
        binary("blob.dat", bytes(range(256)) * 4),
    ]

    contents = await attachments.read_all(files)

    assert [(d.name, d.kind) for d in contents.documents] == [
        ("Makefile", "text"),
        ("scan", "pdf"),
        ("export", "text"),
    ]
    assert [image.name for image in contents.images] == ["picture"]
    assert [note.name for note in contents.notes] == ["blob.dat"]
    assert "I can't read blob.dat (BINARY)" in contents.notes[0].text


async def test_snippet_is_downloaded_or_read_from_its_preview(
    attachments: Attachments, slack: FakeSlack
) -> None:
    code = b"def hello():\n    return 'hi'\n" * 3
    snippet = slack.add_file(
        name="hello.py", mimetype="text/plain", filetype="python", content=code
    ) | {"mode": "snippet", "preview": "def hello():"}
    linkless = {
        "id": "F0SNIPPET1",
        "name": "query.sql",
        "mode": "snippet",
        "filetype": "sql",
        "preview": "SELECT *\nFROM orders",
        "lines_more": 12,
    }

    contents = await attachments.read_all([snippet, linkless])

    assert [d.data for d in contents.documents] == [code.decode(), "SELECT *\nFROM orders"]
    assert [note.text for note in contents.notes] == [
        "I could only read the start of query.sql (the preview Slack sent)."
    ]
    assert len(slack.downloads) == 1


async def test_conversions_do_not_hold_up_the_image_budget(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    """A slow conversion before an image doesn't delay the image's decode."""
    attachments = reader(session, slack, converters=ConverterProcesses(timeout=5))
    files = [
        slack.add_file(name="deck.pptx", mimetype=documents.PPTX, content=documents.slides()),
        slack.add_file(name="a.png", mimetype="image/png", content=encode(gradient(10, 10), "PNG")),
    ]
    contents = await attachments.read_all(files)
    assert [image.name for image in contents.images] == ["a.png"]
    assert [d.name for d in contents.documents] == ["deck.pptx"]


async def test_a_log_bigger_than_the_download_cap_is_read_from_its_start(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    attachments = reader(session, slack, max_bytes=4 * 1024 * 1024, max_text_bytes=256 * 1024)
    line = b"2026-11-02T10:00:00 INFO request served\n"
    log = slack.add_file(
        name="huge.log", mimetype="text/plain", content=line * (25 * 1024 * 1024 // len(line))
    )

    contents = await attachments.read_all([log])

    [document] = contents.documents
    assert [note.text for note in contents.notes] == ["huge.log is 25 MB: I read the first 256 KB."]
    assert len(document.data.encode()) <= 256 * 1024 and document.data.endswith("served\n")
    assert log["id"] not in slack.sent_in_full
