"""Text-like file bytes → a plain-text document, or a refusal with the note to show.

Plain text, Markdown, CSV, logs, JSON, YAML, XML, source code: Claude reads them as a text
document it can cite. Why this module is careful:

- The encoding comes from the bytes: a byte-order mark first (UTF-8, UTF-16 and UTF-32), then
  strict UTF-8 (most files), then `charset-normalizer`'s detection (Windows-1252, Shift JIS, …),
  imported only when a file needs it.
- A file named `.txt` can hold anything: NUL bytes without a byte-order mark, bytes no encoding
  explains, or control characters in what did decode mean it is not text, and it gets a note.
  Claude never reads garbage as if it were the file.
- A long file is read from its start up to `max_bytes` (SLACKBOT_MAX_TEXT_FILE_KB), cut at a
  line boundary, and the person is told how much was read.

It knows nothing of Slack: `attachments.py` calls it with downloaded bytes, in a worker thread
(detecting an encoding is pure-Python work on up to half a megabyte).
"""

from __future__ import annotations

import codecs
import logging
import re

from slackbot import messages
from slackbot.documents import DocumentBlock, cut_at_line, size_text, text_document
from slackbot.errors import FileRefused

logger = logging.getLogger(__name__)

# What Slack (or the uploader's browser) calls a text-like file. Any `text/*` type is text too,
# and so is any `+json` or `+xml` type.
MIMETYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/javascript",
        "application/x-javascript",
        "application/typescript",
        "application/x-sh",
        "application/x-shellscript",
        "application/sql",
        "application/x-sql",
        "application/x-python",
        "application/x-python-code",
        "application/x-httpd-php",
        "application/x-perl",
        "application/x-ruby",
        "application/x-tex",
        "application/x-latex",
        "application/csv",
        "application/x-csv",
        "application/graphql",
        "application/x-subrip",
    }
)

# Slack's `filetype` of text-like files (snippets are named after their language).
FILETYPES = frozenset(
    {
        "text",
        "markdown",
        "csv",
        "tsv",
        "json",
        "yaml",
        "xml",
        "html",
        "css",
        "sass",
        "diff",
        "applescript",
        "c",
        "cpp",
        "csharp",
        "clojure",
        "coffeescript",
        "cfm",
        "d",
        "dart",
        "dockerfile",
        "erlang",
        "fortran",
        "fsharp",
        "go",
        "groovy",
        "handlebars",
        "haskell",
        "haxe",
        "java",
        "javascript",
        "kotlin",
        "latex",
        "lisp",
        "lua",
        "matlab",
        "mumps",
        "objc",
        "ocaml",
        "pascal",
        "perl",
        "php",
        "pig",
        "powershell",
        "puppet",
        "python",
        "r",
        "ruby",
        "rust",
        "scala",
        "scheme",
        "shell",
        "smalltalk",
        "sql",
        "swift",
        "typescript",
        "vb",
        "vbscript",
        "velocity",
        "verilog",
    }
)

# File-name extensions of text-like files, for files Slack says little about.
EXTENSIONS = frozenset(
    {
        "txt",
        "text",
        "md",
        "markdown",
        "rst",
        "csv",
        "tsv",
        "json",
        "jsonl",
        "ndjson",
        "yaml",
        "yml",
        "toml",
        "ini",
        "cfg",
        "conf",
        "properties",
        "env",
        "xml",
        "html",
        "htm",
        "css",
        "scss",
        "sass",
        "less",
        "log",
        "out",
        "diff",
        "patch",
        "py",
        "pyi",
        "js",
        "mjs",
        "cjs",
        "jsx",
        "ts",
        "tsx",
        "java",
        "kt",
        "kts",
        "scala",
        "groovy",
        "gradle",
        "c",
        "h",
        "cc",
        "cpp",
        "cxx",
        "hpp",
        "hh",
        "cs",
        "go",
        "rs",
        "rb",
        "php",
        "pl",
        "pm",
        "lua",
        "r",
        "m",
        "swift",
        "dart",
        "hs",
        "ex",
        "exs",
        "erl",
        "clj",
        "el",
        "lisp",
        "sh",
        "bash",
        "zsh",
        "fish",
        "ps1",
        "bat",
        "cmd",
        "sql",
        "graphql",
        "proto",
        "tf",
        "hcl",
        "tex",
        "bib",
        "srt",
        "vtt",
        "vue",
        "svelte",
        "dockerfile",
        "makefile",
        "mk",
        "cmake",
    }
)

