"""What each Messages API request asks for beyond the conversation: thinking, effort, tools.

Chosen once at start-up from the settings and what the Models API says the model accepts, so a
request never carries a parameter the model would refuse with a 400: a model without adaptive
thinking gets no thinking parameter, an effort level or a server tool it lacks is left out with
one warning. The current models reject sampling parameters (`temperature`, `top_p`, `top_k`),
prefill and forced `tool_choice`; none of them is ever sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slackbot.config import Settings
from slackbot.model_lookup import ModelLimits

log = logging.getLogger(__name__)

#: The server tools' current versions (see the Messages API's tool reference).
TOOL_TYPES = {
    "web_search": "web_search_20260318",
    "web_fetch": "web_fetch_20260318",
    "code_execution": "code_execution_20260521",
}


@dataclass(frozen=True)
class RequestOptions:
    #: Adaptive thinking with summaries: something to show while the model works between tool
    #: calls (the default display returns empty thinking blocks).
    thinking: bool = False
    effort: str | None = None
    tools: tuple[str, ...] = ()
    web_search_max_uses: int = 5
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()

    def body(self, *, searches_used: int = 0) -> dict[str, Any]:
        """The request fields; `searches_used` by earlier parts of the same reply (a
        `pause_turn` continuation gets what is left of `web_search_max_uses`)."""
        body: dict[str, Any] = {}
        if self.thinking:
            body["thinking"] = {"type": "adaptive", "display": "summarized"}
        if self.effort:
            body["output_config"] = {"effort": self.effort}
        tools = [self._tool(name, searches_used) for name in self.tools]
        tools = [tool for tool in tools if tool is not None]
        if tools:
            body["tools"] = tools
        return body

    def _tool(self, name: str, searches_used: int) -> dict[str, Any] | None:
        tool: dict[str, Any] = {"type": TOOL_TYPES[name], "name": name}
        if name == "web_search":
            left = self.web_search_max_uses - searches_used
            if left <= 0:
                return None
            tool["max_uses"] = left
        if name == "web_fetch":
            tool["citations"] = {"enabled": True}
        if name in ("web_search", "web_fetch"):
            if self.allowed_domains:
                tool["allowed_domains"] = list(self.allowed_domains)
            elif self.blocked_domains:
                tool["blocked_domains"] = list(self.blocked_domains)
        return tool


def request_options(settings: Settings, limits: ModelLimits) -> RequestOptions:
    """The options for `limits.model`, warning once about each setting it can't honour."""
    effort = settings.claude_effort
    if effort and limits.efforts is not None and effort not in limits.efforts:
        log.warning("CLAUDE_EFFORT=%s is not supported by %s: not sending it", effort, limits.model)
        effort = None
    tools = settings.tools
    if limits.server_tools is not None:
        missing = [tool for tool in tools if tool not in limits.server_tools]
        for tool in missing:
            log.warning("%s does not support the %s tool: leaving it out", limits.model, tool)
        tools = tuple(tool for tool in tools if tool in limits.server_tools)
    return RequestOptions(
        thinking=limits.adaptive_thinking,
        effort=effort,
        tools=tools,
        web_search_max_uses=settings.web_search_max_uses,
        allowed_domains=settings.web_allowed_domains,
        blocked_domains=settings.web_blocked_domains,
    )
