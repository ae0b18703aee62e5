"""`slackbot usage`: tokens and estimated cost of the bot's replies, from the database alone.

Opens SLACKBOT_DB read-only (WAL lets it read while the bot writes) and needs no Slack or Claude
credentials. Costs are estimates from `PRICES` (USD per million tokens), which an operator can
override with SLACKBOT_PRICES; cache writes cost 1.25× and cache reads 0.1× the input price.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from slackbot.db_read import reading
from slackbot.errors import UsageError
from slackbot.store import UsageTotal

#: USD per million (input, output) tokens, keyed by model id prefix or by model line; the
#: longest matching id prefix wins, then the line. Public list prices when this was written:
#: check https://www.anthropic.com/pricing and override with SLACKBOT_PRICES.
PRICES: dict[str, tuple[float, float]] = {
    "opus": (5.0, 25.0),  # Opus 4.5 and later
    "sonnet": (3.0, 15.0),  # Sonnet 4.x
    "claude-sonnet-5": (2.0, 10.0),  # Sonnet 5 and its point releases
    "fable": (10.0, 50.0),
    "haiku": (1.0, 5.0),  # Haiku 4.5
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4-20250514": (15.0, 75.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25),
}
#: USD per 1,000 web searches (the API's price), overridable as SLACKBOT_PRICES' "web_search".
WEB_SEARCH_PER_1000 = 10.0
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1

GROUPS = {"channel": "channel", "user": "user_id", "model": "model", "team": "team"}
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class PriceTable:
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(PRICES))

    @classmethod
    def with_overrides(cls, overrides: Iterable[tuple[str, float, float]]) -> PriceTable:
        prices = dict(PRICES)
        prices.update({key: (price_in, price_out) for key, price_in, price_out in overrides})
        return cls(prices)

    def lookup(self, model: str | None, line: str | None) -> tuple[float, float] | None:
        """(input, output) USD per million tokens for a model, or None if unknown."""
        model = model or ""
        if model in self.prices:
            return self.prices[model]
        prefixes = [
            key for key in self.prices if key.startswith("claude") and model.startswith(key)
        ]
        if prefixes:
            return self.prices[max(prefixes, key=len)]
        if line and line in self.prices:
            return self.prices[line]
        # The usage row lacks a line (the Models API was unreachable at start-up): for an
        # estimate, fall back on a line named in the id.
        for key in self.prices:
            if not key.startswith("claude") and re.search(rf"\b{re.escape(key)}\b", model):
                return self.prices[key]
        return None


@dataclass
class Totals:
    replies: int = 0
    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    unpriced: bool = False
    web_searches: int = 0
    web_fetches: int = 0

    def add(self, other: Totals) -> None:
        self.web_searches += other.web_searches
        self.web_fetches += other.web_fetches
        self.replies += other.replies
        self.input_tokens += other.input_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.unpriced = self.unpriced or other.unpriced


def parse_since(text: str) -> float | None:
    """'7d', '24h', '30m', '2w' → seconds; 'all' → None."""
    if text.strip().lower() == "all":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text.lower())
    if not match:
        raise UsageError(f"--since must look like 7d, 24h, 30m, 2w or all, got {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def cost_of(totals: Totals, price: tuple[float, float] | None) -> float:
    if price is None:
        return 0.0
    price_in, price_out = price
    return (
        totals.input_tokens * price_in
        + totals.cache_creation_input_tokens * price_in * CACHE_WRITE_FACTOR
        + totals.cache_read_input_tokens * price_in * CACHE_READ_FACTOR
        + totals.output_tokens * price_out
    ) / 1_000_000


def summarise(
    source: str,
    *,
    since: float | None,
    by: str,
    prices: PriceTable,
    now: float | None = None,
    web_search_price: float = WEB_SEARCH_PER_1000,
) -> dict[str, Totals]:
    """Totals per group (channel, user, model or team) since `since` seconds ago, from
    `source`: the SQLite file's path or the PostgreSQL URL."""
    if by not in GROUPS:
        raise UsageError(f"--by must be one of {', '.join(GROUPS)}, got {by!r}")
    cutoff = 0.0 if since is None else (now or time.time()) - since
    column = GROUPS[by]
    with reading(source) as db:
        if not db.has_table("usage"):
            return {}
        rows = db.rows(
            f"SELECT COALESCE({column}, '?'), model, line, COUNT(*), SUM(input_tokens),"
            " SUM(cache_creation_input_tokens), SUM(cache_read_input_tokens),"
            " SUM(output_tokens), SUM(web_search_requests), SUM(web_fetch_requests)"
            " FROM usage WHERE created_at >= ?"
            f" GROUP BY {column}, model, line",
            [cutoff],
        )
    groups: dict[str, Totals] = {}
    for key, model, line, count, inp, write, read, out, searches, fetches in rows:
        part = Totals(count, inp or 0, write or 0, read or 0, out or 0)
        part.web_searches, part.web_fetches = searches or 0, fetches or 0
        groups.setdefault(str(key), Totals()).add(
            priced(part, model, line, prices, web_search_price)
        )
    return groups


