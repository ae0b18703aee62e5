"""A fake Anthropic Messages API, spoken to over real HTTP on 127.0.0.1.

Tests hand ``AsyncAnthropic(base_url=claude.base_url)`` to the code under test, so the SDK's own
SSE parser, error mapping and retry logic run against the event sequence the real API sends
(``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``…,
``content_block_stop``, ``message_delta``, ``message_stop``). What it answers is scripted per
request with ``Script``: its content blocks (text with citations, thinking, server tool calls
and their results), pacing (time to first token, tokens per second), HTTP errors, a stream cut
off mid-way, or an ``error`` event after HTTP 200.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import itertools
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.server import HOST, LocalServer

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}
IMAGE_TYPES = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
MAX_IMAGE_BASE64 = 5 * 1024 * 1024
FILLER = (
    "Here is a considered answer, written at a steady pace so that streaming, edit batching and "
    "rate limits have something realistic to chew on. "
)
MAX_CACHE_BREAKPOINTS = 4
MAX_REQUEST_BYTES = 32 * 1024 * 1024
TOOL_VERSIONS = {
    "web_search": ("web_search_20250305", "web_search_20260209", "web_search_20260318"),
    "web_fetch": (
        "web_fetch_20250910",
        "web_fetch_20260209",
        "web_fetch_20260309",
        "web_fetch_20260318",
    ),
    "code_execution": (
        "code_execution_20250522",
        "code_execution_20250825",
        "code_execution_20260120",
        "code_execution_20260521",
    ),
}
THINKING_TYPES = ("adaptive", "between_tools", "disabled", "enabled")
EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")
SERVER_TOOL_NAMES = ("web_search", "web_fetch", "code_execution")
CURRENT_MODEL = "claude-sonnet-5-5"


# -- what a reply holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class WebCitation:
    """Text citing a web search result, sent as a ``web_search_result_location``. ``title``
    defaults to that of the result with this ``url`` (from this reply or the request's
    history); citing a URL no search returned is a script error."""

    url: str
    cited_text: str
    title: str | None = None


@dataclass(frozen=True)
class DocCitation:
    """Text citing the request's ``document_index``-th ``document`` block (counted through
    the messages in order), which must have ``citations: {"enabled": true}``.

    A plain-text document gives a ``char_location`` (``start``/``end`` default to where
    ``cited_text`` is in it), a PDF a ``page_location`` (pages, default 1 to 2), a content
    document a ``content_block_location`` (blocks, default 0 to 1). ``document_title`` is the
    document's ``title``.
    """

    cited_text: str
    document_index: int = 0
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Text:
    """A text block. Its citations go out as ``citations_delta`` before its text."""

    text: str
    citations: Sequence[WebCitation | DocCitation] = ()


@dataclass(frozen=True)
class Thinking:
    """A thinking block: its text streams only if the request asks for
    ``thinking.display: "summarized"`` (or ``FakeClaude.thinking_display`` says so), but it
    costs output tokens and time either way; the signature always streams. ``signature=None``
    makes up a unique one."""

    thinking: str = ""
    signature: str | None = None


@dataclass(frozen=True)
class RedactedThinking:
    """A ``redacted_thinking`` block, sent whole."""

    data: str = (
        "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5"
    )


@dataclass(frozen=True)
class ServerToolUse:
    """The model calling a server tool the request offers (``web_search``, ``web_fetch``,
    ``code_execution``); ``input`` streams as ``input_json_delta`` pieces. ``id=None`` makes up
    a fresh ``srvtoolu_`` id for each reply."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class WebSearchResult:
    """What the oldest unanswered ``web_search`` call found, whole in the block's start event.

    Each result is a mapping with ``url``, ``title`` and optionally ``page_age`` and
    ``encrypted_content``. ``error_code`` sends a ``web_search_tool_result_error`` instead; a
    call past the tool's ``max_uses`` gets ``max_uses_exceeded`` whatever the script says.
    ``seconds`` is how long the search takes (the stream is quiet meanwhile).
    """

    results: Sequence[Mapping[str, Any]] = ()
    error_code: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class WebFetchResult:
    """What the oldest unanswered ``web_fetch`` call fetched: a plain-text document, with
    citations enabled when the request's web_fetch tool enables them. ``error_code`` and
    ``seconds`` as for ``WebSearchResult``."""

    url: str
    text: str = ""
    title: str | None = None
    retrieved_at: str = "2026-11-20T12:00:00Z"
    error_code: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class MadeFile:
    """A file the sandbox wrote, kept by the fake's Files API (``FakeClaude.files``)."""

    filename: str
    data: bytes
    mime_type: str = "application/octet-stream"
    #: False: the result names it but the Files API has no such file (expired, deleted): 404.
    kept: bool = True


@dataclass(frozen=True)
class CodeExecutionResult:
    """What the oldest unanswered code-execution call printed and wrote. ``files`` become
    Files API files (their ids in the result's ``content``, as the API gives them).
    ``bash=True`` answers a ``bash_code_execution`` call with a
    ``bash_code_execution_tool_result`` (the bash tool's shape); otherwise a
    ``code_execution`` call gets a ``code_execution_tool_result``."""

    stdout: str = ""
    stderr: str = ""
    return_code: int = 0
    files: Sequence[MadeFile] = ()
    bash: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class RawBlock:
    """Any other content block (a ``code_execution_tool_result``…), sent whole as scripted."""

    block: Mapping[str, Any]


Block = (
    Text
    | Thinking
    | RedactedThinking
    | ServerToolUse
    | WebSearchResult
    | WebFetchResult
    | CodeExecutionResult
    | RawBlock
)

#: The code-execution tool's sub-tools: calls under these names need a ``code_execution`` tool.
CODE_EXECUTION_CALLS = ("bash_code_execution", "text_editor_code_execution")


@dataclass
class Script:
    """What the fake answers to one /v1/messages request.

    ``blocks`` is the reply's content, streamed in order; without it the reply is one
    ``Text(text)``. ``ttft`` passes before the first delta, then every token (a text, thinking
    or tool-input piece of ``chars_per_token`` characters) follows at ``tokens_per_second``
    across all the blocks. ``stop_reason="pause_turn"`` lets the next request continue the
    reply (see ``FakeClaude``).

    ``status`` turns the answer into an HTTP error (``retry_after`` adds the header on any
    status); ``break_after_chars`` sends that much text then drops the connection without
    ``message_stop``; ``error_event_after_chars`` sends an SSE ``error`` event after that much
    text, the status already being 200; ``end_after_chars`` sends that much text and then ends
    the response cleanly, without ``message_stop`` (a proxy or server closing early). Those
    three count the characters of text blocks only.
    """

    text: str = "Hello from fake Claude."
    ttft: float = 0.0
    tokens_per_second: float | None = None
    chars_per_token: int = 4
    stop_reason: str = "end_turn"
    status: int | None = None
    retry_after: float | None = None
    error_message: str | None = None
    break_after_chars: int | None = None
    error_event_after_chars: int | None = None
    end_after_chars: int | None = None
    input_tokens: int | None = None
    blocks: Sequence[Block] | None = None

    def content(self) -> Sequence[Block]:
        return [Text(self.text)] if self.blocks is None else self.blocks