_BOMS = (
    # UTF-32 first: its little-endian mark starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Control characters that have no place in text (tab, newlines, form feed and escape do).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
# More than this share of them, and it is binary that happened to decode.
_MAX_CONTROL_SHARE = 0.001
# How much of a file is looked at to decide whether it is text, when sniffing.
_SNIFF_BYTES = 64 * 1024


def is_text_mimetype(mimetype: str) -> bool:
    return (
        mimetype.startswith("text/")
        or mimetype in MIMETYPES
        or mimetype.endswith(("+json", "+xml"))
    )


def _refuse(name: str, problem: messages.FileProblem, **details: object) -> FileRefused:
    return FileRefused(name, messages.file_note(problem, name, **details))


class Unreadable(ValueError):
    """Bytes that are not text in any encoding this module believes."""


def decode(data: bytes, *, final: bool = True) -> str:
    """The text of `data`, or Unreadable. With `final=False`, `data` is the start of a longer
    file: a character cut off at its end is dropped instead of refused.

    Blocking (pure Python on up to the cap): call through `asyncio.to_thread`.
    """
    encoding, start = _bom(data)
    if encoding is None and b"\x00" in data:
        raise Unreadable("NUL bytes without a byte-order mark")
    body = data[start:]
    if encoding is not None:
        text = _decode_as(body, encoding, final)
    else:
        try:
            text = _decode_as(body, "utf-8", final)
        except UnicodeDecodeError:
            text = _decode_as(body, _detected_encoding(body), final)
    text = text.replace("\r\n", "\n")
    if _control_share(text) > _MAX_CONTROL_SHARE:
        raise Unreadable("control characters")
    return text


def looks_like_text(data: bytes) -> bool:
    """Whether a file Slack could not classify is text, judged from its start."""
    head = data[:_SNIFF_BYTES]
    if not head.strip():
        return False
    try:
        decode(head, final=len(data) <= _SNIFF_BYTES)
    except (Unreadable, UnicodeDecodeError, LookupError):
        return False
    return True


def read(
    data: bytes, name: str, *, max_bytes: int, complete: bool = True, size: int | None = None
) -> tuple[DocumentBlock, str | None]:
    """A text document of the file's first `max_bytes` (cut at a line), and the note saying so
    when the file was longer; FileRefused for a file that is empty or not text. With
    `complete=False`, `data` is only the start of the file, whose whole `size` may be unknown.

    Blocking: call through `asyncio.to_thread`.
    """
    size = len(data) if complete else size
    cut = not complete or len(data) > max_bytes
    try:
        text = decode(data[:max_bytes], final=not cut)
    except (Unreadable, UnicodeDecodeError, LookupError) as exc:
        logger.info("%s is not text: %s", name, exc)
        raise _refuse(name, "not_text") from exc
    if cut:
        newline = text.rfind("\n")
        if newline >= len(text) // 2:
            text = text[: newline + 1]
    # A UTF-16 file's text can grow in UTF-8: the cap holds for what Claude reads too.
    text, recut = cut_at_line(text, max_bytes)
    cut = cut or recut
    if not text.strip():
        raise _refuse(name, "empty")
    if not cut:
        return text_document(text, name, len(data)), None
    described = size_text(size) if size is not None else f"more than {size_text(len(data))}"
    note = messages.file_note("text_cut", name, size=described, kept=size_text(max_bytes))
    return text_document(text, name, size or len(data)), note


def _bom(data: bytes) -> tuple[str | None, int]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    return None, 0


def _decode_as(data: bytes, encoding: str, final: bool) -> str:
    return codecs.getincrementaldecoder(encoding)(errors="strict").decode(data, final=final)


def _detected_encoding(data: bytes) -> str:
    """The most plausible legacy encoding; Unreadable if none explains the bytes.

    charset-normalizer proposes candidates among the encodings people's files are in, best
    first, but it ranks Windows-1252 (what Excel on Windows writes for Western Europe) below
    the Baltic and Central European code pages that decode the same bytes differently: French
    comes back as `trčs ŕ côté` for `très à côté`. So Windows-1252 is preferred to the Baltic
    page whenever it is a candidate (Baltic files are rare), and to the Central European one
    when that reading shows what only a misread Western text has: `ŕ` and `ĺ` (Slovak letters,
    and the bytes of `à` and `å`), or `Ł` before a number (the byte of `£`). Czech and Polish
    keep their page: `č`, `ř`, `ł`, `ż` are their letters.
    """
    import charset_normalizer  # only for files that are not UTF-8: it costs a few MB

    candidates = {
        str(match.encoding): str(match)
        for match in charset_normalizer.from_bytes(data, cp_isolation=list(_LEGACY_ENCODINGS))
    }
    if not candidates:
        raise Unreadable("no encoding explains these bytes")
    best = next(iter(candidates))
    if "cp1252" in candidates and (
        best == "cp1257" or (best == "cp1250" and _WESTERN_MISREAD.search(candidates[best]))
    ):
        return "cp1252"
    return best


# The legacy encodings considered: the Windows code pages, and the East Asian ones.
_LEGACY_ENCODINGS = (
    "cp1252",
    "cp1250",
    "cp1251",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "cp874",
    "koi8_r",
    "cp932",
    "euc_jp",
    "gb18030",
    "big5",
    "cp949",
)
# What Windows-1252 text read as Windows-1250 shows (see `_detected_encoding`).
_WESTERN_MISREAD = re.compile(r"[ŕĺŔĹ]|Ł(?=\s?\d)")


def _control_share(text: str) -> float:
    if not text:
        return 0.0
    return len(_CONTROL.findall(text)) / len(text)
