"""A fake Anthropic Messages API, spoken to over real HTTP on 127.0.0.1.

Tests hand ``AsyncAnthropic(base_url=claude.base_url)`` to the code under test, so the SDK's own
SSE parser, error mapping and retry logic run against the event sequence the real API sends
(``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``…,
``content_block_stop``, ``message_delta``, ``message_stop``). What it answers is scripted per
request with ``Script``: text, pacing (time to first token, tokens per second), HTTP errors,
a stream cut off mid-way, or an ``error`` event after HTTP 200.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import math
import time
import uuid
from collections.abc import Callable
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


@dataclass
class Script:
    """What the fake answers to one /v1/messages request.

    ``status`` turns the answer into an HTTP error (``retry_after`` adds the header on any
    status); ``break_after_chars`` sends that much text then drops the connection without
    ``message_stop``; ``error_event_after_chars`` sends an SSE ``error`` event after that much
    text, the status already being 200; ``end_after_chars`` sends that much text and then ends
    the response cleanly, without ``message_stop`` (a proxy or server closing early).
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
) -> dict[str, Any]:
    """A ModelInfo JSON object with every capability key present, as the Models API sends."""

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
            "effort": {
                "supported": True,
                "low": yes(),
                "medium": yes(),
                "high": yes(),
                "max": yes(),
                "xhigh": yes(False),
            },
            "image_input": yes(image_input),
            "pdf_input": yes(pdf_input),
            "server_tools": {"supported": True, "code_execution": yes(), "web_search": yes()},
            "structured_outputs": yes(),
            "thinking": {
                "supported": True,
                "types": {
                    "adaptive": yes(),
                    "between_tools": yes(False),
                    "disabled": yes(),
                    "enabled": yes(),
                },
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


class ApiError(Exception):
    """Raised while handling a request to answer with Anthropic's error JSON."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class FakeClaude(LocalServer):
    """The Messages API (streaming and not), token counting and the Models API.

    Replies come from ``queue`` (FIFO, consumed first), then ``responder(body)`` if set (it may
    return None), then ``default``. Every /v1/messages body is kept in ``requests``, its headers
    (lower-cased names) in ``request_headers``; ``in_flight``/``peak_in_flight`` count concurrency.

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

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key  # when set, any other key gets 401
        self.default = Script()
        self.queue: list[Script] = []
        self.responder: Callable[[dict[str, Any]], Script | None] | None = None
        self.models: dict[str, dict[str, Any]] = default_models()
        self.allow_prefill = False  # current models reject a last assistant turn
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
        self.in_flight = 0
        self.peak_in_flight = 0

        self._cache: dict[str, float] = {}  # prefix hash -> monotonic expiry
        self._ids = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        app.router.add_get("/v1/models", self._handle_list_models)
        app.router.add_get("/v1/models/{model_id}", self._handle_get_model)
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
            body = await request.json()
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
                self._validate(body)
                usage = self._usage(body)
            except ApiError as e:
                return _error_response(e, request_id)
            if script.input_tokens is not None:
                usage.input_tokens = script.input_tokens
            self.usages.append(usage)
            if body.get("stream"):
                return await self._stream(request, body, script, usage, request_id)
            return await self._complete(request, body, script, usage, request_id)
        finally:
            self.in_flight -= 1

    async def _handle_count_tokens(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.count_requests.append(body)
        try:
            self._check_auth(request)
            self._validate(body, max_tokens_required=False)
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
        message contains it: {marker?, chars?, text?, ttft?, tps?, chars_per_token?}."""
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
        if body.get("marker"):
            self.by_marker[str(body["marker"])] = script
        else:
            self.default = script
        return web.json_response({"ok": True})

    # -- replies --------------------------------------------------------------------------

    def _reply_plan(self, body: dict[str, Any], script: Script) -> tuple[list[str], str]:
        """The deltas to send (one per token) and the stop reason, honouring max_tokens."""
        size = max(1, script.chars_per_token)
        chunks = [script.text[i : i + size] for i in range(0, len(script.text), size)]
        max_tokens = int(body.get("max_tokens") or len(chunks) or 1)
        if len(chunks) > max_tokens:
            return chunks[:max_tokens], "max_tokens"
        return chunks, script.stop_reason

    def _message(
        self, body: dict[str, Any], usage: Usage, *, text: str | None, output_tokens: int
    ) -> dict[str, Any]:
        return {
            "id": f"msg_fake{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": [] if text is None else [{"type": "text", "text": text}],
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

    async def _complete(
        self,
        request: web.Request,
        body: dict[str, Any],
        script: Script,
        usage: Usage,
        request_id: str,
    ) -> web.StreamResponse:
        """A non-streaming answer; a scripted error event becomes a 529, a break a dropped
        connection."""
        chunks, stop_reason = self._reply_plan(body, script)
        await asyncio.sleep(script.ttft)
        if script.tokens_per_second:
            await asyncio.sleep(len(chunks) / script.tokens_per_second)
        if script.break_after_chars is not None:
            _drop_connection(request)
            return web.Response()
        if script.error_event_after_chars is not None:
            return _error_response(ApiError(529, "Overloaded"), request_id)
        message = self._message(body, usage, text="".join(chunks), output_tokens=len(chunks))
        message["stop_reason"] = stop_reason
        return web.json_response(message, headers={"request-id": request_id})

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        script: Script,
        usage: Usage,
        request_id: str,
    ) -> web.StreamResponse:
        chunks, stop_reason = self._reply_plan(body, script)
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

        message = self._message(body, usage, text=None, output_tokens=1)
        loop = asyncio.get_running_loop()
        record: dict[str, Any] = {
            "received_at": time.monotonic(),
            "first_token_at": None,
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
        try:
            await send("message_start", {"type": "message_start", "message": message})
            await send(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            await send("ping", {"type": "ping"})
            await asyncio.sleep(script.ttft)
            started, sent = loop.time(), 0
            for i, chunk in enumerate(chunks):
                if script.tokens_per_second:
                    await asyncio.sleep(
                        max(0.0, started + i / script.tokens_per_second - loop.time())
                    )
                if cut is not None and sent + len(chunk) >= cut:
                    chunk = chunk[: cut - sent]
                if chunk:
                    await send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": chunk},
                        },
                    )
                    sent += len(chunk)
                    if record["first_token_at"] is None:
                        record["first_token_at"] = time.monotonic()
                if cut is not None and sent >= cut:
                    break
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
            await send("content_block_stop", {"type": "content_block_stop", "index": 0})
            await send(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {
                        "input_tokens": usage.input_tokens,
                        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                        "cache_read_input_tokens": usage.cache_read_input_tokens,
                        "output_tokens": max(1, len(chunks)),
                    },
                },
            )
            await send("message_stop", {"type": "message_stop"})
            record["end_at"] = time.monotonic()
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

    def _validate(self, body: dict[str, Any], *, max_tokens_required: bool = True) -> None:
        """The 400s a chat bot can provoke: missing fields, prefill, bad images, >4 breakpoints."""
        for key in ("model", "messages") + (("max_tokens",) if max_tokens_required else ()):
            if key not in body:
                raise ApiError(400, f"{key}: Field required")
        model = self.models.get(body["model"])
        if model is not None and model["lifecycle"] == "retired":
            raise ApiError(404, f"model: {body['model']}")
        messages = body["messages"]
        if not messages:
            raise ApiError(400, "messages: at least one message is required")
        if messages[-1].get("role") == "assistant" and not self.allow_prefill:
            raise ApiError(
                400,
                "This model does not support assistant message prefill. "
                "The conversation must end with a user message.",
            )
        citing: set[bool] = set()
        for i, message in enumerate(messages):
            content = message.get("content")
            for j, block in enumerate(content if isinstance(content, list) else []):
                if block.get("type") == "image":
                    _check_image(block, f"messages.{i}.content.{j}.image.source.base64")
                elif block.get("type") == "document":
                    _check_document(block, f"messages.{i}.content.{j}.document.source")
                    citing.add(bool((block.get("citations") or {}).get("enabled")))
        if len(citing) > 1:
            raise ApiError(400, "Citations must be enabled on all or none of the documents.")
        marks = sum(1 for _, _, cc in self._segments(body) if cc is not None)
        if marks > MAX_CACHE_BREAKPOINTS:
            raise ApiError(
                400,
                f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be "
                f"provided. Found {marks}.",
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


def _check_document(block: dict[str, Any], where: str) -> None:
    """A PDF must be base64 of a PDF; a text document non-empty plain text."""
    source = block.get("source") or {}
    if source.get("type") == "base64":
        if source.get("media_type") != "application/pdf":
            raise ApiError(400, f"{where}: unsupported media_type {source.get('media_type')!r}")
        try:
            raw = base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{where}: invalid base64 data") from None
        if b"%PDF-" not in raw[:1024]:
            raise ApiError(400, f"{where}: The PDF specified was not valid.")
    elif source.get("type") == "text":
        if source.get("media_type") != "text/plain" or not source.get("data"):
            raise ApiError(400, f"{where}: text documents need non-empty text/plain data")
    else:
        raise ApiError(400, f"{where}: unsupported source type {source.get('type')!r}")


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