def priced(
    part: Totals,
    model: str | None,
    line: str | None,
    prices: PriceTable,
    web_search_price: float = WEB_SEARCH_PER_1000,
) -> Totals:
    """`part` (one model's replies) with its estimated cost filled in."""
    price = prices.lookup(model, line)
    part.cost = cost_of(part, price) + part.web_searches * web_search_price / 1000
    part.unpriced = price is None and part.replies > 0
    return part


def totals_of(
    sums: Iterable[UsageTotal], prices: PriceTable, web_search_price: float = WEB_SEARCH_PER_1000
) -> Totals:
    """The store's per-model sums (`Store.usage_totals`) as one priced total: what a person's
    Home tab, `/claude usage` and the spend limits count."""
    total = Totals()
    for s in sums:
        part = Totals(
            s.replies,
            s.input_tokens,
            s.cache_creation_input_tokens,
            s.cache_read_input_tokens,
            s.output_tokens,
        )
        part.web_searches = s.web_search_requests
        total.add(priced(part, s.model, s.line, prices, web_search_price))
    return total


def render(groups: dict[str, Totals], *, by: str, since_text: str) -> str:
    """A plain-text table, biggest cost first, with a total row."""
    if not groups:
        return f"No replies recorded ({since_text})."
    header = (
        by,
        "replies",
        "input",
        "cache write",
        "cache read",
        "output",
        "searches",
        "fetches",
        "est. USD",
    )
    total = Totals()
    body = []
    for key, totals in sorted(groups.items(), key=lambda kv: (-kv[1].cost, kv[0])):
        total.add(totals)
        body.append(_row(key, totals))
    lines = [header, *body, _row("total", total)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    out = [fmt(header), fmt(["-" * w for w in widths])]
    out.extend(fmt(row) for row in body)
    out.append(fmt(["-" * w for w in widths]))
    out.append(fmt(lines[-1]))
    note = f"Replies {since_text}; cost is an estimate from list prices"
    if total.unpriced:
        note += " (* = a model without a known price, counted as 0: set SLACKBOT_PRICES)"
    out.append(note + ".")
    return "\n".join(out)


def _row(key: str, totals: Totals) -> tuple[str, ...]:
    cost = f"{totals.cost:,.4f}" + ("*" if totals.unpriced else "")
    return (
        key,
        f"{totals.replies:,}",
        f"{totals.input_tokens:,}",
        f"{totals.cache_creation_input_tokens:,}",
        f"{totals.cache_read_input_tokens:,}",
        f"{totals.output_tokens:,}",
        f"{totals.web_searches:,}",
        f"{totals.web_fetches:,}",
        cost,
    )


def report(
    source: str,
    *,
    since_text: str,
    by: str,
    overrides: Iterable[tuple[str, float, float]] = (),
    web_search_price: float | None = None,
) -> str:
    since = parse_since(since_text)
    groups = summarise(
        source,
        since=since,
        by=by,
        prices=PriceTable.with_overrides(overrides),
        web_search_price=WEB_SEARCH_PER_1000 if web_search_price is None else web_search_price,
    )
    label = "of all time" if since is None else f"of the last {since_text}"
    return render(groups, by=by, since_text=label)
