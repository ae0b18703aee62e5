"""The Tier-2 budget for native streams, the update-only memory, and session titles."""

from __future__ import annotations

from slackbot import messages
from slackbot.config import load_settings
from slackbot.stream_budget import (
    APPENDS_PER_MINUTE,
    START_STOP_PER_MINUTE,
    UPDATE_ONLY_SECONDS,
    StartStopBudget,
    StreamBudgets,
    TeamStreams,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stream_reserves_its_start_and_its_stop() -> None:
    clock = Clock()
    budget = StartStopBudget(per_minute=10, clock=clock)
    assert [budget.reserve() for _ in range(6)] == [True] * 5 + [False]
    # the five stops are owed: nothing more until some streams end and the minute passes
    for _ in range(5):
        budget.stopped()
    clock.now += 30
    assert not budget.reserve(), "ten calls in the last minute"
    clock.now += 31  # the starts left the window; the stops (sent 61 s ago) too
    assert budget.reserve()


def test_a_stream_that_ends_without_a_stop_gives_its_stop_back() -> None:
    clock = Clock()
    budget = StartStopBudget(per_minute=4, clock=clock)
    assert budget.reserve() and budget.reserve()
    assert not budget.reserve()
    budget.release()
    assert not budget.reserve(), "its start still counts"
    clock.now += 61
    assert budget.reserve()


def test_a_rate_limit_holds_new_streams() -> None:
    clock = Clock()
    budget = StartStopBudget(clock=clock)
    budget.hold(5)
    assert not budget.reserve()
    clock.now += 5
    assert budget.reserve()


def test_a_refusal_is_remembered_for_an_hour() -> None:
    clock = Clock()
    streams = TeamStreams("T1", clock=clock)
    streams.refuse("not_allowed")
    assert not streams.native_allowed
    clock.now += UPDATE_ONLY_SECONDS
    assert streams.native_allowed


def test_session_titles_are_one_line_of_at_most_sixty_characters() -> None:
    assert messages.session_title("  plan\n my   trip ") == "plan my trip"
    long = messages.session_title("word " * 40)
    assert len(long) <= 60 and long.endswith("…") and not long.endswith(" …")


def test_the_new_settings_default_to_sessions_and_auto() -> None:
    settings = load_settings(
        {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "ANTHROPIC_API_KEY": "k"}
    )
    assert (settings.dm_mode, settings.streaming) == ("sessions", "auto")
    other = load_settings(
        {
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_APP_TOKEN": "xapp-1",
            "ANTHROPIC_API_KEY": "k",
            "SLACKBOT_DM_MODE": "Conversation",
            "SLACKBOT_STREAMING": "native",
        }
    )
    assert (other.dm_mode, other.streaming) == ("conversation", "native")


def test_instances_on_one_database_split_the_stream_budgets() -> None:
    clock = Clock()
    budgets = StreamBudgets(clock=clock)
    streams = budgets.for_team("T1")
    budgets.split_among(3)
    assert streams.starts.per_minute == START_STOP_PER_MINUTE // 3
    assert budgets.for_team("T2").starts.per_minute == START_STOP_PER_MINUTE // 3
    assert streams.appends.per_minute == APPENDS_PER_MINUTE / 3
