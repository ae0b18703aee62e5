"""Usage: a row per reply, and `slackbot usage` summing it from the database alone."""

from __future__ import annotations

import sqlite3
import time

import pytest

from fakes.claude import Script
from fakes.harness import CHANNEL, Harness
from slackbot.cli import main
from slackbot.sqlite_store import SqliteStore
from slackbot.store import UsageRecord
from slackbot.usage import PriceTable, Totals, parse_since, report, summarise
from tests.databases import open_at


def rows(db_path: str) -> list[dict]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM usage ORDER BY id")]
    finally:
        conn.close()


def record(**kw) -> UsageRecord:
    base = dict(
        message_id=None, conversation_id=None, team="T1", channel="C1", user_id="U1",
        model="claude-sonnet-4-6", line="sonnet",
    )  # fmt: skip
    return UsageRecord(**{**base, **kw})


async def test_each_reply_writes_a_usage_row(harness: Harness) -> None:
    harness.claude.default = Script(text="An answer of some length.", ttft=0.05)
    first = await harness.mention("hello")
    await harness.settled()
    await harness.mention("more", thread_ts=first["ts"], user="U2")
    await harness.settled()
    harness.claude.default = Script(text="one two three four", stop_reason="end_turn")
    await harness.mention("elsewhere", channel="C2")
    await harness.settled()

    stored = rows(harness.bot.store.path)
    assert len(stored) == 3
    for row, usage in zip(stored, harness.claude.usages, strict=True):
        assert row["input_tokens"] == usage.input_tokens
        assert row["cache_creation_input_tokens"] == usage.cache_creation_input_tokens
        assert row["cache_read_input_tokens"] == usage.cache_read_input_tokens
        assert row["output_tokens"] > 0
        assert row["model"] == harness.claude.requests[0]["model"]
        assert row["stop_reason"] == "end_turn" and row["error"] is None
        assert row["team"] == "T1"
        assert row["seconds"] > 0 and row["first_token_seconds"] is not None
    assert [(r["channel"], r["user_id"]) for r in stored] == [
        (CHANNEL, "U1"),
        (CHANNEL, "U2"),
        ("C2", "U1"),
    ]
    assert stored[1]["cache_read_input_tokens"] > 0
    assert stored[0]["first_token_seconds"] >= 0.05


async def test_a_failed_reply_is_recorded_with_its_error(harness: Harness) -> None:
    harness.claude.fail_next(529)
    await harness.mention("hello")
    await harness.settled()
    (row,) = rows(harness.bot.store.path)
    assert row["error"] == "OverloadedError" and row["output_tokens"] == 0


async def test_usage_is_summed_by_group_and_priced(source: str) -> None:
    path = source
    store = await open_at(path)
    million = 1_000_000
    await store.record_usage(record(input_tokens=million, output_tokens=million))
    await store.record_usage(
        record(user_id="U2", cache_creation_input_tokens=million, cache_read_input_tokens=million)
    )
    await store.record_usage(
        record(channel="C2", model="claude-haiku-4-5", line="haiku", input_tokens=million)
    )
    await store.record_usage(record(model="claude-mystery-1", line=None, output_tokens=10))
    # while the bot holds the database open (WAL), the report reads it
    by_model = summarise(path, since=None, by="model", prices=PriceTable())
    by_user = summarise(path, since=None, by="user", prices=PriceTable())
    by_channel = summarise(path, since=None, by="channel", prices=PriceTable())
    await store.close()

    sonnet = by_model["claude-sonnet-4-6"]
    assert (sonnet.replies, sonnet.input_tokens, sonnet.output_tokens) == (2, million, million)
    assert (sonnet.cache_creation_input_tokens, sonnet.cache_read_input_tokens) == (million,) * 2
    # 3 + 15 for the first; 3 × 1.25 + 3 × 0.1 for the cached one
    assert sonnet.cost == pytest.approx(3 + 15 + 3.75 + 0.3)
    assert by_model["claude-haiku-4-5"].cost == pytest.approx(1.0)
    assert by_model["claude-mystery-1"].unpriced and by_model["claude-mystery-1"].cost == 0
    assert by_user["U1"].replies == 3 and by_user["U2"].cost == pytest.approx(4.05)
    assert by_channel["C2"].input_tokens == million
    total = Totals()
    for group in by_channel.values():
        total.add(group)
    assert total.cost == pytest.approx(18 + 4.05 + 1)


async def test_since_and_price_overrides(tmp_path) -> None:
    path = str(tmp_path / "bot.db")
    store = await SqliteStore.open(path)
    await store.record_usage(record(input_tokens=1_000_000))
    await store.record_usage(record(input_tokens=2_000_000))
    await store.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE usage SET created_at=? WHERE id=1", [time.time() - 10 * 86400])
    conn.close()

    recent = summarise(path, since=parse_since("7d"), by="model", prices=PriceTable())
    assert recent["claude-sonnet-4-6"].input_tokens == 2_000_000
    everything = summarise(path, since=None, by="model", prices=PriceTable())
    assert everything["claude-sonnet-4-6"].input_tokens == 3_000_000
    cheap = PriceTable.with_overrides([("claude-sonnet-4-6", 1.0, 2.0)])
    assert summarise(path, since=None, by="model", prices=cheap)[
        "claude-sonnet-4-6"
    ].cost == pytest.approx(3.0)
    assert PriceTable.with_overrides([("sonnet", 2.0, 4.0)]).lookup("claude-sonnet-9", None) == (
        2.0,
        4.0,
    )
    text = report(path, since_text="all", by="model")
    assert "claude-sonnet-4-6" in text and "9.0000" in text and "total" in text


def test_parse_since() -> None:
    assert parse_since("7d") == 7 * 86400 and parse_since("24h") == 86400
    assert parse_since("30m") == 1800 and parse_since("all") is None


async def test_cli_usage_needs_no_credentials(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "bot.db")
    store = await SqliteStore.open(path)
    await store.record_usage(record(input_tokens=1234, output_tokens=56))
    await store.close()
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACKBOT_DB", path)
    monkeypatch.setenv("SLACKBOT_PRICES", '{"sonnet": [10, 100]}')

    assert main(["usage", "--by", "user", "--since", "1d"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["user", "replies", "input"] and "est. USD" in lines[0]
    assert any(line.startswith("U1") and "1,234" in line and "0.0179" in line for line in lines)

    assert main(["usage", "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err
    assert main(["usage", "--db", str(tmp_path / "missing.db")]) == 2
    assert "no database" in capsys.readouterr().err


async def test_web_searches_are_shown_and_priced(tmp_path) -> None:
    path = str(tmp_path / "u.db")
    store = await SqliteStore.open(path)
    await store.record_usage(record(web_search_requests=3, web_fetch_requests=2))
    await store.record_usage(record(channel="C2"))
    await store.close()
    totals = summarise(path, since=None, by="channel", prices=PriceTable({}))
    assert (totals["C1"].web_searches, totals["C1"].web_fetches) == (3, 2)
    assert totals["C1"].cost == pytest.approx(3 * 10 / 1000)  # $10 per 1,000, tokens unpriced
    text = report(path, since_text="all", by="channel", web_search_price=20)
    header, _, first, *_ = text.splitlines()
    assert "searches" in header and "fetches" in header
    assert first.split()[:1] == ["C1"] and first.split()[-3:-1] == ["3", "2"]
    assert first.split()[-1] == "0.0600"
