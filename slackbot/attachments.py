"""The files of one Slack message → blocks for Claude, and notes for what can't be used.

For each file: decide its kind from what Slack claims, download it (`slack_files.py`), convert it
with that kind's converter: `images.py` for images, `pdfs.py` for PDFs, `text_files.py` for
text-like files (and snippets), `office.py` for Word, Excel and PowerPoint documents. A file
Slack calls `binary` (or says nothing about) is downloaded and its kind sniffed from the bytes.
A new kind of file is a new converter module and a row in the kind tables below; nothing else
changes.

A message's images together may decode only so many pixels (`max_pixels_per_message`): eight
tiny PNGs that each decode to 200 MB are one upload, and one turn, away. The budget goes to the
files in the order they were attached, whatever order their downloads finish in, so which files
are skipped (later ones) is the same every time, and the note names each.

Nothing here raises for a bad file: one unreadable attachment must not stop the bot from answering
the rest of the message, so every failure becomes a `FileNote` the conversation shows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from slackbot import messages, office, pdfs, text_files
from slackbot.config import DEFAULT_MAX_TEXT_FILE_BYTES
from slackbot.converter_process import ConverterProcesses
from slackbot.documents import DocumentBlock, size_text, text_document
from slackbot.errors import FileRefused, NotConvertible
from slackbot.images import (
    DEFAULT_MAX_CONCURRENT_DECODES,
    DEFAULT_MAX_DECODING_PIXELS,
    DEFAULT_MAX_LONG_EDGE,
    DEFAULT_MAX_PIXELS,
    FILETYPES,
    MEDIA_TYPES,
    ImageBlock,
    Images,
    sniff_media_type,
)
from slackbot.slack_files import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    Downloaded,
    FilesInfo,
    SlackFiles,
    display_name,
    download_url,
)

if TYPE_CHECKING:
    from slackbot.model_lookup import ModelLimits

logger = logging.getLogger(__name__)

# Per message, whatever the number of files: four images at the per-image limit, ten 5K
# screenshots (~15 MP each) or a dozen 12 MP photos (larger JPEGs decode at half size or less).
DEFAULT_MAX_PIXELS_PER_MESSAGE = 200_000_000

Kind = Literal["image", "pdf", "text", "office", "unknown"]
"""A kind of file the bot reads; each has one converter. `unknown`: Slack doesn't say, so the
bytes are downloaded and decide."""

# What Slack claims a file is chooses its converter, so a video is skipped without downloading
# it. Only a claim: the downloaded bytes decide what is sent to Claude.
_KIND_BY_MIMETYPE: dict[str, Kind] = {
    **{media_type: "image" for media_type in MEDIA_TYPES},
    "application/pdf": "pdf",
    **{mimetype: "office" for mimetype in office.MIMETYPES},
}
# Slack's `filetype`, and the name's extension when Slack gives neither a mimetype nor a filetype
# (some `files.info` shapes): Slack names files after the user's upload.
_KIND_BY_FILETYPE: dict[str, Kind] = {
    **{filetype: "text" for filetype in text_files.FILETYPES},
    **{filetype: "image" for filetype in FILETYPES},
    "pdf": "pdf",
    **{filetype: "office" for filetype in office.FILETYPES},
}
_KIND_BY_EXTENSION: dict[str, Kind] = {
    **{extension: "text" for extension in text_files.EXTENSIONS},
    **{extension: "image" for extension in FILETYPES},
    "pdf": "pdf",
    **{extension: "office" for extension in office.FILETYPES},
}
# Claims that say nothing: the bytes will tell.
_UNKNOWN_MIMETYPES = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/binary", "unknown"}
)
_UNKNOWN_FILETYPES = frozenset({"", "binary", "auto"})
# Names that say the file is something the bot doesn't read: not worth downloading to sniff.
_BINARY_EXTENSIONS = frozenset(
    {
        *("zip", "gz", "tgz", "bz2", "xz", "7z", "rar", "tar", "zst"),
        *("mp3", "m4a", "wav", "ogg", "flac", "aac", "mp4", "m4v", "mov", "avi", "mkv", "webm"),
        *("exe", "dll", "so", "dylib", "dmg", "iso", "apk", "ipa", "jar", "class", "bin", "o"),
        *("doc", "xls", "ppt", "odt", "ods", "odp", "pages", "numbers", "key"),
        *("psd", "ai", "sketch", "fig", "heic", "tif", "tiff", "bmp", "ico", "eps"),
        *("sqlite", "db", "parquet", "pkl", "npy", "woff", "woff2", "ttf", "otf"),
    }
)
_EXTENSION = re.compile(r"\.([A-Za-z0-9]+)$")


@dataclass(frozen=True)
class FileNote:
    """Something to tell the user instead of a file's content, so a bad file never ends the turn.

    `text` is plain text containing the file's name; whoever posts it escapes it for Slack.
    """

    name: str
    text: str


@dataclass(frozen=True)
class FileContents:
    """What a message's files became, each list in the order the files were attached. A file
    read only in part (a text cut at the cap) has its document and a note saying so."""

    images: list[ImageBlock] = field(default_factory=list)
    documents: list[DocumentBlock] = field(default_factory=list)
    notes: list[FileNote] = field(default_factory=list)


@dataclass(frozen=True)
class _Read:
    """One file's outcome: a block, a note, or both."""

    block: ImageBlock | DocumentBlock | None = None
    note: FileNote | None = None