def reply_text(chars: int) -> str:
    """Deterministic prose of exactly ``chars`` characters."""
    return (FILLER * (chars // len(FILLER) + 1))[:chars]


def _last_user_text(body: dict[str, Any]) -> str:
    """The text of the request's last user message (its text blocks joined)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(
            b.get("text", "") for b in content or [] if isinstance(b, dict) and "text" in b
        )
    return ""


@dataclass
class Usage:
    """Input-side usage the fake computed for a request (see ``FakeClaude`` on caching)."""

    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: dict[str, int] = field(
        default_factory=lambda: {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    )


# -- composing a reply ----------------------------------------------------------------------

TOKEN_DELTAS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
}


class ScriptError(Exception):
    """A script asks for what the API would never send for this request (a tool it does not
    offer, a citation of a document it lacks); the request gets a 400 saying so."""


def _is_token(delta: dict[str, Any]) -> bool:
    key = TOKEN_DELTAS.get(delta["type"])
    return key is not None and bool(delta[key])


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _opaque(*parts: str) -> str:
    """A stand-in for the API's encrypted fields: stable, base64, meaningless."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return "Eo" + base64.b64encode(digest).decode()


def _tokens_of(value: Any) -> int:
    return max(1, math.ceil(len(json.dumps(value, separators=(",", ":"))) / 4))


@dataclass
class _Part:
    """One content block as it streams: the block its start event carries, then its deltas.
    ``hidden_tokens`` are output it costs without showing (thinking not displayed);
    ``seconds`` is how long the server tool behind it runs before it starts."""

    start: dict[str, Any]
    deltas: list[dict[str, Any]] = field(default_factory=list)
    hidden_tokens: int = 0
    seconds: float = 0.0

    @functools.cached_property
    def tokens(self) -> int:
        return self.hidden_tokens + sum(1 for d in self.deltas if _is_token(d))

    def whole(self) -> dict[str, Any]:
        """The block with its deltas applied: the non-streaming answer's content block."""
        block = json.loads(json.dumps(self.start))
        pieces: dict[str, list[str]] = {"text": [], "thinking": [], "partial_json": []}
        for delta in self.deltas:
            kind = delta["type"]
            if kind in TOKEN_DELTAS:
                pieces[TOKEN_DELTAS[kind]].append(delta[TOKEN_DELTAS[kind]])
            elif kind == "signature_delta":
                block["signature"] = delta["signature"]
            elif kind == "citations_delta":
                block["citations"].append(delta["citation"])
        for key in ("text", "thinking"):
            if pieces[key]:
                block[key] += "".join(pieces[key])
        if partial_json := "".join(pieces["partial_json"]):
            try:
                block["input"] = json.loads(partial_json)
            except ValueError:  # cut off by max_tokens
                block["input"] = {}
        return block


@dataclass
class _Reply:
    """A script made concrete for one request: the parts to stream and how it stops."""

    parts: list[_Part]
    stop_reason: str
    offers_server_tools: bool

    @property
    def output_tokens(self) -> int:
        return max(1, sum(p.tokens for p in self.parts))

    @property
    def thinking_tokens(self) -> int:
        return sum(p.tokens for p in self.parts if p.start["type"] == "thinking")

    @property
    def result_tokens(self) -> int:
        """Input the server tools' results add: why message_delta's input_tokens grows."""
        return sum(_tokens_of(p.start) for p in self.parts if p.start["type"].endswith("_result"))

    def server_tool_use(self) -> dict[str, int] | None:
        """Billed server-tool calls (a call that failed is not billed); None when the
        request offered no server tool and the usage leaves the key out."""
        found = {"web_search_requests": 0, "web_fetch_requests": 0}
        for part in self.parts:
            content = part.start.get("content")
            if part.start["type"] == "web_search_tool_result" and isinstance(content, list):
                found["web_search_requests"] += 1
            elif part.start["type"] == "web_fetch_tool_result" and isinstance(content, dict):
                found["web_fetch_requests"] += content.get("type") == "web_fetch_result"
        return found if self.offers_server_tools or any(found.values()) else None

    def truncate(self, max_tokens: int) -> None:
        """Keep the first ``max_tokens`` tokens, as a reply that ran out of them."""
        kept: list[_Part] = []
        budget = max_tokens
        for part in self.parts:
            if budget <= 0:
                break
            hidden = min(budget, part.hidden_tokens)
            budget -= hidden
            deltas = []
            for delta in part.deltas:
                if _is_token(delta):
                    if budget <= 0:
                        break
                    budget -= 1
                deltas.append(delta)
            kept.append(_Part(part.start, deltas, hidden, part.seconds))
        self.parts, self.stop_reason = kept, "max_tokens"


class _Pacer:
    """Token ``i`` of a reply is due ``i / tokens_per_second`` after the first one; a server
    tool's run time pushes every later token back by as much."""

    def __init__(self, tokens_per_second: float | None) -> None:
        self.tokens_per_second = tokens_per_second
        self.origin: float | None = None
        self.count = 0

    def begin(self) -> None:
        self.origin = time.monotonic()

    def skip(self, tokens: int) -> None:
        self.count += tokens

    async def pause(self, seconds: float) -> None:
        if seconds:
            await asyncio.sleep(seconds)
            if self.origin is not None:
                self.origin += seconds

    async def token(self) -> None:
        if self.tokens_per_second and self.origin is not None:
            due = self.origin + self.count / self.tokens_per_second
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        self.count += 1


def _server_tool_name(tool: Any) -> str | None:
    """``web_search`` for a ``web_search_2026…`` tool definition, and so on; None otherwise."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    for name in SERVER_TOOL_NAMES:
        if isinstance(kind, str) and kind.startswith(name + "_"):
            return name
    return None


def _documents(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's document blocks in the order ``document_index`` counts them."""
    found = []
    for message in body.get("messages") or []:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "document":
                found.append(block)
    return found


class _Composer:
    """Makes a script's blocks concrete for one request, which supplies what they refer to:
    the server tools it offers, the documents it attaches, the search results it carries."""

    def __init__(
        self,
        body: dict[str, Any],
        chars_per_token: int,
        *,
        show_thinking: bool,
        signatures: dict[str, str],
        files: dict[str, tuple[dict[str, Any], bytes]] | None = None,
    ) -> None:
        self.size = max(1, chars_per_token)
        self.files = {} if files is None else files  # the Files API: id -> (metadata, bytes)
        self.show_thinking = show_thinking
        self.signatures = signatures  # the fake's record of what each signature signs
        self.tools = {
            name: tool for tool in body.get("tools") or [] if (name := _server_tool_name(tool))
        }
        self.documents = _documents(body)
        self.titles: dict[str, str | None] = {}  # search result URL -> its title
        for message in body.get("messages") or []:
            content = message.get("content")
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "web_search_tool_result":
                    self._learn(block.get("content"))
        self.calls: dict[str, int] = {}  # tool -> calls so far
        self.waiting: dict[str, list[tuple[str, bool]]] = {}  # tool -> (call id, past max_uses)

    def compose(self, blocks: Sequence[Block], stop_reason: str) -> _Reply:
        parts = [self._part(block) for block in blocks]
        return _Reply(parts, stop_reason, offers_server_tools=bool(self.tools))

    def _part(self, block: Block) -> _Part:
        match block:
            case Text():
                return self._text(block)
            case Thinking():
                return self._thinking(block)
            case RedactedThinking(data):
                return _Part({"type": "redacted_thinking", "data": data})
            case ServerToolUse():
                return self._call(block)
            case WebSearchResult():
                return self._searched(block)
            case WebFetchResult():
                return self._fetched(block)
            case CodeExecutionResult():
                return self._executed(block)
            case RawBlock(raw):
                return _Part(json.loads(json.dumps(raw)))
        raise ScriptError(f"not a content block: {block!r}")

    def _text(self, block: Text) -> _Part:
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = []
        if block.citations:  # the API starts a cited block with an empty list
            start["citations"] = []
            deltas = [
                {"type": "citations_delta", "citation": self._cite(c)} for c in block.citations
            ]
        deltas += [{"type": "text_delta", "text": p} for p in _pieces(block.text, self.size)]
        return _Part(start, deltas)

    def _thinking(self, block: Thinking) -> _Part:
        signature = block.signature or _opaque("signature", uuid.uuid4().hex)
        shown = block.thinking if self.show_thinking else ""
        self.signatures[signature] = shown
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(shown, self.size)]
        deltas.append({"type": "signature_delta", "signature": signature})
        hidden = 0 if shown else len(_pieces(block.thinking, self.size))
        return _Part({"type": "thinking", "thinking": "", "signature": ""}, deltas, hidden)

    def _call(self, block: ServerToolUse) -> _Part:
        name = block.name
        offered = "code_execution" if name in CODE_EXECUTION_CALLS else name
        if offered not in self.tools:
            raise ScriptError(f"calls {name} but the request offers no {name} tool")
        call_id = block.id or f"srvtoolu_fake{uuid.uuid4().hex[:20]}"
        self.calls[name] = self.calls.get(name, 0) + 1
        max_uses = self.tools[offered].get("max_uses")
        self.waiting.setdefault(name, []).append(
            (call_id, max_uses is not None and self.calls[name] > max_uses)
        )
        start = {"type": "server_tool_use", "id": call_id, "name": name, "input": {}}
        pieces = ["", *_pieces(json.dumps(dict(block.input), ensure_ascii=False), self.size)]
        return _Part(start, [{"type": "input_json_delta", "partial_json": p} for p in pieces])

    def _result(self, name: str, error_code: str | None) -> tuple[str, dict[str, Any] | None]:
        """The id of the oldest unanswered ``name`` call, and the error its result is."""
        waiting = self.waiting.get(name)
        if not waiting:
            raise ScriptError(f"a {name} result comes before any {name} call it answers")
        call_id, past_max_uses = waiting.pop(0)
        if past_max_uses:
            error_code = "max_uses_exceeded"
        error = {"type": f"{name}_tool_result_error", "error_code": error_code}
        return call_id, error if error_code else None

    def _searched(self, block: WebSearchResult) -> _Part:
        call_id, error = self._result("web_search", block.error_code)
        content: Any = error
        if error is None:
            content = [
                {
                    "type": "web_search_result",
                    "url": r["url"],
                    "title": r["title"],
                    "encrypted_content": r.get("encrypted_content") or _opaque(r["url"]),
                    "page_age": r.get("page_age"),
                }
                for r in block.results
            ]
            self._learn(content)
        start = {"type": "web_search_tool_result", "tool_use_id": call_id, "content": content}
        return _Part(start, seconds=block.seconds)

    def _fetched(self, block: WebFetchResult) -> _Part:
        call_id, content = self._result("web_fetch", block.error_code)
        if content is None:
            source = {"type": "text", "media_type": "text/plain", "data": block.text}
            document: dict[str, Any] = {"type": "document", "source": source}
            if block.title is not None:
                document["title"] = block.title
            if (self.tools["web_fetch"].get("citations") or {}).get("enabled"):
                document["citations"] = {"enabled": True}
            content = {
                "type": "web_fetch_result",
                "url": block.url,
                "retrieved_at": block.retrieved_at,
                "content": document,
            }
        start = {"type": "web_fetch_tool_result", "tool_use_id": call_id, "content": content}
        return _Part(start, seconds=block.seconds)

    def _executed(self, block: CodeExecutionResult) -> _Part:
        name = "bash_code_execution" if block.bash else "code_execution"
        call_id, _ = self._result(name, None)
        outputs = []
        for made in block.files:
            file_id = f"file_fake{uuid.uuid4().hex[:20]}"
            meta = {
                "id": file_id,
                "type": "file",
                "filename": made.filename,
                "mime_type": made.mime_type,
                "size_bytes": len(made.data),
                "created_at": "2026-12-01T00:00:00Z",
                "downloadable": True,
            }
            if made.kept:
                self.files[file_id] = (meta, made.data)
            outputs.append({"type": f"{name}_output", "file_id": file_id})
        content = {
            "type": f"{name}_result",
            "stdout": block.stdout,
            "stderr": block.stderr,
            "return_code": block.return_code,
            "content": outputs,
        }
        start = {"type": f"{name}_tool_result", "tool_use_id": call_id, "content": content}
        return _Part(start, seconds=block.seconds)

    def _learn(self, results: Any) -> None:
        for result in results if isinstance(results, list) else []:
            if isinstance(result, dict) and "url" in result:
                self.titles[result["url"]] = result.get("title")

    def _cite(self, citation: WebCitation | DocCitation) -> dict[str, Any]:
        if isinstance(citation, DocCitation):
            return self._cite_document(citation)
        if citation.url not in self.titles:
            raise ScriptError(f"cites {citation.url}, which no search result returned")
        title = self.titles[citation.url] if citation.title is None else citation.title
        return {
            "type": "web_search_result_location",
            "url": citation.url,
            "title": title,
            "cited_text": citation.cited_text,
            "encrypted_index": _opaque(citation.url, citation.cited_text),
        }

    def _cite_document(self, citation: DocCitation) -> dict[str, Any]:
        index = citation.document_index
        if not 0 <= index < len(self.documents):
            raise ScriptError(f"cites document {index}; the request has {len(self.documents)}")
        document = self.documents[index]
        if not (document.get("citations") or {}).get("enabled"):
            raise ScriptError(f"cites document {index}, which does not enable citations")
        found = {
            "cited_text": citation.cited_text,
            "document_index": index,
            "document_title": document.get("title"),
        }
        source = document.get("source") or {}
        if source.get("type") == "text":
            kind, unit, length = "char_location", "char_index", len(citation.cited_text)
            default = max(0, str(source.get("data")).find(citation.cited_text))
        elif source.get("type") == "content":
            kind, unit, default, length = "content_block_location", "block_index", 0, 1
        else:  # a PDF, however attached
            kind, unit, default, length = "page_location", "page_number", 1, 1
        first = default if citation.start is None else citation.start
        last = first + length if citation.end is None else citation.end
        return {"type": kind, **found, f"start_{unit}": first, f"end_{unit}": last}


def model_info(
    model_id: str,
    display_name: str,
    *,
    created_at: str,
    line: str | None,
    max_input_tokens: int = 200_000,
    max_tokens: int = 64_000,
    lifecycle: str = "active",
    image_input: bool = True,
    pdf_input: bool = True,
    thinking_types: Iterable[str] = ("adaptive", "disabled", "enabled"),
    effort_levels: Iterable[str] = ("low", "medium", "high", "max"),
    server_tools: Iterable[str] = SERVER_TOOL_NAMES,
) -> dict[str, Any]:
    """A ModelInfo JSON object with every capability key present, as the Models API sends.

    ``thinking_types`` (of ``THINKING_TYPES``), ``effort_levels`` (of ``EFFORT_LEVELS``) and
    ``server_tools`` (of ``SERVER_TOOL_NAMES``) are what the model accepts; the fake's request
    checks read them back, so a model described without ``"adaptive"`` or without
    ``"web_fetch"`` answers such a request with a 400.
    """
    thinking, effort, tools = set(thinking_types), set(effort_levels), set(server_tools)

    def yes(ok: bool = True) -> dict[str, bool]:
        return {"supported": ok}

    return {
        "id": model_id,
        "type": "model",
        "display_name": display_name,
        "created_at": created_at,
        "deprecated_at": None if lifecycle == "active" else created_at,
        "retires_at": None,
        "lifecycle": lifecycle,
        "line": line,
        "max_input_tokens": max_input_tokens,
        "max_tokens": max_tokens,
        "capabilities": {
            "batch": yes(),
            "citations": yes(),
            "code_execution": yes(),
            "context_management": {
                "supported": True,
                "clear_thinking_20251015": yes(),
                "clear_tool_uses_20250919": yes(),
                "compact_20260112": yes(),
            },
            "effort": {"supported": bool(effort)}
            | {level: yes(level in effort) for level in EFFORT_LEVELS},
            "image_input": yes(image_input),
            "pdf_input": yes(pdf_input),
            "server_tools": {"supported": bool(tools)}
            | {name: yes(name in tools) for name in SERVER_TOOL_NAMES},
            "structured_outputs": yes(),
            "thinking": {
                "supported": bool(thinking & {"adaptive", "enabled"}),
                "types": {kind: yes(kind in thinking) for kind in THINKING_TYPES},
            },
        },
    }


def default_models() -> dict[str, dict[str, Any]]:
    """A few models; the limits are illustrative, not a statement about the real ones."""
    models = [
        model_info(
            "claude-opus-4-6",
            "Claude Opus 4.6",
            created_at="2026-02-05T00:00:00Z",
            line="opus",
            max_input_tokens=1_000_000,
            max_tokens=128_000,
        ),
        model_info(
            "claude-sonnet-4-6",
            "Claude Sonnet 4.6",
            created_at="2026-02-17T00:00:00Z",
            line="sonnet",
            max_input_tokens=1_000_000,
        ),
        model_info(
            "claude-haiku-4-5",
            "Claude Haiku 4.5",
            created_at="2025-10-15T00:00:00Z",
            line="haiku",
        ),
        model_info(
            "claude-3-haiku-20240307",
            "Claude Haiku 3",
            created_at="2024-03-07T00:00:00Z",
            line="haiku",
            max_tokens=4_096,
            lifecycle="retired",
            pdf_input=False,
        ),
    ]
    return {m["id"]: m for m in models}


def sonnet_5_5() -> dict[str, Any]:
    """``CURRENT_MODEL`` as the Models API describes it: adaptive thinking only, every effort
    level, all three server tools, and the newest ``created_at`` of the sonnet line."""
    return model_info(
        CURRENT_MODEL,
        "Claude Sonnet 5.5",
        created_at="2026-11-03T00:00:00Z",
        line="sonnet",
        max_input_tokens=1_000_000,
        max_tokens=128_000,
        thinking_types=("adaptive", "disabled"),
        effort_levels=EFFORT_LEVELS,
    )


def current_models() -> dict[str, dict[str, Any]]:
    """``default_models()`` plus ``CURRENT_MODEL``: ``FakeClaude(models=current_models())``.

    Not the default set: with a newer sonnet listed, the bot's fallback for a retired
    built-in model picks it instead of claude-sonnet-4-6, which tests assert today.
    """
    return {CURRENT_MODEL: sonnet_5_5(), **default_models()}


class ApiError(Exception):
    """Raised while handling a request to answer with Anthropic's error JSON."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class FakeClaude(LocalServer):
    """The Messages API (streaming and not), token counting and the Models API.

    Replies come from ``queue`` (FIFO, consumed first), then ``by_marker``, then
    ``responder(body)`` if set (it may return None), then ``default``. Every /v1/messages body is
    kept in ``requests``, its headers (lower-cased names) in ``request_headers``, every reply
    sent whole in ``responses``; ``in_flight``/``peak_in_flight`` count concurrency.

    A request may end with an assistant turn only if that turn is the content of replies that
    stopped with ``pause_turn``, sent back verbatim (``continuations`` keeps those requests);
    any other is refused as prefill unless ``allow_prefill``. Requests are also checked as
    the current models check them (see ``_validate``); a script the API could not play for
    the request (a tool it does not offer…) is a 400 noted in ``script_errors``.

    Usage: ``message_start`` carries the input counts, ``message_delta`` the final ones: input
    grows by the tokens of the server tools' results in the reply, output counts every scripted
    token (thinking included, shown or not), and ``server_tool_use`` counts the searches and
    fetches that returned a result (the key is there when the request offers a server tool).

    Token estimates: each tool, system block and message content block counts
    ceil(len(its compact JSON) / 4) tokens (images ``image_tokens``, documents
    ``document_tokens``). count_tokens returns the same total a request reports as
    input + cache_creation + cache_read.

    Prompt caching, approximated: the prompt is the sequence tools → system → message blocks;
    a block with ``cache_control`` (or the last block, for the top-level ``cache_control``
    parameter) is a breakpoint, and the prefix up to it is remembered for its TTL (5 min, or
    1 h with ``ttl: "1h"``), keyed by model and exact JSON. A later request reads the longest
    remembered prefix of its own blocks (``cache_read_input_tokens``), writes the rest up to
    its last breakpoint (``cache_creation_input_tokens``) and pays ``input_tokens`` for what
    follows. Unlike the API there is no 20-block lookback limit, and prefixes shorter than
    ``min_cacheable_tokens`` (default 0; the API's is 1024-4096) are not cached.
    """

    def __init__(
        self, *, api_key: str | None = None, models: dict[str, dict[str, Any]] | None = None
    ) -> None:
        super().__init__()
        self.api_key = api_key  # when set, any other key gets 401
        self.default = Script()
        self.queue: list[Script] = []
        self.responder: Callable[[dict[str, Any]], Script | None] | None = None
        self.models: dict[str, dict[str, Any]] = default_models() if models is None else models
        self.allow_prefill = False  # current models reject a last assistant turn
        #: Model ids that still take a non-default temperature/top_p/top_k and a forced
        #: tool_choice, as the 4.x line did; every other model refuses them, as the 5.x does.
        self.legacy_rule_models: set[str] = set()
        self.min_cacheable_tokens = 0
        self.image_tokens = 1600
        self.document_tokens = 3000

        #: Scripts chosen by a marker string in the last user message (after ``queue``).
        self.by_marker: dict[str, Script] = {}
        self.requests: list[dict[str, Any]] = []
        #: One entry per streamed reply: monotonic ``received_at``, ``first_token_at``,
        #: ``end_at`` (message_stop written) and the tail of the last user message.
        self.timeline: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.count_requests: list[dict[str, Any]] = []
        self.usages: list[Usage] = []
        #: Every reply sent whole (message_stop written, or the JSON answer), as one Message
        #: object with its final content, stop_reason and usage.
        self.responses: list[dict[str, Any]] = []
        #: Request bodies accepted as the continuation of a reply paused with ``pause_turn``.
        self.continuations: list[dict[str, Any]] = []
        #: Why a script could not be played for a request (that request got a 400).
        self.script_errors: list[str] = []
        #: How a thinking block's text comes back when the request's ``thinking`` does not set
        #: ``display``: "omitted" (empty text, signature only) as on the 5.x line, or
        #: "summarized".
        self.thinking_display = "omitted"
        self.in_flight = 0
        self.peak_in_flight = 0

        #: The Files API: files code execution made, id -> (metadata, bytes); a test may drop
        #: or replace one to make its download fail.
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        #: Every Files API request: (path, its ``anthropic-beta`` header).
        self.file_requests: list[tuple[str, str]] = []

        self._cache: dict[str, float] = {}  # prefix hash -> monotonic expiry
        self._signatures: dict[str, str] = {}  # thinking signature issued -> the text it signs
        self._paused: list[list[str]] = []  # each paused reply's content, _canonical blocks
        self._ids = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        app.router.add_get("/v1/models", self._handle_list_models)
        app.router.add_get("/v1/models/{model_id}", self._handle_get_model)
        app.router.add_get("/v1/files/{file_id}", self._handle_file_metadata)
        app.router.add_get("/v1/files/{file_id}/content", self._handle_file_content)
        app.router.add_get("/_control/stats", self._handle_stats)
        app.router.add_post("/_control/script", self._handle_script)
        return app

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- test controls --------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` message requests with HTTP ``status`` (ahead of ``queue``)."""
        self.queue[0:0] = [Script(status=status, retry_after=retry_after) for _ in range(times)]

    def clear_cache(self) -> None:
        self._cache.clear()

    def estimate_tokens(self, body: dict[str, Any]) -> int:
        """The input-token total a request with this body is charged (see class docstring)."""
        return sum(tokens for _, tokens, _ in self._segments(body))

    def _next_script(self, body: dict[str, Any]) -> Script:
        if self.queue:
            return self.queue.pop(0)
        if self.by_marker:
            last = _last_user_text(body)
            for marker, script in self.by_marker.items():
                if marker in last:
                    return script
        if self.responder is not None and (chosen := self.responder(body)) is not None:
            return chosen
        return self.default

    # -- handlers -------------------------------------------------------------------------

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        request_id = f"req_fake{next(self._ids):012d}"
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            raw = await request.read()
            body = json.loads(raw)
            self.requests.append(body)
            self.request_headers.append({k.lower(): v for k, v in request.headers.items()})
            script = self._next_script(body)
            try:
                self._check_auth(request)
                if script.status is not None:
                    raise ApiError(
                        script.status,
                        script.error_message or self._default_message(script.status),
                        retry_after=script.retry_after,
                    )
                self._validate(body, size=len(raw))
                reply = self._compose(body, script)
                usage = self._usage(body)
                messages = body["messages"]
                if messages[-1].get("role") == "assistant" and self._continues_pause(messages):
                    self.continuations.append(body)
            except ApiError as e:
                return _error_response(e, request_id)
            if script.input_tokens is not None:
                usage.input_tokens = script.input_tokens
            self.usages.append(usage)
            if body.get("stream"):
                return await self._stream(request, body, script, usage, request_id, reply)
            return await self._complete(request, body, script, usage, request_id, reply)
        finally:
            self.in_flight -= 1

    async def _handle_count_tokens(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw)
        self.count_requests.append(body)
        try:
            self._check_auth(request)
            self._validate(body, size=len(raw), max_tokens_required=False)
        except ApiError as e:
            return _error_response(e, f"req_fake{next(self._ids):012d}")
        return web.json_response({"input_tokens": self.estimate_tokens(body)})

    async def _handle_get_model(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        if model_id not in self.models:
            error = ApiError(404, f"model: {model_id}")
            return _error_response(error, f"req_fake{next(self._ids):012d}")
        return web.json_response(self.models[model_id])

    async def _handle_list_models(self, request: web.Request) -> web.Response:
        query = request.query
        with_retired = any("retired" in v for k, v in query.items() if k.startswith("lifecycle"))
        models = sorted(
            (m for m in self.models.values() if with_retired or m["lifecycle"] != "retired"),
            key=lambda m: m["created_at"],
            reverse=True,
        )
        ids = [m["id"] for m in models]
        limit = int(query.get("limit", 20))
        if (after := query.get("after_id")) in ids:
            models = models[ids.index(after) + 1 :]
        elif (before := query.get("before_id")) in ids:
            models = models[: ids.index(before)][-limit:]
        page = models[:limit]
        return web.json_response(
            {
                "data": page,
                "has_more": len(models) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    def _file(self, request: web.Request) -> tuple[dict[str, Any], bytes]:
        """The Files API's checks: a key, the beta header, a file that exists."""
        beta = request.headers.get("anthropic-beta", "")
        self.file_requests.append((request.path, beta))
        self._check_auth(request)
        if "files-api-2025-04-14" not in beta.split(","):
            raise ApiError(
                400, "The Files API is in beta: send anthropic-beta: files-api-2025-04-14"
            )
        found = self.files.get(request.match_info["file_id"])
        if found is None:
            raise ApiError(404, f"File not found: {request.match_info['file_id']}")
        return found

    async def _handle_file_metadata(self, request: web.Request) -> web.Response:
        try:
            meta, _ = self._file(request)
        except ApiError as e:
            return _error_response(e, f"req_fake{next(self._ids):012d}")
        return web.json_response(meta)

    async def _handle_file_content(self, request: web.Request) -> web.Response:
        try:
            meta, data = self._file(request)
        except ApiError as e:
            return _error_response(e, f"req_fake{next(self._ids):012d}")
        return web.Response(body=data, content_type=meta["mime_type"])

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": len(self.requests),
                "count_requests": len(self.count_requests),
                "peak_in_flight": self.peak_in_flight,
                "usages": [u.__dict__ for u in self.usages],
                "timeline": self.timeline,
            }
        )

    async def _handle_script(self, request: web.Request) -> web.Response:
        """Set the default script, or with ``marker`` the script for requests whose last user
        message contains it: {marker?, chars?, text?, ttft?, tps?, chars_per_token?, searched?}.
        With ``searched`` the reply thinks, searches the web once, then writes the text."""
        body = await request.json()
        text = body.get("text")
        if text is None:
            text = reply_text(int(body["chars"])) if "chars" in body else Script().text
        script = Script(
            text=text,
            ttft=float(body.get("ttft", 0.0)),
            tokens_per_second=body.get("tps"),
            chars_per_token=int(body.get("chars_per_token", 4)),
        )
        if body.get("searched"):
            script.blocks = [
                Thinking("The question needs fresh facts: I should search the web first."),
                ServerToolUse("web_search", {"query": "slackbot benchmark"}),
                WebSearchResult([{"url": "https://example.com/bench", "title": "Bench"}]),
                Text(text),
            ]
        if body.get("marker"):
            self.by_marker[str(body["marker"])] = script
        else:
            self.default = script
        return web.json_response({"ok": True})

    # -- replies --------------------------------------------------------------------------

    def _compose(self, body: dict[str, Any], script: Script) -> _Reply:
        """The script made concrete for this request, cut at ``max_tokens``."""
        thinking = body.get("thinking") or {}
        composer = _Composer(
            body,
            script.chars_per_token,
            show_thinking=(thinking.get("display") or self.thinking_display) == "summarized",
            signatures=self._signatures,
            files=self.files,
        )
        try:
            reply = composer.compose(script.content(), script.stop_reason)
        except ScriptError as e:
            self.script_errors.append(str(e))
            raise ApiError(400, f"FakeClaude script: {e}") from None
        total = sum(part.tokens for part in reply.parts)
        if total > int(body.get("max_tokens") or total or 1):
            reply.truncate(int(body["max_tokens"]))
        return reply

    def _message(
        self,
        body: dict[str, Any],
        usage: Usage,
        *,
        content: list[dict[str, Any]],
        output_tokens: int,
    ) -> dict[str, Any]:
        return {
            "id": f"msg_fake{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.input_tokens,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
                "cache_creation": dict(usage.cache_creation),
                "output_tokens": output_tokens,
                "service_tier": "standard",
            },
        }

    @staticmethod
    def _final_usage(usage: Usage, reply: _Reply) -> dict[str, Any]:
        """message_delta's usage: the final counts, server-tool results and calls included."""
        final: dict[str, Any] = {
            "input_tokens": usage.input_tokens + reply.result_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": reply.output_tokens,
        }
        if (calls := reply.server_tool_use()) is not None:
            final["server_tool_use"] = calls
        if reply.thinking_tokens:
            final["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
        return final

    def _finished(self, body: dict[str, Any], usage: Usage, reply: _Reply) -> dict[str, Any]:
        """The whole reply, as sent: kept in ``responses``; a paused one may be continued."""
        message = self._message(
            body, usage, content=[p.whole() for p in reply.parts], output_tokens=0
        )
        message["stop_reason"] = reply.stop_reason
        message["usage"].update(self._final_usage(usage, reply))
        self.responses.append(message)
        if reply.stop_reason == "pause_turn":
            self._paused.append([_canonical(block) for block in message["content"]])
        return message

    async def _complete(
        self,
        request: web.Request,
        body: dict[str, Any],
        script: Script,
        usage: Usage,
        request_id: str,
        reply: _Reply,
    ) -> web.StreamResponse:
        """A non-streaming answer; a scripted error event becomes a 529, a break a dropped
        connection."""
        await asyncio.sleep(script.ttft + sum(part.seconds for part in reply.parts))
        if script.tokens_per_second:
            await asyncio.sleep(sum(p.tokens for p in reply.parts) / script.tokens_per_second)
        if script.break_after_chars is not None:
            _drop_connection(request)
            return web.Response()
        if script.error_event_after_chars is not None:
            return _error_response(ApiError(529, "Overloaded"), request_id)
        message = self._finished(body, usage, reply)
        return web.json_response(message, headers={"request-id": request_id})

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        script: Script,
        usage: Usage,
        request_id: str,
        reply: _Reply,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": request_id,
            }
        )
        await response.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            payload = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            await response.write(payload.encode())

        record: dict[str, Any] = {
            "received_at": time.monotonic(),
            "first_token_at": None,
            "first_text_at": None,
            "tool_call_at": None,
            "end_at": None,
            "ttft": script.ttft,
            "last_text": _last_user_text(body)[-2000:],
        }
        self.timeline.append(record)
        cut = min(
            (
                n
                for n in (
                    script.break_after_chars,
                    script.error_event_after_chars,
                    script.end_after_chars,
                )
                if n is not None
            ),
            default=None,
        )
        pacer = _Pacer(script.tokens_per_second)

        async def begin() -> None:
            await send("ping", {"type": "ping"})
            await asyncio.sleep(script.ttft)
            pacer.begin()

        async def blocks() -> int:
            """Stream every part; the count of text characters sent."""
            sent = 0
            if not reply.parts:
                await begin()
            for index, part in enumerate(reply.parts):
                await pacer.pause(part.seconds)
                start = {"type": "content_block_start", "index": index, "content_block": part.start}
                await send("content_block_start", start)
                if part.start.get("type") == "server_tool_use" and record["tool_call_at"] is None:
                    record["tool_call_at"] = time.monotonic()
                if index == 0:
                    await begin()
                pacer.skip(part.hidden_tokens)
                for delta in part.deltas:
                    token = _is_token(delta)
                    if token:
                        await pacer.token()
                    if delta["type"] == "text_delta" and cut is not None:
                        delta = {"type": "text_delta", "text": delta["text"][: cut - sent]}
                        sent += len(delta["text"])
                        if not delta["text"]:
                            return sent
                    event = {"type": "content_block_delta", "index": index, "delta": delta}
                    await send("content_block_delta", event)
                    if token and record["first_token_at"] is None:
                        record["first_token_at"] = time.monotonic()
                    if delta["type"] == "text_delta" and record["first_text_at"] is None:
                        record["first_text_at"] = time.monotonic()
                    if cut is not None and sent >= cut:
                        return sent
                await send("content_block_stop", {"type": "content_block_stop", "index": index})
            return sent

        message = self._message(body, usage, content=[], output_tokens=1)
        try:
            await send("message_start", {"type": "message_start", "message": message})
            sent = await blocks()
            if cut is not None and sent >= cut:
                if cut == script.break_after_chars:
                    _drop_connection(request)
                    return response
                if cut == script.end_after_chars:
                    await response.write_eof()
                    return response
                error = {"type": "overloaded_error", "message": "Overloaded"}
                await send("error", {"type": "error", "error": error})
                await response.write_eof()
                return response
            await send(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                    "usage": self._final_usage(usage, reply),
                },
            )
            await send("message_stop", {"type": "message_stop"})
            record["end_at"] = time.monotonic()
            self._finished(body, usage, reply)
            await response.write_eof()
        except ConnectionResetError:
            # The client went away mid-stream (it stopped reading or was cancelled).
            pass
        return response

    # -- request checks and accounting ----------------------------------------------------

    def _check_auth(self, request: web.Request) -> None:
        # SDK 2.x sends the API key as ``Authorization: Bearer``; 0.x sent ``x-api-key``.
        if self.api_key is None:
            return
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.api_key not in (bearer, request.headers.get("x-api-key")):
            raise ApiError(401, "invalid x-api-key")

    @staticmethod
    def _default_message(status: int) -> str:
        return ERROR_MESSAGES.get(ERROR_TYPES.get(status, "api_error"), f"Error {status}")

    def _validate(
        self, body: dict[str, Any], *, size: int = 0, max_tokens_required: bool = True
    ) -> None:
        """The 400s a chat bot can provoke: missing fields, prefill, parameters and tools the
        model refuses, bad images and documents, thinking sent back changed, >4 breakpoints;
        a body over 32 MB is a 413. A model the fake does not list is checked as
        ``CURRENT_MODEL`` would be."""
        if size > MAX_REQUEST_BYTES:
            raise ApiError(413, "Request exceeds the maximum allowed number of bytes.")
        for key in ("model", "messages") + (("max_tokens",) if max_tokens_required else ()):
            if key not in body:
                raise ApiError(400, f"{key}: Field required")
        model = self.models.get(body["model"])
        if model is not None and model["lifecycle"] == "retired":
            raise ApiError(404, f"model: {body['model']}")
        capabilities = (model or sonnet_5_5())["capabilities"]
        if body["model"] not in self.legacy_rule_models:
            _check_current_rules(body)
        _check_thinking_config(body, capabilities)
        _check_tools(body.get("tools") or [], capabilities)
        messages = body["messages"]
        if not messages:
            raise ApiError(400, "messages: at least one message is required")
        if messages[-1].get("role") == "assistant" and not (
            self.allow_prefill or self._continues_pause(messages)
        ):
            raise ApiError(
                400,
                "This model does not support assistant message prefill. "
                "The conversation must end with a user message.",
            )
        citing: set[bool] = set()
        for i, message in enumerate(messages):
            content = message.get("content")
            for j, block in enumerate(content if isinstance(content, list) else []):
                where = f"messages.{i}.content.{j}"
                if block.get("type") == "image":
                    _check_image(block, f"{where}.image.source.base64")
                elif block.get("type") == "document":
                    _check_document(block, where, capabilities)
                    citing.add(bool((block.get("citations") or {}).get("enabled")))
                elif block.get("type") in ("thinking", "redacted_thinking"):
                    self._check_thinking(block, where)
        if len(citing) > 1:
            raise ApiError(400, "Citations must be enabled on all or none of the documents.")
        marks = sum(1 for _, _, cc in self._segments(body) if cc is not None)
        if marks > MAX_CACHE_BREAKPOINTS:
            raise ApiError(
                400,
                f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be "
                f"provided. Found {marks}.",
            )

    def _continues_pause(self, messages: list[dict[str, Any]]) -> bool:
        """The request ends with the content of replies that stopped with ``pause_turn``,
        sent back verbatim (one assistant turn per reply, or merged into one); the
        ``cache_control`` marks and null fields a client may add do not count."""
        tail: list[Any] = []
        for message in reversed(messages):
            if message.get("role") != "assistant":
                break
            content = message.get("content")
            text_only = [{"type": "text", "text": content}] if isinstance(content, str) else None
            tail[0:0] = text_only or content or []
        blocks = [_canonical(block) for block in tail]
        reachable = {0}
        for start in range(len(blocks)):
            if start in reachable:
                for paused in self._paused:
                    if blocks[start : start + len(paused)] == paused:
                        reachable.add(start + len(paused))
        return bool(blocks) and len(blocks) in reachable

    def _check_thinking(self, block: dict[str, Any], where: str) -> None:
        """Thinking goes back with its signature, and as it was signed."""
        if block["type"] == "redacted_thinking":
            if not isinstance(block.get("data"), str) or not block["data"]:
                raise ApiError(400, f"{where}.redacted_thinking.data: Field required")
            return
        signature = block.get("signature")
        if not isinstance(signature, str) or not signature:
            raise ApiError(400, f"{where}.thinking.signature: Field required")
        if signature in self._signatures and self._signatures[signature] != block.get("thinking"):
            raise ApiError(
                400,
                f"{where}: `thinking` or `redacted_thinking` blocks in the latest assistant "
                "message cannot be modified. These blocks must remain as they were in the "
                "original response.",
            )

    def _segments(self, body: dict[str, Any]) -> list[tuple[str, int, dict[str, Any] | None]]:
        """Prompt blocks in cache-prefix order as (canonical JSON, tokens, cache_control)."""
        items: list[tuple[Any, dict[str, Any] | None]] = []
        for tool in body.get("tools") or []:
            items.append(_split_cache_control(tool))
        system = body.get("system")
        if isinstance(system, str):
            items.append(({"type": "text", "text": system}, None))
        else:
            items.extend(_split_cache_control(block) for block in system or [])
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            for block in content or []:
                clean, cc = _split_cache_control(block)
                items.append(({"role": message.get("role"), "block": clean}, cc))
        if (top := body.get("cache_control")) is not None and items:
            items[-1] = (items[-1][0], top)
        segments = []
        for item, cc in items:
            text = json.dumps(item, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
            kind = item.get("block", item).get("type") if isinstance(item, dict) else None
            if kind == "image":
                tokens = self.image_tokens
            elif kind == "document":
                tokens = self.document_tokens
            else:
                tokens = max(1, math.ceil(len(text) / 4))
            segments.append((text, tokens, cc))
        return segments

    def _usage(self, body: dict[str, Any]) -> Usage:
        """Split the request's tokens into cache read / cache write / uncached input."""
        segments = self._segments(body)
        total = sum(tokens for _, tokens, _ in segments)
        now = time.monotonic()
        self._cache = {key: exp for key, exp in self._cache.items() if exp > now}
        digest = hashlib.sha256(str(body.get("model")).encode())
        hashes, cumulative, running = [], [], 0
        for text, tokens, _ in segments:
            digest.update(text.encode())
            hashes.append(digest.copy().hexdigest())
            running += tokens
            cumulative.append(running)
        breakpoints = [
            (i, 3600.0 if cc.get("ttl") == "1h" else 300.0)
            for i, (_, _, cc) in enumerate(segments)
            if cc is not None and cumulative[i] >= self.min_cacheable_tokens
        ]
        if not breakpoints:
            return Usage(input_tokens=total)
        last = breakpoints[-1][0]
        hit = max((i for i in range(last + 1) if hashes[i] in self._cache), default=-1)
        read = cumulative[hit] if hit >= 0 else 0
        usage = Usage(input_tokens=0, cache_read_input_tokens=read)
        written_to = hit
        for index, ttl in breakpoints:
            if index > written_to:
                tokens = cumulative[index] - (cumulative[written_to] if written_to >= 0 else 0)
                bucket = "ephemeral_1h_input_tokens" if ttl > 300 else "ephemeral_5m_input_tokens"
                usage.cache_creation[bucket] += tokens
                usage.cache_creation_input_tokens += tokens
                written_to = index
            self._cache[hashes[index]] = now + ttl
        if hit >= 0:
            self._cache[hashes[hit]] = max(self._cache.get(hashes[hit], 0.0), now + 300.0)
        usage.input_tokens = total - read - usage.cache_creation_input_tokens
        return usage


def _canonical(block: Any) -> str:
    """A content block as compact JSON, for "sent back verbatim": without ``cache_control``
    or null fields, and a text block's empty ``citations`` list counting as none."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "cache_control" and v is not None}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    cleaned = clean(block)
    if isinstance(cleaned, dict) and cleaned.get("type") == "text" and not cleaned.get("citations"):
        cleaned.pop("citations", None)
    return json.dumps(cleaned, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _split_cache_control(block: Any) -> tuple[Any, dict[str, Any] | None]:
    if not isinstance(block, dict) or "cache_control" not in block:
        return block, None
    clean = {k: v for k, v in block.items() if k != "cache_control"}
    return clean, block["cache_control"]


def _check_image(block: dict[str, Any], where: str) -> None:
    """Reject what the API rejects and a stored thread would then replay forever."""
    source = block.get("source") or {}
    if source.get("type") != "base64":
        return
    media_type, data = source.get("media_type"), source.get("data") or ""
    if media_type not in IMAGE_TYPES:
        raise ApiError(400, f"{where}: unsupported media_type {media_type!r}")
    if len(data) > MAX_IMAGE_BASE64:
        raise ApiError(400, f"{where}: image exceeds 5 MB maximum: {len(data)} bytes > 5242880")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}: invalid base64 data") from None
    if not raw.startswith(IMAGE_TYPES[media_type]):
        raise ApiError(400, f"{where}: Image does not match the provided media type {media_type}")


def _check_current_rules(body: dict[str, Any]) -> None:
    """The 5.x line takes no sampling parameters but their defaults, and no forced tool use."""
    for key, default in (("temperature", 1), ("top_p", 1), ("top_k", None)):
        if body.get(key) is not None and body[key] != default:
            raise ApiError(400, f"{key}: this model does not support setting {key}; leave it unset")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise ApiError(
            400,
            f"tool_choice: type {choice['type']!r} (forced tool use) is not supported by this "
            "model; use 'auto' or 'none'",
        )


def _check_thinking_config(body: dict[str, Any], capabilities: dict[str, Any]) -> None:
    """``thinking`` of a type the model accepts; ``output_config.effort`` at a level it has."""
    thinking = body.get("thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in THINKING_TYPES:
            raise ApiError(
                400, f"thinking.type: Input should be one of {', '.join(THINKING_TYPES)}"
            )
        if not capabilities["thinking"]["types"][kind]["supported"]:
            message = f"thinking.type: {kind!r} is not supported by this model."
            if kind == "enabled":
                message += " Use thinking.type 'adaptive' with output_config.effort."
            raise ApiError(400, message)
        if thinking.get("display") not in (None, "summarized", "omitted"):
            raise ApiError(400, "thinking.display: Input should be 'summarized' or 'omitted'")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                raise ApiError(400, "thinking.enabled.budget_tokens: Input should be >= 1024")
            if budget >= int(body.get("max_tokens") or budget + 1):
                raise ApiError(400, "max_tokens must be greater than thinking.budget_tokens")
    output_config = body.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if effort is not None:
        if effort not in EFFORT_LEVELS:
            levels = ", ".join(EFFORT_LEVELS)
            raise ApiError(400, f"output_config.effort: Input should be one of {levels}")
        if not capabilities["effort"][effort]["supported"]:
            raise ApiError(400, f"output_config.effort: {effort!r} is not supported by this model")


def _check_tools(tools: list[Any], capabilities: dict[str, Any]) -> None:
    """Unique names; custom tools with a schema; server tools of a known version the model
    supports, with a positive ``max_uses`` and not both domain lists."""
    names: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not name:
            raise ApiError(400, f"{where}.name: Field required")
        if name in names:
            raise ApiError(400, f"tools: Tool names must be unique. Duplicate: {name!r}")
        names.add(name)
        family = _server_tool_name(tool)
        if family is None:
            if tool.get("type") in (None, "custom") and "input_schema" not in tool:
                raise ApiError(400, f"{where}.custom.input_schema: Field required")
            continue
        if tool["type"] not in TOOL_VERSIONS[family]:
            raise ApiError(400, f"{where}.type: unknown tool type {tool['type']!r}")
        if name != family:
            raise ApiError(400, f"{where}.name: Input should be {family!r}")
        if not capabilities["server_tools"][family]["supported"]:
            raise ApiError(400, f"{where}: {family} is not supported by this model")
        max_uses = tool.get("max_uses")
        if max_uses is not None and (not isinstance(max_uses, int) or max_uses < 1):
            raise ApiError(400, f"{where}.max_uses: Input should be greater than 0")
        if tool.get("allowed_domains") is not None and tool.get("blocked_domains") is not None:
            raise ApiError(
                400, f"{where}: allowed_domains and blocked_domains cannot be used together"
            )
        citations = tool.get("citations")
        if citations is not None and not (
            isinstance(citations, dict) and isinstance(citations.get("enabled"), bool)
        ):
            raise ApiError(400, f"{where}.citations.enabled: Input should be a valid boolean")


def _check_document(block: dict[str, Any], where: str, capabilities: dict[str, Any]) -> None:
    """A PDF that is one, plain text that is text, and citations switched on or off."""
    source = block.get("source")
    if not isinstance(source, dict):
        source = {}
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") != "application/pdf":
            raise ApiError(
                400, f"{where}.document.source.base64.media_type: Input should be 'application/pdf'"
            )
        try:
            raw = base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{where}.document.source.base64.data: invalid base64") from None
        if not raw.startswith(b"%PDF"):
            raise ApiError(400, f"{where}: The PDF specified was not valid.")
        if not capabilities["pdf_input"]["supported"]:
            raise ApiError(400, f"{where}: this model does not support PDF input")
    elif kind == "text":
        if source.get("media_type") != "text/plain":
            raise ApiError(
                400, f"{where}.document.source.text.media_type: Input should be 'text/plain'"
            )
        if not isinstance(source.get("data"), str):
            raise ApiError(400, f"{where}.document.source.text.data: Field required")
        if not source["data"]:
            raise ApiError(400, f"{where}: text documents need non-empty text/plain data")
    elif kind not in ("content", "url", "file"):
        raise ApiError(
            400,
            f"{where}.document.source.type: Input should be 'base64', 'text', 'content', 'url' "
            "or 'file'",
        )
    citations = block.get("citations")
    if citations is not None and not (
        isinstance(citations, dict) and isinstance(citations.get("enabled"), bool)
    ):
        raise ApiError(400, f"{where}.document.citations.enabled: Input should be a valid boolean")


def _error_response(error: ApiError, request_id: str) -> web.Response:
    headers = {"request-id": request_id}
    if error.retry_after is not None:
        headers["retry-after"] = f"{error.retry_after:g}"
    body = {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(error.status, "api_error"), "message": error.message},
        "request_id": request_id,
    }
    return web.json_response(body, status=error.status, headers=headers)


def _drop_connection(request: web.Request) -> None:
    """Close the socket under a response, so the client sees a truncated chunked body."""
    transport = request.transport
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.abort()
