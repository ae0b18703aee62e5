"""Claude's citations → numbered links after the cited passage, and a "Sources" list.

Slack renders the Markdown links of `markdown_text`, so a web source is a marker `[1](url)` right
after the passage that cites it — the same number each time the same URL is cited — and one line
in the list at the end of the reply's last message. A citation of an attached document names the
file (and the page, for a PDF) instead: it has no URL to link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Citation types that point into a document the request carried.
DOCUMENT_LOCATIONS = frozenset({"char_location", "page_location", "content_block_location"})


def _link_text(text: str) -> str:
    """Text that can stand inside `[…]` of a Markdown link."""
    cleaned = " ".join(text.split()).replace("[", "(").replace("]", ")")
    return cleaned or "source"


def _link_url(url: str) -> str:
    """A URL that can stand inside `(…)` of a Markdown link."""
    return url.strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


class Sources:
    """The web sources one reply cited, numbered in the order they were first cited."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}
        self._titles: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._numbers)

    def markers(self, locations: Iterable[Mapping[str, Any]]) -> str:
        """What follows a cited passage: each source once, in the order cited."""
        seen: list[str] = []
        for location in locations:
            marker = self._marker(location)
            if marker and marker not in seen:
                seen.append(marker)
        return "".join(f" {marker}" for marker in seen)

    def _marker(self, location: Mapping[str, Any]) -> str | None:
        url = location.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            number = self._numbers.setdefault(url, len(self._numbers) + 1)
            title = location.get("title")
            if isinstance(title, str) and title.strip() and url not in self._titles:
                self._titles[url] = title
            return f"[{number}]({_link_url(url)})"
        if location.get("type") in DOCUMENT_LOCATIONS:
            name = _link_text(str(location.get("document_title") or "the attached document"))
            page = location.get("start_page_number")
            return f"_({name}, p. {page})_" if page else f"_({name})_"
        return None

    def footer(self) -> str:
        """The "Sources" list, or "" when no web source was cited."""
        if not self._numbers:
            return ""
        lines = [
            f"{number}. [{_link_text(self._titles.get(url, url))}]({_link_url(url)})"
            for url, number in self._numbers.items()
        ]
        return "**Sources**\n" + "\n".join(lines)
