"""What every document kind turns into: a `DocumentBlock` Claude reads and can cite.

Two shapes reach the Messages API: a PDF as base64 (`pdfs.py`), and plain text, which text-like
files (`text_files.py`) and Office documents converted to Markdown (`office.py`) both become.
Both carry the file's name as their title and ask for citations, so Claude can point at the
page or passage an answer comes from (`sources.py` turns those into links).

Text is capped here, for every kind that produces it, at a line boundary: a long log or a huge
spreadsheet is read from its start, and the person is told how much was kept.

It imports nothing heavy: the converters' libraries are loaded only where they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

PDF_MEDIA_TYPE = "application/pdf"
TEXT_MEDIA_TYPE = "text/plain"

DocumentKind = Literal["pdf", "text"]

#: A cut text keeps at least this share of the cap when it looks for a line boundary; below it,
#: it is cut mid-line instead (a file of very long lines).
_MIN_SHARE_AT_A_LINE = 0.5


@dataclass(frozen=True)
class DocumentBlock:
    """A document that has been checked (and converted), ready to send to Claude as-is.

    `data` is the PDF's base64, or the text itself. `size` is the file's size as shared, in
    bytes; `pages` a PDF's page count; `text_chars` the characters of text Claude will read
    (for a PDF, estimated from a sample of its pages). The last three only feed the estimates
    that fit a conversation into the context window.
    """

    kind: DocumentKind
    media_type: str
    data: str
    name: str
    size: int = 0
    pages: int | None = None
    text_chars: int = 0

    def to_claude(self) -> dict[str, Any]:
        return claude_block(self.media_type, self.data, self.name)


def claude_block(media_type: str, data: str, title: str) -> dict[str, Any]:
    """The Messages API document block for a PDF (base64) or a text, with citations on."""
    if media_type == PDF_MEDIA_TYPE:
        source = {"type": "base64", "media_type": PDF_MEDIA_TYPE, "data": data}
    else:
        source = {"type": "text", "media_type": TEXT_MEDIA_TYPE, "data": data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if title:
        block["title"] = title
    block["citations"] = {"enabled": True}
    return block


def text_document(text: str, name: str, size: int) -> DocumentBlock:
    return DocumentBlock(
        kind="text",
        media_type=TEXT_MEDIA_TYPE,
        data=text,
        name=name,
        size=size,
        text_chars=len(text),
    )


def cut_at_line(text: str, max_bytes: int) -> tuple[str, bool]:
    """`text` within `max_bytes` of UTF-8, cut after the last whole line that fits; and whether
    anything was cut."""
    if len(text) <= max_bytes // 4 or len(text.encode("utf-8")) <= max_bytes:
        return text, False
    head = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    newline = head.rfind("\n")
    if newline >= len(head) * _MIN_SHARE_AT_A_LINE:
        head = head[: newline + 1]
    return head, True


def size_text(size: int) -> str:
    """A size as people read it in a note: `512 KB`, `2.3 MB`, `25 MB`."""
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KB"
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value >= 10 or value == int(value) else f"{value:.1f} MB"
