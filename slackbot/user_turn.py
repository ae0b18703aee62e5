"""A person's Slack message → what the store keeps of it (plain text, speaker, images, documents,
notes).

Used for the message that mentions the bot and for the thread messages that sync brings in, so
both read the same to Claude. Messages shared into it become part of its text, labelled with
their author (`shared_messages.py`); its files become images, documents and notes
(`attachments.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slackbot import slack_text
from slackbot.attachments import Attachments, FileContents, FileNote
from slackbot.people import People
from slackbot.shared_messages import render, shared_messages
from slackbot.store import Store, StoredDocument, StoredImage


@dataclass(frozen=True)
class UserTurn:
    ts: str
    user_id: str | None
    user_name: str
    text: str
    images: tuple[StoredImage, ...]
    notes: tuple[FileNote, ...]
    documents: tuple[StoredDocument, ...] = ()

    @property
    def note_texts(self) -> list[str]:
        return [note.text for note in self.notes]

    def store_fields(self) -> dict[str, Any]:
        """The keyword arguments of `Store.add_user_turn` / `add_turn_and_load`."""
        return {
            "ts": self.ts,
            "user_id": self.user_id,
            "user_name": self.user_name,
            "text": self.text,
            "images": self.images,
            "notes": self.note_texts,
            "documents": self.documents,
        }


async def read_message(
    message: dict[str, Any],
    *,
    people: People,
    attachments: Attachments,
    bot_user_id: str | None,
) -> UserTurn:
    user_id = message.get("user")
    if user_id:
        people.learn_profile(user_id, message.get("user_profile"))
    text, names = await _text(message, people=people, bot_user_id=bot_user_id, speaker=user_id)
    contents = FileContents()
    if message.get("files"):
        contents = await attachments.read_all(message["files"])
    return UserTurn(
        ts=str(message["ts"]),
        user_id=user_id,
        user_name=names.get(user_id, user_id) if user_id else "Someone",
        text=text,
        images=tuple(StoredImage(i.media_type, i.data, i.name) for i in contents.images),
        notes=tuple(contents.notes),
        documents=tuple(
            StoredDocument(d.kind, d.media_type, d.data, d.name, d.size, d.pages, d.text_chars)
            for d in contents.documents
        ),
    )


async def edited_text(message: dict[str, Any], *, people: People, bot_user_id: str | None) -> str:
    """The text the store keeps for an edited message (its files are as they were)."""
    text, _ = await _text(message, people=people, bot_user_id=bot_user_id, speaker=None)
    return text


async def _text(
    message: dict[str, Any], *, people: People, bot_user_id: str | None, speaker: str | None
) -> tuple[str, dict[str, str]]:
    """The message's plain text, shared messages included, and the names it needed."""
    raw = message.get("text") or ""
    shared = shared_messages(message)
    markup = [raw, *(s.markup for s in shared)]
    mentioned = [
        u for text in markup for u in slack_text.mentioned_user_ids(text) if u != bot_user_id
    ]
    names = await people.names(list(dict.fromkeys([*mentioned, *([speaker] if speaker else [])])))
    text = slack_text.to_plain_text(raw, names=names, bot_user_id=bot_user_id)
    quoted = [
        render(s, slack_text.to_plain_text(s.markup, names=names, bot_user_id=None)) for s in shared
    ]
    if quoted:
        text = "\n\n".join(part for part in [text.strip(), *quoted] if part)
    return text, names


async def store_user_turn(store: Store, conversation_id: int, turn: UserTurn) -> bool:
    """Keep a person's turn; False if that message was stored already."""
    return await store.add_user_turn(conversation_id, **turn.store_fields())
