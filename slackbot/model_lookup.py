"""What the configured model can take, learnt once at start-up from the Models API.

`learn_model` asks `models.retrieve(CLAUDE_MODEL)` for the context window, the output limit,
the capabilities and the lifecycle. The answer holds for the life of the process. When the API
cannot be reached (connection error, 5xx, ...), the bot starts with `FALLBACK` limits and a
warning. A model the API calls retired, or does not know (404), stops the start-up with one line
naming it — except the built-in default (CLAUDE_MODEL unset), which is swapped for the newest
active model of its line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anthropic

from slackbot.config import DEFAULT_MODEL_LINE, Settings
from slackbot.errors import ModelRefused

log = logging.getLogger(__name__)

#: Limits assumed when the Models API cannot be asked: every current model has at least a
#: 200k-token window and 32k output tokens; images and PDFs are read by all of them.
FALLBACK_MAX_INPUT_TOKENS = 200_000
FALLBACK_MAX_TOKENS = 32_000


@dataclass(frozen=True)
class ModelLimits:
    """The model a bot talks to and what it accepts."""

    model: str
    max_input_tokens: int = FALLBACK_MAX_INPUT_TOKENS
    max_tokens: int = FALLBACK_MAX_TOKENS
    #: Read by the file kinds (images, and PDF documents next): a model without them gets a
    #: note instead of a block it would reject.
    image_input: bool = True
    pdf_input: bool = True
    lifecycle: str = "active"
    line: str | None = None
    from_api: bool = False
    #: `thinking: {"type": "adaptive"}` is accepted (capabilities.thinking.types.adaptive).
    adaptive_thinking: bool = False
    #: Effort levels accepted; None when the API did not say (every level is then tried).
    efforts: frozenset[str] | None = None
    #: Server tools accepted; None when the API did not say.
    server_tools: frozenset[str] | None = None

    def output_tokens(self, wanted: int) -> int:
        """`max_tokens` for each request: CLAUDE_MAX_TOKENS, within what the model can write
        and at most half the window, so a long thread always keeps room for its input."""
        return max(1, min(wanted, self.max_tokens, self.max_input_tokens // 2))


def _supports(capability: Any) -> bool:
    """A capability's `supported` flag, whether the SDK parsed it or kept it as a dict (a
    field newer than the SDK)."""
    if isinstance(capability, dict):
        return bool(capability.get("supported"))
    return bool(getattr(capability, "supported", False))


def limits_from(info: Any) -> ModelLimits:
    """`ModelLimits` from an SDK `ModelInfo` (missing fields keep the fallback values)."""
    caps = info.capabilities

    def supported(name: str, default: bool) -> bool:
        cap = getattr(caps, name, None) if caps is not None else None
        return bool(getattr(cap, "supported", default)) if cap is not None else default

    thinking = getattr(caps, "thinking", None)
    types = getattr(thinking, "types", None)
    adaptive = getattr(types, "adaptive", None)
    effort = getattr(caps, "effort", None)
    efforts = (
        frozenset(
            level
            for level in ("low", "medium", "high", "xhigh", "max")
            if getattr(getattr(effort, level, None), "supported", False)
        )
        if effort is not None and getattr(effort, "supported", False)
        else (frozenset() if effort is not None else None)
    )
    tools = getattr(caps, "server_tools", None)
    server_tools = None
    if tools is not None:
        listed = {
            name
            for name in ("web_search", "web_fetch", "code_execution")
            if _supports(getattr(tools, name, None))
        }
        if getattr(tools, "web_fetch", None) is None and "web_search" in listed:
            listed.add("web_fetch")  # not every Models API answer lists it: it goes with search
        server_tools = frozenset(listed) if getattr(tools, "supported", False) else frozenset()
    return ModelLimits(
        model=info.id,
        max_input_tokens=info.max_input_tokens or FALLBACK_MAX_INPUT_TOKENS,
        max_tokens=info.max_tokens or FALLBACK_MAX_TOKENS,
        image_input=supported("image_input", True),
        pdf_input=supported("pdf_input", True),
        lifecycle=info.lifecycle,
        line=info.line,
        from_api=True,
        adaptive_thinking=bool(getattr(adaptive, "supported", False)),
        efforts=efforts,
        server_tools=server_tools,
    )


async def learn_model(client: anthropic.AsyncAnthropic, settings: Settings) -> ModelLimits:
    """The limits of the model the bot should use, or `ModelRefused` (see the module doc)."""
    name = settings.claude_model
    try:
        info = await client.models.retrieve(name)
    except anthropic.NotFoundError as exc:
        if not _says_unknown_model(exc):
            # A 404 without the API's error object: a proxy or gateway in front of the API
            # that has no Models endpoint. That says nothing about the model; don't refuse.
            log.warning("the Models API is not available here (%r): %s", exc, _ASSUMING)
            return ModelLimits(model=name)
        if settings.claude_model_is_default:
            return await _newest_of_line(client, name, DEFAULT_MODEL_LINE, why="is unknown")
        raise ModelRefused(
            f"CLAUDE_MODEL {name!r} is not a model the Anthropic API knows: "
            "set CLAUDE_MODEL to a current model id"
        ) from None
    except anthropic.AuthenticationError:
        raise ModelRefused(
            "ANTHROPIC_API_KEY was refused by the Anthropic API: check the key"
        ) from None
    except anthropic.APIError as exc:
        log.warning("could not look up model %s (%r): %s", name, exc, _ASSUMING)
        return ModelLimits(model=name)
    limits = limits_from(info)
    if limits.lifecycle == "retired":
        if settings.claude_model_is_default:
            line = limits.line or DEFAULT_MODEL_LINE
            return await _newest_of_line(client, name, line, why="is retired")
        raise ModelRefused(
            f"CLAUDE_MODEL {name!r} is retired: set CLAUDE_MODEL to a current model id"
        )
    if limits.lifecycle == "deprecated":
        retires = getattr(info, "retires_at", None)
        when = f" (retires {retires:%Y-%m-%d})" if retires else ""
        log.warning("model %s is deprecated%s: choose a newer CLAUDE_MODEL soon", name, when)
    return limits


_ASSUMING = (
    f"assuming a {FALLBACK_MAX_INPUT_TOKENS}-token window and {FALLBACK_MAX_TOKENS} output tokens"
)


def _says_unknown_model(exc: anthropic.NotFoundError) -> bool:
    """True when the 404 is the API's own answer (`not_found_error`) about the model."""
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("type") == "not_found_error"


async def _newest_of_line(
    client: anthropic.AsyncAnthropic, name: str, line: str, *, why: str
) -> ModelLimits:
    """The newest active model of `line`, standing in for a built-in default that went away."""
    newest = None
    try:
        async for info in client.models.list(limit=100):
            is_candidate = info.line == line and info.lifecycle == "active"
            if is_candidate and (newest is None or info.created_at > newest.created_at):
                newest = info
    except anthropic.APIError as exc:
        raise ModelRefused(
            f"the built-in model {name!r} {why} and the model list could not be read "
            f"({type(exc).__name__}): set CLAUDE_MODEL"
        ) from None
    if newest is None:
        raise ModelRefused(
            f"the built-in model {name!r} {why} and no active {line!r} model is listed: "
            "set CLAUDE_MODEL"
        )
    log.warning(
        "the built-in model %s %s: using %s, the newest active %s model (set CLAUDE_MODEL to "
        "choose)",
        name,
        why,
        newest.id,
        line,
    )
    return limits_from(newest)
