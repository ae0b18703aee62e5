"""Documents through the whole bot: Slack event → download → conversion → store → the request
the fake Claude receives, and the notes people see in the thread."""

from __future__ import annotations

import asyncio
import base64

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, Harness, conversation
from fakes.slack import FakeSlack
from tests import documents
from tests.images import encode, gradient
from tests.started import DEFAULT_MODEL, sonnet_5, started


def document_blocks(content: list[dict]) -> list[dict]:
    return [block for block in content if block["type"] == "document"]


def uncached(content: list[dict]) -> list[dict]:
    """Blocks without the prompt-caching breakpoint, which moves to the newest turn."""
    return [{k: v for k, v in block.items() if k != "cache_control"} for block in content]


async def test_documents_reach_claude_and_are_resent_from_the_store(harness: Harness) -> None:
    slack = harness.slack
    report = documents.pdf(2, text="Revenue grew on page")
    files = [
        slack.add_file(name="report.pdf", mimetype="application/pdf", content=report),
        slack.add_file(name="plan.docx", mimetype=documents.DOCX, content=documents.word()),
        slack.add_file(name="data.csv", mimetype="text/csv", content=b"region,sales\nEU,42\n"),
        slack.add_file(
            name="chart.png", mimetype="image/png", content=encode(gradient(64, 64), "PNG")
        ),
    ]
    harness.claude.default = Script(text="Revenue grew.")
    mention = await harness.mention("compare these", files=files)
    await harness.settled()

    content = conversation(harness.claude.requests[-1])[0]["content"]
    assert [block["type"] for block in content] == [
        "document",
        "document",
        "document",
        "image",
        "text",
    ]
    pdf, word, csv = document_blocks(content)
    assert pdf == {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(report).decode(),
        },
        "title": "report.pdf",
        "citations": {"enabled": True},
    }
    assert word["source"]["type"] == "text" and word["title"] == "plan.docx"
    assert word["source"]["data"].startswith("# Quarterly report\n\n## Revenue\n")
    assert csv == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "region,sales\nEU,42\n"},
        "title": "data.csv",
        "citations": {"enabled": True},
    }
    assert content[-1]["text"] == "Alice: compare these"
    assert harness.texts(CHANNEL, mention["ts"]) == ["Revenue grew."]

    # a later mention re-sends them from the store, downloading nothing
    downloads = len(slack.downloads)
    await harness.mention("and the total?", thread_ts=mention["ts"])
    await harness.settled()
    assert uncached(conversation(harness.claude.requests[-1])[0]["content"]) == uncached(content)
    assert len(slack.downloads) == downloads


async def test_bad_files_get_notes_in_the_thread_and_the_good_ones_are_answered(
    harness: Harness,
) -> None:
    slack = harness.slack
    log = b"".join(b"%06d GET /health 200\n" % i for i in range(50_000))
    files = [
        slack.add_file(
            name="secret.pdf", mimetype="application/pdf", content=documents.encrypted_pdf()
        ),
        slack.add_file(
            name="bomb.docx", mimetype=documents.DOCX, content=documents.zip_bomb_docx()
        ),
        slack.add_file(
            name="broken.xlsx", mimetype=documents.XLSX, content=documents.corrupt_zip()
        ),
        slack.add_file(
            name="tool.txt", mimetype="text/plain", content=b"\x7fELF\x02\x01" + bytes(99)
        ),
        slack.add_file(name="server.log", mimetype="text/plain", content=log),
        slack.add_file(name="notes.csv", mimetype="text/csv", content=b"a,b\n1,2\n"),
    ]
    harness.claude.default = Script(text="Here is what I found.")
    mention = await harness.mention("what's in these?", files=files)
    other = await harness.mention("meanwhile, 2+2?", channel="C2")  # not held up by the files
    await harness.settled()

    notes = [
        "I can't read secret.pdf: it is encrypted (password-protected).",
        "I didn't open bomb.docx: it unpacks to more than the 50 MB I allow.",
        "I couldn't read broken.xlsx: it isn't a valid Word, Excel or PowerPoint file.",
        "I couldn't read tool.txt: it doesn't look like text (it holds binary data).",
        "server.log is 1.1 MB: I read the first 512 KB.",
    ]
    [reply] = harness.texts(CHANNEL, mention["ts"])
    assert reply.startswith("Here is what I found.")
    assert all(f"_{note}_" in reply for note in notes), reply
    request = next(r for r in harness.claude.requests if "what's in these" in str(r))
    content = conversation(request)[0]["content"]
    assert [block["title"] for block in document_blocks(content)] == ["server.log", "notes.csv"]
    log_text = document_blocks(content)[0]["source"]["data"]
    assert len(log_text.encode()) <= 512 * 1024 and log_text.endswith(" 200\n")
    # Claude is told too, so it doesn't pretend to have read them
    assert all(f"[{note}]" in content[-1]["text"] for note in notes)
    assert harness.texts("C2", other["ts"]) == ["Here is what I found."]


