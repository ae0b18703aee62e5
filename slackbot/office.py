"""Word, Excel and PowerPoint files (.docx, .xlsx, .pptx) → Markdown text Claude reads as a
document, or a refusal.

Why this module is careful:

- An Office file is a zip of XML, and a zip can be a bomb: a few kilobytes that expand to
  gigabytes. The zip's central directory is read first and the file refused when its entries
  would expand beyond `MAX_UNCOMPRESSED` in all, or one of them more than `MAX_RATIO` times
  (Python's zipfile never inflates an entry beyond the size its directory declares, so the
  check holds for what is actually read).
- The conversion itself runs in a child process with caps on its memory and time
  (`converter_process.py`): python-docx and python-pptx hold the whole XML tree in memory, and
  none of the three libraries is imported by the bot itself.
- The work is bounded besides: conversion stops once the Markdown reaches the text cap
  (SLACKBOT_MAX_TEXT_FILE_KB), and within at most so many rows, columns, slides and elements,
  so an empty-looking sheet declaring a million rows costs no more than a full one.

Each format's converter keeps what a reader needs: headings, lists and tables of a document;
each sheet as a table (cached values, not formulas); each slide's title, text, tables and
speaker notes.
"""

from __future__ import annotations

import datetime
import io
import logging
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from slackbot.converter_process import ConverterProcesses
from slackbot.documents import DocumentBlock, cut_at_line, text_document
from slackbot.errors import NotConvertible

logger = logging.getLogger(__name__)

Format = Literal["docx", "xlsx", "pptx"]

MIMETYPES: dict[str, Format] = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.ms-excel.sheet.macroenabled.12": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
}
"""What Slack calls each format (lower-cased)."""
FILETYPES: dict[str, Format] = {"docx": "docx", "xlsx": "xlsx", "xlsm": "xlsx", "pptx": "pptx"}
"""Slack's `filetype` of each, which is also the name's extension."""

# The part each format's package is built around.
_MAIN_PARTS: dict[str, Format] = {
    "word/document.xml": "docx",
    "xl/workbook.xml": "xlsx",
    "ppt/presentation.xml": "pptx",
}
# An encrypted Office file, or one in the pre-2007 binary format, is an OLE compound file.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

#: Bounds on what the zip may expand to, checked against its central directory before opening.
MAX_UNCOMPRESSED = 50 * 1024 * 1024
MAX_RATIO = 200
MAX_ENTRIES = 10_000
#: An entry this small may compress as well as it likes (XML of repeated empty cells does).
_RATIO_FROM_BYTES = 1024 * 1024

#: Bounds on the conversion's work, besides the text cap.
MAX_ROWS_PER_SHEET = 20_000
MAX_ROWS = 100_000
MAX_COLUMNS = 100
MAX_SLIDES = 1_000
MAX_ELEMENTS = 200_000

_TASK = f"{__name__}:convert"