Converter = Callable[[Downloaded, str, "_Share"], Awaitable[_Read]]
"""A kind's converter: (the download, display name, the file's share of the message's budget) →
what it read, or FileRefused / NotConvertible."""


def _mimetype(file: Mapping[str, Any]) -> str:
    return str(file.get("mimetype") or "").split(";")[0].strip().lower()


def kind_of(file: Mapping[str, Any]) -> Kind | None:
    """The kind Slack claims the file is: a snippet is text; else by mimetype, else filetype,
    else the name's extension, each consulted only when the one before says nothing (absent,
    or `binary`); `unknown` when none says anything; None for a kind the bot doesn't read."""
    if file.get("mode") == "snippet":
        return "text"
    mimetype = _mimetype(file)
    if mimetype not in _UNKNOWN_MIMETYPES:
        if mimetype in _KIND_BY_MIMETYPE:
            return _KIND_BY_MIMETYPE[mimetype]
        return "text" if text_files.is_text_mimetype(mimetype) else None
    filetype = str(file.get("filetype") or "").lower()
    if filetype not in _UNKNOWN_FILETYPES:
        return _KIND_BY_FILETYPE.get(filetype)
    match = _EXTENSION.search(str(file.get("name") or ""))
    extension = match.group(1).lower() if match else ""
    if extension in _BINARY_EXTENSIONS:
        return None
    return _KIND_BY_EXTENSION.get(extension, "unknown")


def _described_type(file: Mapping[str, Any]) -> str:
    """What to call a file's type in a note: Slack's own wording when it has one."""
    for key in ("pretty_type", "filetype", "mimetype"):
        value = file.get(key)
        if isinstance(value, str) and value:
            return value.upper() if key == "filetype" else value
    return "unknown type"


def _snippet_preview(file: Mapping[str, Any]) -> str | None:
    """The text Slack sent along with a snippet, for when the snippet itself can't be had."""
    preview = file.get("preview")
    if file.get("mode") != "snippet" or not isinstance(preview, str) or not preview.strip():
        return None
    return preview


