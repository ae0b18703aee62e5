"""The files of one Slack message → blocks for Claude, and notes for what can't be used.

For each file: decide its kind from what Slack claims, download it (`slack_files.py`), convert it
with that kind's converter (`images.py` today). A new kind of file (PDF, text, Office documents)
is a new converter module and a row in the kind tables below; nothing else changes.

A message's images together may decode only so many pixels (`max_pixels_per_message`): eight
tiny PNGs that each decode to 200 MB are one upload, and one turn, away. The budget goes to the
files in the order they were attached, whatever order their downloads finish in, so which files
are skipped (later ones) is the same every time, and the note names each.

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
    DEFAULT_MAX_DECODING_PIXELS,
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

# Per message, whatever the number of files: four images at the per-image limit, ten 5K
# screenshots (~15 MP each) or a dozen 12 MP photos (larger JPEGs decode at half size or less).
DEFAULT_MAX_PIXELS_PER_MESSAGE = 200_000_000

Kind = Literal["image"]
"""A kind of file the bot reads; each has one converter."""

# What Slack claims a file is chooses its converter, so a PDF is skipped without downloading it.
# Only a claim: the downloaded bytes decide what is sent to Claude.
_KIND_BY_MIMETYPE: dict[str, Kind] = {media_type: "image" for media_type in MEDIA_TYPES}
# Slack's `filetype`, and the name's extension when Slack gives neither a mimetype nor a filetype
# (some `files.info` shapes): Slack names files after the user's upload.
_KIND_BY_FILETYPE: dict[str, Kind] = {filetype: "image" for filetype in FILETYPES}
_EXTENSION = re.compile(r"\.([A-Za-z0-9]+)$")

Converter = Callable[[bytes, str, "_Share"], Awaitable[ImageBlock]]
"""A kind's converter: (downloaded bytes, display name, the file's share of the message's
budget) → a block, or FileRefused."""


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
        max_pixels_per_message: int = DEFAULT_MAX_PIXELS_PER_MESSAGE,
        max_decoding_pixels: int = DEFAULT_MAX_DECODING_PIXELS,
    ) -> None:
        """`trusted_hosts` are the origins besides Slack's own that get the bot token: the
        `SLACK_API_URL` and `SLACK_FILE_HOSTS` entries (see `slack_files.origin_of`); a malformed
        one raises ValueError. `max_pixels_per_message` bounds what one message's images decode
        together; `max_decoding_pixels` what the whole process decodes at once."""
        if max_pixels_per_message < 1:
            raise ValueError("limits must be positive")
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
            max_decoding_pixels=max_decoding_pixels,
        )
        self._max_pixels_per_message = max_pixels_per_message
        self._converters: dict[Kind, Converter] = {"image": self._image}

    def __repr__(self) -> str:
        return f"Attachments({self._slack_files!r})"

    async def read_all(
        self, files: Sequence[Mapping[str, Any]]
    ) -> tuple[list[ImageBlock], list[FileNote]]:
        """Reads every file concurrently; both lists keep the order the files were attached in."""
        budget = _MessageBudget(len(files), self._max_pixels_per_message)
        results = await asyncio.gather(
            *(self._read_safely(file, budget.share(index)) for index, file in enumerate(files))
        )
        images = [result for result in results if isinstance(result, ImageBlock)]
        notes = [result for result in results if isinstance(result, FileNote)]
        return images, notes

    async def read(self, file: Mapping[str, Any]) -> ImageBlock | FileNote:
        """One Slack file object (from an event or `files.info`) → a block or a note, as the only
        file of its message. Never raises (except cancellation)."""
        images, notes = await self.read_all([file])
        return images[0] if images else notes[0]

    async def _read_safely(self, file: Mapping[str, Any], share: _Share) -> ImageBlock | FileNote:
        try:
            return await self._read(file, share)
        except FileRefused as refusal:
            return FileNote(name=refusal.name, text=refusal.text)
        except Exception:
            logger.exception("unexpected error reading Slack file %s", file.get("id"))
            name = display_name(file)
            return FileNote(name=name, text=messages.file_note("unexpected", name))
        finally:
            share.settle()  # a file that failed early must not hold up the files after it

    async def _read(self, file: Mapping[str, Any], share: _Share) -> ImageBlock:
        file = await self._slack_files.resolve(file)
        name = display_name(file)
        kind = kind_of(file)
        if kind is None:
            text = messages.file_note("unsupported", name, kind=_described_type(file))
            raise FileRefused(name, text)
        downloaded = await self._slack_files.download(file)
        return await self._converters[kind](downloaded.data, name, share)

    async def _image(self, data: bytes, name: str, share: _Share) -> ImageBlock:
        opened = await self._images.open(data, name)
        await share.take(opened.pixels, name)
        return await self._images.convert(opened)


class _MessageBudget:
    """The pixels one message's images may decode, handed out in attachment order.

    File `i` takes its share only once every earlier file has taken its own or settled without
    one (failed, not an image), so the budget is spent on the first files attached: the ones
    left out are later ones, the same every time. A slow download delays the decoding of the
    files after it, never their downloads.
    """

    def __init__(self, files: int, pixels: int) -> None:
        self.limit = pixels
        self._left = pixels
        self._settled = [False] * files
        self._first_unsettled = 0
        self._turns = [asyncio.Event() for _ in range(files)]
        if files:
            self._turns[0].set()

    def share(self, index: int) -> _Share:
        return _Share(self, index)

    async def take(self, index: int, pixels: int, name: str) -> None:
        await self._turns[index].wait()
        try:
            if pixels > self._left:
                megapixels = f"{self.limit / 1_000_000:g}"
                text = messages.file_note("over_message_budget", name, megapixels=megapixels)
                raise FileRefused(name, text)
            self._left -= pixels
        finally:
            self.settle(index)

    def settle(self, index: int) -> None:
        """File `index` needs nothing more from the budget; idempotent."""
        if self._settled[index]:
            return
        self._settled[index] = True
        while self._first_unsettled < len(self._settled) and self._settled[self._first_unsettled]:
            self._first_unsettled += 1
        if self._first_unsettled < len(self._turns):
            self._turns[self._first_unsettled].set()


@dataclass(frozen=True)
class _Share:
    """One file's handle on its message's budget."""

    budget: _MessageBudget
    index: int

    async def take(self, pixels: int, name: str) -> None:
        """Waits for the earlier files, then takes `pixels`; FileRefused when the message has
        fewer left."""
        await self.budget.take(self.index, pixels, name)

    def settle(self) -> None:
        self.budget.settle(self.index)
