"""The files of one Slack message → blocks for Claude, and notes for what can't be used.

For each file: decide its kind from what Slack claims, download it (`slack_files.py`), convert it
with that kind's converter (`images.py` today). A new kind of file (PDF, text, Office documents)
is a new converter module and a row in the kind tables below; nothing else changes.

Nothing here raises for a bad file: one unreadable attachment must not stop the bot from answering
the rest of the message, so every failure becomes a `FileNote` the conversation shows.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from slackbot import messages
from slackbot.errors import FileRefused
from slackbot.images import (
    DEFAULT_MAX_CONCURRENT_DECODES,
    DEFAULT_MAX_LONG_EDGE,
    DEFAULT_MAX_PIXELS,
    FILETYPES,
    MEDIA_TYPES,
    ImageBlock,
    Images,
)
from slackbot.slack_files import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    FilesInfo,
    SlackFiles,
    display_name,
)

logger = logging.getLogger(__name__)

Kind = Literal["image"]
"""A kind of file the bot reads; each has one converter."""

# What Slack claims a file is chooses its converter, so a PDF is skipped without downloading it.
# Only a claim: the downloaded bytes decide what is sent to Claude.
_KIND_BY_MIMETYPE: dict[str, Kind] = {media_type: "image" for media_type in MEDIA_TYPES}
# Slack's `filetype`, and the name's extension when Slack gives neither a mimetype nor a filetype
# (some `files.info` shapes): Slack names files after the user's upload.
_KIND_BY_FILETYPE: dict[str, Kind] = {filetype: "image" for filetype in FILETYPES}
_EXTENSION = re.compile(r"\.([A-Za-z0-9]+)$")

Converter = Callable[[bytes, str], Awaitable[ImageBlock]]
"""A kind's converter: (downloaded bytes, display name) → a block, or FileRefused."""


@dataclass(frozen=True)
class FileNote:
    """Something to tell the user instead of a file's content, so a bad file never ends the turn.

    `text` is plain text containing the file's name; whoever posts it escapes it for Slack.
    """

    name: str
    text: str


def kind_of(file: Mapping[str, Any]) -> Kind | None:
    """The kind Slack claims the file is: by mimetype, else filetype, else the name's extension;
    None for a kind the bot doesn't read."""
    mimetype = str(file.get("mimetype") or "").lower()
    if mimetype:
        return _KIND_BY_MIMETYPE.get(mimetype)
    filetype = str(file.get("filetype") or "").lower()
    if filetype:
        return _KIND_BY_FILETYPE.get(filetype)
    match = _EXTENSION.search(str(file.get("name") or ""))
    return _KIND_BY_FILETYPE.get(match.group(1).lower()) if match else None


def _described_type(file: Mapping[str, Any]) -> str:
    """What to call a file's type in a note: Slack's own wording when it has one."""
    for key in ("pretty_type", "filetype", "mimetype"):
        value = file.get(key)
        if isinstance(value, str) and value:
            return value.upper() if key == "filetype" else value
    return "unknown type"


class Attachments:
    """Reads the files of a Slack message.

    Made once in `create_bot` with the app's aiohttp session; `read_all` is safe to call from many
    conversations at once (downloads and decodes share the limits of one process).
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        bot_token: str,
        trusted_hosts: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_concurrent_decodes: int = DEFAULT_MAX_CONCURRENT_DECODES,
        max_long_edge: int = DEFAULT_MAX_LONG_EDGE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        files_info: FilesInfo | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """`trusted_hosts` are the origins besides Slack's own that get the bot token: the
        `SLACK_API_URL` and `SLACK_FILE_HOSTS` entries (see `slack_files.origin_of`); a malformed
        one raises ValueError."""
        self._slack_files = SlackFiles(
            session=session,
            bot_token=bot_token,
            trusted_hosts=trusted_hosts,
            max_bytes=max_bytes,
            files_info=files_info,
            timeout=timeout,
        )
        self._images = Images(
            max_long_edge=max_long_edge,
            max_pixels=max_pixels,
            max_concurrent_decodes=max_concurrent_decodes,
        )
        self._converters: dict[Kind, Converter] = {"image": self._images.convert}

    def __repr__(self) -> str:
        return f"Attachments({self._slack_files!r})"

    async def read_all(
        self, files: Sequence[Mapping[str, Any]]
    ) -> tuple[list[ImageBlock], list[FileNote]]:
        """Reads every file concurrently; both lists keep the order the files were attached in."""
        results = await asyncio.gather(*(self.read(file) for file in files))
        images = [result for result in results if isinstance(result, ImageBlock)]
        notes = [result for result in results if isinstance(result, FileNote)]
        return images, notes

    async def read(self, file: Mapping[str, Any]) -> ImageBlock | FileNote:
        """One Slack file object (from an event or `files.info`) → a block or a note.

        Never raises (except cancellation).
        """
        try:
            return await self._read(file)
        except FileRefused as refusal:
            return FileNote(name=refusal.name, text=refusal.text)
        except Exception:
            logger.exception("unexpected error reading Slack file %s", file.get("id"))
            name = display_name(file)
            return FileNote(name=name, text=messages.file_note("unexpected", name))

    async def _read(self, file: Mapping[str, Any]) -> ImageBlock:
        file = await self._slack_files.resolve(file)
        name = display_name(file)
        kind = kind_of(file)
        if kind is None:
            text = messages.file_note("unsupported", name, kind=_described_type(file))
            raise FileRefused(name, text)
        downloaded = await self._slack_files.download(file)
        return await self._converters[kind](downloaded.data, name)
