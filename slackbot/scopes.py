"""The bot token scopes the bot needs: the list `manifest.yml` requests, known to the package.

`slackbot check` compares it with the scopes Slack says the token has (the `x-oauth-scopes`
header); a test keeps it equal to the manifest's list, so adding a scope there means adding it
here too.
"""

from __future__ import annotations

BOT_SCOPES: tuple[str, ...] = (
    "app_mentions:read",
    "chat:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "files:read",
    "users:read",
    "channels:read",
    "groups:read",
    "mpim:read",
    "im:read",
    "files:write",
    "assistant:write",
    "commands",
)


def missing_scopes(granted_header: str) -> list[str]:
    """The needed scopes not in `granted_header` (Slack's comma-separated `x-oauth-scopes`)."""
    granted = {scope.strip() for scope in granted_header.split(",") if scope.strip()}
    return [scope for scope in BOT_SCOPES if scope not in granted]
