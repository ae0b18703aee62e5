"""The bot's Prometheus metrics, served at `GET /metrics`.

Every metric object lives here, in a registry of one bot's own (not prometheus-client's global
default): two bots in one process (the tests run several) count apart, and nothing that a
library registers globally appears beside ours. The modules that know a fact record it with one
call (a reply's end in `conversation`, a rate limit in `slack_calls`, an edit's wait in
`edit_budget`); this module only turns those facts into series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from slackbot.stream_events import StreamResult

#: Seconds from the placeholder to the answer's first visible text: the model's time to first
#: token plus what the bot adds (history, Slack's edit).
FIRST_TEXT_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
#: Seconds from the placeholder to the final text: long answers, tool loops.
REPLY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: The API's usage fields, by the name the `kind` label gives them.
TOKEN_KINDS = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_creation_input_tokens": "cache_write",
    "cache_read_input_tokens": "cache_read",
}
#: `edit_budget`'s priorities, by the name the `priority` label gives them.
PRIORITIES = {-1: "final", 0: "first_text", 1: "progress"}

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One bot's metrics and the registry `/metrics` serves them from."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.replies = Counter(
            "slackbot_replies",
            "Replies finished, by outcome: done, incomplete (an error or a cut-off stream), "
            "refused, stopped (a person pressed Stop), or not_posted (Slack took no "
            "placeholder: nowhere to answer).",
            ["outcome"],
            registry=registry,
        )
        self.first_text_seconds = Histogram(
            "slackbot_first_text_seconds",
            "Seconds from a reply's placeholder to its first answer text visible in Slack.",
            buckets=FIRST_TEXT_BUCKETS,
            registry=registry,
        )
        self.reply_seconds = Histogram(
            "slackbot_reply_seconds",
            "Seconds from a reply's placeholder to its final text in Slack.",
            buckets=REPLY_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "slackbot_tokens",
            "Claude tokens of the bot's replies, by kind: input, output, cache_write, cache_read.",
            ["kind"],
            registry=registry,
        )
        self.claude_errors = Counter(
            "slackbot_claude_errors",
            "Replies that Claude's API failed (after the SDK's retries), by exception type.",
            ["type"],
            registry=registry,
        )
        self.slack_ratelimited = Counter(
            "slackbot_slack_ratelimited",
            "Slack Web API answers `ratelimited` (HTTP 429), by method.",
            ["method"],
            registry=registry,
        )
        self.budget_waits = Counter(
            "slackbot_edit_budget_waits",
            "Edits that waited for the workspace's chat.update budget, by priority: final, "
            "first_text, progress.",
            ["priority"],
            registry=registry,
        )
        self.replies_in_flight = Gauge(
            "slackbot_replies_in_flight",
            "Replies with a placeholder in Slack and no final text yet.",
            registry=registry,
        )
        self.events_deduplicated = Counter(
            "slackbot_events_deduplicated",
            "Deliveries not answered because the message was taken before (a redelivered "
            "event, or one post under two events).",
            registry=registry,
        )

    def reply_closed(
        self,
        outcome: str,
        result: StreamResult,
        *,
        started_at: float | None,
        first_text_at: float | None,
        ended_at: float,
    ) -> None:
        """A reply ended (`ended_at`, on the monotonic clock like the others): its outcome,
        its timings, its tokens and, if Claude failed it, the error's type."""
        self.replies.labels(outcome).inc()
        if started_at is not None:
            self.reply_seconds.observe(max(ended_at - started_at, 0.0))
            if first_text_at is not None:
                self.first_text_seconds.observe(max(first_text_at - started_at, 0.0))
        for field, kind in TOKEN_KINDS.items():
            count = result.usage.get(field, 0)
            if count:
                self.tokens.labels(kind).inc(count)
        if result.error is not None:
            self.claude_errors.labels(type(result.error).__name__).inc()

    def slack_rate_limited(self, method: str) -> None:
        self.slack_ratelimited.labels(method).inc()

    def budget_waited(self, priority: int) -> None:
        self.budget_waits.labels(PRIORITIES.get(priority, str(priority))).inc()

    def count_in_flight(self, count: Callable[[], float]) -> None:
        """Read the replies in flight from `count` at each scrape (nothing to keep in step)."""
        self.replies_in_flight.set_function(count)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (served with `CONTENT_TYPE`)."""
        return generate_latest(self.registry)