async def test_pdf_page_limit_and_support_follow_the_model(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    long = documents.pdf(150)
    claude.models[DEFAULT_MODEL] = sonnet_5(max_input_tokens=1_000_000)
    async with started(slack, claude, db_path) as harness:
        file = slack.add_file(name="book.pdf", mimetype="application/pdf", content=long)
        await harness.mention("summarise", files=[file])
        await harness.settled()
        [pdf] = document_blocks(conversation(claude.requests[-1])[0]["content"])
        assert pdf["title"] == "book.pdf"

    claude.models[DEFAULT_MODEL] = sonnet_5(max_input_tokens=200_000)
    async with started(slack, claude, db_path) as harness:
        file = slack.add_file(name="book.pdf", mimetype="application/pdf", content=long)
        mention = await harness.mention("summarise", files=[file])
        await harness.settled()
        assert document_blocks(conversation(claude.requests[-1])[0]["content"]) == []
        assert (
            "_I can't read book.pdf: it has 150 pages, and Claude reads at most 100 pages of PDF "
            "per request here._" in harness.texts(CHANNEL, mention["ts"])[0]
        )

    claude.models[DEFAULT_MODEL] = sonnet_5(pdf_input=False)
    async with started(slack, claude, db_path) as harness:
        file = slack.add_file(name="short.pdf", mimetype="application/pdf", content=documents.pdf())
        mention = await harness.mention("summarise", files=[file])
        await harness.settled()
        assert (
            "the Claude model I use doesn't read PDFs" in harness.texts(CHANNEL, mention["ts"])[0]
        )


async def test_shared_messages_and_snippets_reach_claude(harness: Harness) -> None:
    share = {
        "is_share": True,
        "is_msg_unfurl": True,
        "text": "The Q3 numbers are in: <https://example.com/q3|the sheet>, ask <@U1>",
        "author_id": "U2",
        "author_name": "Bob",
        "from_url": "https://acme.slack.com/archives/C9/p1700000000000100",
        "fallback": "[Nov 14th] Bob: The Q3 numbers are in",
    }
    blocks_only = {
        "is_msg_unfurl": True,
        "author_subname": "carol",
        "message_blocks": [
            {
                "message": {
                    "blocks": [
                        {
                            "type": "rich_text",
                            "elements": [
                                {
                                    "type": "rich_text_section",
                                    "elements": [
                                        {"type": "text", "text": "Deploy is done, "},
                                        {"type": "user", "user_id": "U2"},
                                        {"type": "text", "text": " <3"},
                                    ],
                                }
                            ],
                        }
                    ]
                }
            }
        ],
    }
    preview = {"type": "link_preview", "title": "Example", "text": "A web page", "from_url": "x"}
    snippet = {
        "id": "F0SNIPPET9",
        "name": "query.sql",
        "title": "query.sql",
        "mode": "snippet",
        "filetype": "sql",
        "preview": "SELECT region, sum(sales)\nFROM orders\nGROUP BY region",
    }
    mention = await harness.mention(
        "what do these say?", attachments=[share, blocks_only, preview], files=[snippet]
    )
    await harness.settled()

    content = conversation(harness.claude.requests[-1])[0]["content"]
    assert content[-1]["text"] == (
        "Alice: what do these say?\n\n"
        "[Shared message from Bob at https://acme.slack.com/archives/C9/p1700000000000100: "
        "The Q3 numbers are in: the sheet (https://example.com/q3), ask @Alice]\n\n"
        "[Shared message from carol: Deploy is done, @Bob <3]"
    )
    [sql] = document_blocks(content)
    assert sql["title"] == "query.sql"
    assert sql["source"]["data"] == "SELECT region, sum(sales)\nFROM orders\nGROUP BY region"
    assert harness.texts(CHANNEL, mention["ts"])


async def test_a_document_shared_earlier_in_the_thread_is_read_by_sync(harness: Harness) -> None:
    slack = harness.slack
    root = slack.add_user_message(CHANNEL, "U1", "kicking off the budget review")
    csv = slack.add_file(name="budget.csv", mimetype="text/csv", content=b"team,eur\nbots,1000\n")
    slack.add_user_message(CHANNEL, "U2", "here it is", thread_ts=root["ts"], files=[csv])
    await harness.mention("what's the bots budget?", thread_ts=root["ts"])
    await harness.settled()

    messages = conversation(harness.claude.requests[-1])
    [bob] = [b for b in messages[0]["content"] if b.get("title") == "budget.csv"]
    assert bob["source"]["data"] == "team,eur\nbots,1000\n"


async def test_many_documents_at_once_are_all_answered(harness: Harness) -> None:
    """A burst of Office files converts two at a time; every reply still arrives."""
    slack = harness.slack
    mentions = []
    for index in range(6):
        file = slack.add_file(
            name=f"deck{index}.pptx", mimetype=documents.PPTX, content=documents.slides()
        )
        mentions.append(await harness.mention(f"deck {index}?", channel=f"C{index}", files=[file]))
    await asyncio.wait_for(harness.settled(timeout=30), 40)
    for index, mention in enumerate(mentions):
        assert harness.texts(f"C{index}", mention["ts"]), index
    titled = {
        block["title"]
        for request in harness.claude.requests
        for message in conversation(request)
        for block in message["content"]
        if block["type"] == "document"
    }
    assert titled == {f"deck{index}.pptx" for index in range(6)}
