"""PDF bytes → a PDF document block Claude reads page by page (and cites), or a refusal.

Why this module is careful:

- The Messages API takes PDFs within limits (32 MB per request; up to 600 pages, or 100 on
  models whose window is 200k tokens or less) and rejects the whole request otherwise. A
  rejected document stored in a thread's history would break every later turn, so every PDF
  is opened first: its pages are counted, and an encrypted or corrupt one is refused with a
  note, like one over a limit.
- Opening it is pypdf's work on user input, done in a child process with caps on its memory
  and time (`converter_process.py`); pypdf is never imported by the bot itself.
- The pages' text is sampled there too: what a PDF costs in tokens depends on how much text its
  pages hold (`context_window.py` estimates it from `text_chars`).

It knows nothing of Slack: `attachments.py` calls it with downloaded bytes.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import time
from typing import Any

from slackbot.converter_process import ConverterProcesses
from slackbot.documents import PDF_MEDIA_TYPE, DocumentBlock, size_text
from slackbot.errors import NotConvertible

logger = logging.getLogger(__name__)

#: The API's page limits: per request, and on models whose window is at most `SMALL_WINDOW`.
MAX_PAGES = 600
MAX_PAGES_SMALL_WINDOW = 100
SMALL_WINDOW = 200_000
#: The largest PDF sent: its base64 (4/3 of it) stays within the 30 MB the bot allows a request
#: of the API's 32 MB, with room for the conversation around it.
MAX_PDF_BYTES = 21 * 1024 * 1024
#: Pages whose text is extracted to estimate the whole document's, and the time that may take.
_SAMPLE_PAGES = 8
_SAMPLE_SECONDS = 3.0
_TASK = f"{__name__}:examine"


def page_limit(max_input_tokens: int) -> int:
    """The pages one request may carry on a model with this context window."""
    return MAX_PAGES_SMALL_WINDOW if max_input_tokens <= SMALL_WINDOW else MAX_PAGES


def looks_like_pdf(data: bytes) -> bool:
    """The PDF header, which the format allows after some leading junk."""
    return b"%PDF-" in data[:1024]


async def read(
    data: bytes, name: str, *, max_pages: int, processes: ConverterProcesses
) -> DocumentBlock:
    """The document block for a PDF, or NotConvertible saying which limit it breaks."""
    if len(data) > MAX_PDF_BYTES:
        raise NotConvertible(
            "pdf_too_big", size=size_text(len(data)), limit=size_text(MAX_PDF_BYTES)
        )
    if not looks_like_pdf(data):
        raise NotConvertible("pdf_invalid")
    facts = await processes.run(_TASK, data, {"max_pages": max_pages})
    return DocumentBlock(
        kind="pdf",
        media_type=PDF_MEDIA_TYPE,
        data=base64.b64encode(data).decode("ascii"),
        name=name,
        size=len(data),
        pages=int(facts["pages"]),
        text_chars=int(facts["text_chars"]),
    )


# --- In the child process


def examine(data: bytes, *, max_pages: int) -> dict[str, Any]:
    """{"pages", "text_chars"} of a PDF Claude can read; NotConvertible for one that is
    encrypted, corrupt, empty or longer than `max_pages`."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise NotConvertible("pdf_encrypted")
        pages = len(reader.pages)
    except NotConvertible:
        raise
    except Exception as exc:
        # pypdf raises PdfReadError and a zoo of others (KeyError, ValueError, …) for bad input.
        logger.info("not a readable PDF: %s: %s", type(exc).__name__, exc)
        raise NotConvertible("pdf_invalid") from None
    if pages == 0:
        raise NotConvertible("pdf_invalid")
    if pages > max_pages:
        raise NotConvertible("pdf_too_many_pages", pages=pages, limit=max_pages)
    return {"pages": pages, "text_chars": _text_chars(reader, pages)}


def _text_chars(reader: Any, pages: int) -> int:
    """The characters of text in the whole document, estimated from evenly spread pages."""
    step = max(1, pages // _SAMPLE_PAGES)
    deadline = time.monotonic() + _SAMPLE_SECONDS
    sampled = chars = 0
    for index in range(0, pages, step):
        if sampled and time.monotonic() > deadline:
            break
        # A page whose text can't be extracted still costs its image: count no text for it.
        with contextlib.suppress(Exception):
            chars += len(reader.pages[index].extract_text() or "")
        sampled += 1
    return round(chars * pages / max(1, sampled))