def sniff(data: bytes) -> Format | None:
    """The format of a zip that holds an Office document; None for anything else."""
    if not data.startswith(b"PK"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    return next((fmt for part, fmt in _MAIN_PARTS.items() if part in names), None)


async def read(
    data: bytes, name: str, *, max_text_bytes: int, processes: ConverterProcesses
) -> tuple[DocumentBlock, bool]:
    """The document's Markdown as a text document, and whether it was cut at the cap;
    NotConvertible for a file that is no Office document, a zip bomb, or has no text."""
    if data.startswith(_OLE_MAGIC):
        raise NotConvertible("office_encrypted")
    _checked_format(data)  # a zip bomb costs no child process (the child checks again)
    converted = await processes.run(_TASK, data, {"max_text_bytes": max_text_bytes})
    text, cut = cut_at_line(str(converted["text"]), max_text_bytes)
    if not text.strip():
        raise NotConvertible("office_no_text")
    return text_document(text, name, len(data)), cut or not converted["complete"]


# --- In the child process


class _Full(Exception):
    """The Markdown reached the cap (or the work its bound): stop converting."""


class _Markdown:
    """The Markdown being written, which stops the conversion once it is long enough."""

    def __init__(self, max_bytes: int) -> None:
        self.lines: list[str] = []
        self._size = 0
        self._max_bytes = max_bytes
        self._elements = 0
        #: False once something was left out (beyond a bound) even though there was room.
        self.complete = True

    def line(self, text: str = "") -> None:
        self.lines.append(text)
        self._size += len(text.encode("utf-8")) + 1
        if self._size > self._max_bytes:
            raise _Full

    def room(self) -> int:
        """Bytes left before the cap."""
        return self._max_bytes - self._size

    def visit(self) -> None:
        """One element looked at, whether or not it writes anything."""
        self._elements += 1
        if self._elements > MAX_ELEMENTS:
            raise _Full

    def table(self, rows: list[list[str]]) -> None:
        width = max((len(row) for row in rows), default=0)
        if not width:
            return
        if self.lines and self.lines[-1]:
            self.line()  # a table needs a blank line before it
        padded = [row + [""] * (width - len(row)) for row in rows]
        self.line("| " + " | ".join(padded[0]) + " |")
        self.line("|" + " --- |" * width)
        for row in padded[1:]:
            self.line("| " + " | ".join(row) + " |")
        self.line()

    def text(self) -> str:
        return "\n".join(self.lines).strip() + "\n"


def convert(data: bytes, *, max_text_bytes: int) -> dict[str, Any]:
    """{"format", "text" (Markdown), "complete"} of an Office document; NotConvertible for a
    corrupt zip, a zip bomb, or a zip that holds no Office document."""
    fmt = _checked_format(data)
    out = _Markdown(max_text_bytes)
    converters: dict[Format, Callable[[bytes, _Markdown], None]] = {
        "docx": _docx,
        "xlsx": _xlsx,
        "pptx": _pptx,
    }
    full = False
    try:
        converters[fmt](data, out)
    except _Full:
        full = True
    except (NotConvertible, MemoryError):
        raise
    except Exception as exc:
        logger.info("%s does not convert: %s: %s", fmt, type(exc).__name__, exc)
        raise NotConvertible("office_invalid") from None
    return {"format": fmt, "text": out.text(), "complete": out.complete and not full}


def _checked_format(data: bytes) -> Format:
    """The format, once the central directory shows the zip expands to a bounded size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise NotConvertible("office_invalid") from None
    total = sum(entry.file_size for entry in entries)
    ratio_breaker = any(
        entry.file_size > _RATIO_FROM_BYTES
        and entry.file_size > MAX_RATIO * max(1, entry.compress_size)
        for entry in entries
    )
    if len(entries) > MAX_ENTRIES or total > MAX_UNCOMPRESSED or ratio_breaker:
        raise NotConvertible("office_too_big", limit=f"{MAX_UNCOMPRESSED // (1024 * 1024)} MB")
    names = {entry.filename for entry in entries}
    fmt = next((fmt for part, fmt in _MAIN_PARTS.items() if part in names), None)
    if fmt is None:
        raise NotConvertible("office_invalid")
    return fmt


def _cell(value: object) -> str:
    """A value as one Markdown table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "TRUE" if value else "FALSE"
    elif isinstance(value, datetime.datetime):
        text = value.date().isoformat() if value.time() == datetime.time() else value.isoformat()
    elif isinstance(value, datetime.date | datetime.time):
        text = value.isoformat()
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _trimmed(cells: Iterable[str]) -> list[str]:
    row = list(cells)
    while row and not row[-1]:
        row.pop()
    return row


# Word


def _docx(data: bytes, out: _Markdown) -> None:
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    for block in document.iter_inner_content():
        out.visit()
        if isinstance(block, Table):
            _docx_table(block, out)
        else:
            _docx_paragraph(block, out)


def _docx_paragraph(paragraph: Any, out: _Markdown) -> None:
    text = paragraph.text.strip()
    if not text:
        return
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style == "Title":
        out.line(f"# {text}")
    elif style.startswith("Heading ") and style[8:].isdigit():
        out.line(f"{'#' * min(6, int(style[8:]) + 1)} {text}")
    elif style.startswith("List") or _numbered(paragraph):
        out.line(f"- {text}")
        return
    else:
        out.line(text)
    out.line()


def _numbered(paragraph: Any) -> bool:
    properties = paragraph._p.pPr
    return properties is not None and properties.numPr is not None


def _docx_table(table: Any, out: _Markdown) -> None:
    rows = []
    for row in table.rows:
        out.visit()
        rows.append(_trimmed(_cell(cell.text) for cell in row.cells[:MAX_COLUMNS]))
    out.table([row for row in rows if row] or [])


# Excel


def _xlsx(data: bytes, out: _Markdown) -> None:
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    rows_left = MAX_ROWS
    try:
        for sheet in workbook.worksheets:
            out.line(f"## {sheet.title}")
            out.line()
            sheet.reset_dimensions()  # the declared size can be wrong, and read-only trusts it
            rows: list[list[str]] = []
            pending = 0  # the Markdown the rows held back will take
            for count, values in enumerate(sheet.iter_rows(values_only=True)):
                if count >= MAX_ROWS_PER_SHEET:
                    out.complete = False  # the next sheets may still have room
                    break
                rows_left -= 1
                out.visit()
                row = _trimmed(_cell(value) for value in values[:MAX_COLUMNS])
                if row:
                    rows.append(row)
                    pending += sum(len(cell) + 3 for cell in row) + 2
                if pending > out.room() or rows_left <= 0:
                    break
            out.table(rows)  # the table is written whole: its width is known only now
            if pending > out.room() or rows_left <= 0:
                raise _Full
    finally:
        workbook.close()


# PowerPoint


def _pptx(data: bytes, out: _Markdown) -> None:
    import pptx

    presentation = pptx.Presentation(io.BytesIO(data))
    for number, slide in enumerate(presentation.slides, start=1):
        if number > MAX_SLIDES:
            raise _Full
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None else ""
        out.line(f"## Slide {number}" + (f": {' '.join(title.split())}" if title else ""))
        out.line()
        for shape in _shapes(slide.shapes, out):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if getattr(shape, "has_table", False):  # only graphic frames have the attribute
                out.table(
                    [
                        _trimmed(_cell(cell.text) for cell in list(row.cells)[:MAX_COLUMNS])
                        for row in shape.table.rows
                    ]
                )
            elif getattr(shape, "has_text_frame", False):
                _pptx_text(shape.text_frame, out)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            text = notes.text.strip() if notes is not None else ""
            if text:
                out.line("Notes: " + " ".join(text.split()))
                out.line()


def _shapes(shapes: Iterable[Any], out: _Markdown) -> Iterator[Any]:
    """Every shape, those inside groups included."""
    for shape in shapes:
        out.visit()
        if hasattr(shape, "shapes"):  # a group
            yield from _shapes(shape.shapes, out)
        else:
            yield shape


def _pptx_text(frame: Any, out: _Markdown) -> None:
    wrote = False
    for paragraph in frame.paragraphs:
        text = " ".join("".join(run.text for run in paragraph.runs).split())
        if text:
            out.line(("  " * paragraph.level + "- " if paragraph.level else "") + text)
            wrote = True
    if wrote:
        out.line()
