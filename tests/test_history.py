"""Stored turns → Claude messages."""

from __future__ import annotations

import json

from slackbot.history import build_messages
from slackbot.store import StoredDocument, StoredImage, Turn


def user(n: int, text: str, name: str = "Alice", **kw) -> Turn:
    return Turn(id=n, role="user", ts=str(n), text=text, user_name=name, **kw)


def bot(n: int, text: str) -> Turn:
    return Turn(id=n, role="assistant", ts=str(n), text=text)


def test_roles_alternate_and_same_role_turns_merge() -> None:
    messages = build_messages(
        [user(1, "hi"), user(2, "also", name="Bob"), bot(3, "hello"), bot(4, "more"), user(5, "ok")]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["text"] for b in messages[0]["content"]] == ["Alice: hi", "Bob: also"]
    assert [b["text"] for b in messages[1]["content"]] == ["hello", "more"]


def test_starts_and_ends_with_a_user_turn() -> None:
    messages = build_messages([bot(1, "welcome"), user(2, "q"), bot(3, "a")])
    assert [m["role"] for m in messages] == ["user"]


def test_images_come_before_the_text_and_empty_replies_are_skipped() -> None:
    turn = user(1, "", images=(StoredImage("image/png", "QUJD", "a.png"),), notes=("x.pdf: no",))
    messages = build_messages([turn, bot(2, ""), user(3, "again")])
    content = messages[0]["content"]
    assert content[0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"},
    }
    assert content[1]["text"] == "Alice: (no text)\n[x.pdf: no]"
    assert len(messages) == 1  # the empty assistant turn vanished, the user turns merged


def test_each_request_starts_with_the_bytes_of_the_previous_one() -> None:
    """Prompt caching reads a prefix: what the thread rendered to at one mention must be the
    start of what it renders to at the next (same blocks, same bytes), whatever came between."""
    turns = [
        user(1, "first question", images=(StoredImage("image/png", "QUJD", "a.png"),)),
        bot(2, "first answer"),
        user(3, "a remark from Bob", name="Bob"),
        user(4, "second question"),
        bot(5, "second answer"),
        user(6, "third question", notes=("x.pdf: unreadable",)),
    ]
    for end in (1, 4, 6):
        earlier = build_messages(turns[:end])
        later = build_messages(turns)
        flat_earlier = [(m["role"], b) for m in earlier for b in m["content"]]
        flat_later = [(m["role"], b) for m in later for b in m["content"]]
        assert json.dumps(flat_later[: len(flat_earlier)]) == json.dumps(flat_earlier)


def test_documents_come_before_images_before_the_text() -> None:
    pdf = StoredDocument("pdf", "application/pdf", "JVBERi0=", "report.pdf", pages=2)
    csv = StoredDocument("text", "text/plain", "a,b\n", "data.csv")
    turn = user(
        1,
        "compare these",
        images=(StoredImage("image/png", "QUJD", "a.png"),),
        documents=(pdf, csv),
    )
    content = build_messages([turn])[0]["content"]
    assert content == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "report.pdf",
            "citations": {"enabled": True},
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "a,b\n"},
            "title": "data.csv",
            "citations": {"enabled": True},
        },
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"},
        },
        {"type": "text", "text": "Alice: compare these"},
    ]