class Attachments:
    """Reads the files of a Slack message.

    Made once in `create_bot` with the app's aiohttp session; `read_all` is safe to call from many
    conversations at once (downloads, decodes and conversions share the limits of one process).
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
        max_text_bytes: int = DEFAULT_MAX_TEXT_FILE_BYTES,
        max_pdf_pages: int = pdfs.MAX_PAGES_SMALL_WINDOW,
        pdf_input: bool = True,
        converters: ConverterProcesses | None = None,
    ) -> None:
        """`trusted_hosts` are the origins besides Slack's own that get the bot token: the
        `SLACK_API_URL` and `SLACK_FILE_HOSTS` entries (see `slack_files.origin_of`); a malformed
        one raises ValueError. `max_pixels_per_message` bounds what one message's images decode
        together; `max_decoding_pixels` what the whole process decodes at once. `max_text_bytes`
        is where a text (or an Office document's Markdown) is cut; `max_pdf_pages` and
        `pdf_input` follow the model (`use_model`); `converters` run PDFs and Office documents
        in child processes."""
        if max_pixels_per_message < 1 or max_text_bytes < 1 or max_pdf_pages < 1:
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
        self._max_text_bytes = max_text_bytes
        self._max_pdf_pages = max_pdf_pages
        self._pdf_input = pdf_input
        self._processes = converters or ConverterProcesses()
        self._converters: dict[Kind, Converter] = {
            "image": self._image,
            "pdf": self._pdf,
            "text": self._text,
            "office": self._office,
        }

    def __repr__(self) -> str:
        return f"Attachments({self._slack_files!r})"

    def use_model(self, limits: ModelLimits) -> None:
        """Read PDFs as the model takes them: at all (`pdf_input`), and up to its page limit."""
        self._pdf_input = limits.pdf_input
        self._max_pdf_pages = pdfs.page_limit(limits.max_input_tokens)

    async def read_all(self, files: Sequence[Mapping[str, Any]]) -> FileContents:
        """Reads every file concurrently; each list keeps the order the files were attached in."""
        budget = _MessageBudget(len(files), self._max_pixels_per_message)
        results = await asyncio.gather(
            *(self._read_safely(file, budget.share(index)) for index, file in enumerate(files))
        )
        blocks = [result.block for result in results]
        return FileContents(
            images=[block for block in blocks if isinstance(block, ImageBlock)],
            documents=[block for block in blocks if isinstance(block, DocumentBlock)],
            notes=[result.note for result in results if result.note is not None],
        )

    async def read(self, file: Mapping[str, Any]) -> ImageBlock | DocumentBlock | FileNote:
        """One Slack file object (from an event or `files.info`) → its block, else its note, as
        the only file of its message. Never raises (except cancellation)."""
        contents = await self.read_all([file])
        blocks: list[ImageBlock | DocumentBlock] = [*contents.images, *contents.documents]
        return blocks[0] if blocks else contents.notes[0]

    async def _read_safely(self, file: Mapping[str, Any], share: _Share) -> _Read:
        try:
            return await self._read(file, share)
        except FileRefused as refusal:
            return _Read(note=FileNote(name=refusal.name, text=refusal.text))
        except Exception:
            logger.exception("unexpected error reading Slack file %s", file.get("id"))
            name = display_name(file)
            return _Read(note=FileNote(name=name, text=messages.file_note("unexpected", name)))
        finally:
            share.settle()  # a file that failed early must not hold up the files after it

    async def _read(self, file: Mapping[str, Any], share: _Share) -> _Read:
        try:
            file = await self._slack_files.resolve(file)
        except FileRefused:
            preview = _snippet_preview(file)
            if preview is None:
                raise
            return self._preview(file, preview)
        name = display_name(file)
        kind = kind_of(file)
        if kind not in ("image", "unknown"):
            share.settle()  # only images spend the message's pixels: don't keep them waiting
        if kind is None:
            text = messages.file_note("unsupported", name, kind=_described_type(file))
            raise FileRefused(name, text)
        if kind == "pdf":
            self._check_pdf_input(name)
        if download_url(file) is None and (preview := _snippet_preview(file)) is not None:
            return self._preview(file, preview)
        # A text is read from its start: a 50 MB log is not refused, only its first part read.
        first = self._max_text_bytes if kind == "text" else None
        downloaded = await self._slack_files.download(file, first=first)
        if kind == "unknown":
            kind = await self._sniffed(downloaded.data, file, name)
            if kind != "image":
                share.settle()
        try:
            return await self._converters[kind](downloaded, name, share)
        except NotConvertible as exc:
            raise FileRefused(name, _note(exc, name)) from None

    async def _sniffed(self, data: bytes, file: Mapping[str, Any], name: str) -> Kind:
        """The kind of a file Slack didn't classify, from its bytes."""
        if sniff_media_type(data) is not None:
            return "image"
        if pdfs.looks_like_pdf(data):
            self._check_pdf_input(name)
            return "pdf"
        if office.sniff(data) is not None:
            return "office"
        if await asyncio.to_thread(text_files.looks_like_text, data):
            return "text"
        text = messages.file_note("unsupported", name, kind=_described_type(file))
        raise FileRefused(name, text)

    def _check_pdf_input(self, name: str) -> None:
        if not self._pdf_input:
            raise FileRefused(name, messages.file_note("pdf_not_read_by_model", name))

    def _preview(self, file: Mapping[str, Any], preview: str) -> _Read:
        name = display_name(file)
        partial = bool(file.get("preview_is_truncated") or file.get("lines_more"))
        note = FileNote(name, messages.file_note("snippet_preview", name)) if partial else None
        return _Read(text_document(preview, name, len(preview.encode("utf-8"))), note)

    async def _image(self, downloaded: Downloaded, name: str, share: _Share) -> _Read:
        opened = await self._images.open(downloaded.data, name)
        await share.take(opened.pixels, name)
        return _Read(await self._images.convert(opened))

    async def _pdf(self, downloaded: Downloaded, name: str, share: _Share) -> _Read:
        return _Read(
            await pdfs.read(
                downloaded.data, name, max_pages=self._max_pdf_pages, processes=self._processes
            )
        )

    async def _text(self, downloaded: Downloaded, name: str, share: _Share) -> _Read:
        block, note = await asyncio.to_thread(
            functools.partial(
                text_files.read,
                downloaded.data,
                name,
                max_bytes=self._max_text_bytes,
                complete=downloaded.complete,
                size=downloaded.size,
            )
        )
        return _Read(block, FileNote(name, note) if note else None)

    async def _office(self, downloaded: Downloaded, name: str, share: _Share) -> _Read:
        block, cut = await office.read(
            downloaded.data, name, max_text_bytes=self._max_text_bytes, processes=self._processes
        )
        kept = size_text(self._max_text_bytes)
        note = FileNote(name, messages.file_note("office_cut", name, kept=kept)) if cut else None
        return _Read(block, note)


def _note(exc: NotConvertible, name: str) -> str:
    """The note for a converter's refusal (one sent from a child process included)."""
    try:
        return messages.file_note(exc.problem, name, **exc.details)  # type: ignore[arg-type]
    except (KeyError, IndexError, ValueError):
        logger.warning("no note for converter problem %r", exc.problem)
        return messages.file_note("unexpected", name)


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
