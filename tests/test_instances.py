"""Several real bot processes on one PostgreSQL database behave as one bot: exactly once, in
order, a killed one's reply closed by a live one, a draining one still answering."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import aiohttp

from fakes.claude import FakeClaude, Script, reply_text
from fakes.harness import CHANNEL
from fakes.slack import FakeSlack, event_callback, message_event
from slackbot import messages
from tests.processes import bot_process, deliver_over_http, mention_over_http


@contextlib.asynccontextmanager
async def instances(
    slack: FakeSlack, claude: FakeClaude, db_path: str, url: str, count: int, **settings: str
) -> AsyncIterator[list[tuple[asyncio.subprocess.Process, int]]]:
    async with contextlib.AsyncExitStack() as stack:
        started = [
            await stack.enter_async_context(
                bot_process(slack, claude, db_path, DATABASE_URL=url, **settings)
            )
            for _ in range(count)
        ]
        yield started


def thread_texts(slack: FakeSlack, root_ts: str) -> list[str]:
    return [slack.final_text(CHANNEL, m["ts"]) for m in slack.bot_messages(CHANNEL, root_ts)]


async def test_an_event_reaching_two_instances_is_answered_once(
    slack: FakeSlack, claude: FakeClaude, db_path: str, postgres_url: str
) -> None:
    claude.default = Script(text="Only once.", ttft=0.3)
    async with instances(slack, claude, db_path, postgres_url, 2) as [(_, a), (_, b)]:
        message, payload = await mention_over_http(slack, a, "hello")
        # Slack's retry reaches the other instance, and the same post comes as a second event.
        await deliver_over_http(b, payload, retry_num=1)
        again = event_callback(message_event(message, type="message", channel_type="channel"))
        await deliver_over_http(b, again)
        await slack.wait_for(lambda: thread_texts(slack, message["ts"]) == ["Only once."], 15)
        await asyncio.sleep(1.0)  # time for a duplicate to show itself
        assert thread_texts(slack, message["ts"]) == ["Only once."]
        assert len(claude.requests) == 1


async def test_two_mentions_in_a_thread_on_two_instances_are_answered_in_order(
    slack: FakeSlack, claude: FakeClaude, db_path: str, postgres_url: str
) -> None:
    claude.queue = [
        Script(text="First answer.", ttft=0.8),
        Script(text="Second answer."),
    ]
    async with instances(slack, claude, db_path, postgres_url, 2) as [(_, a), (_, b)]:
        root, _ = await mention_over_http(slack, a, "first question")
        await mention_over_http(slack, b, "second question", thread_ts=root["ts"])
        await slack.wait_for(lambda: len(claude.responses) == 2, 20)
        assert claude.peak_in_flight == 1
        first, second = claude.timeline[0], claude.timeline[1]
        assert second["received_at"] >= first["end_at"]
        # The second saw the thread as it stood: the first answer included.
        assert "First answer." in str(claude.requests[1]["messages"])
        await slack.wait_for(
            lambda: thread_texts(slack, root["ts"]) == ["First answer.", "Second answer."], 10
        )


async def test_a_killed_instances_reply_is_closed_by_a_live_one(
    slack: FakeSlack, claude: FakeClaude, db_path: str, postgres_url: str
) -> None:
    claude.default = Script(text=reply_text(4000), tokens_per_second=40)
    async with instances(
        slack, claude, db_path, postgres_url, 2, SLACKBOT_INSTANCE_TIMEOUT="2"
    ) as [(doomed, a), _]:
        root, _ = await mention_over_http(slack, a, "a long one please")
        [reply] = await slack.wait_for(lambda: slack.bot_messages(CHANNEL, root["ts"]), 15)
        await slack.wait_for(lambda: len(slack.final_text(CHANNEL, reply["ts"])) > 40, 15)
        await asyncio.sleep(2.5)  # past a checkpoint of the streaming text
        doomed.kill()  # kill -9: no drain, no sign-off
        await doomed.wait()
        interrupted = messages.INTERRUPTED.split(".")[0]
        await slack.wait_for(lambda: interrupted in slack.final_text(CHANNEL, reply["ts"]), 12)
        text = slack.final_text(CHANNEL, reply["ts"])
        partial = text[: text.index("_⚠️")].strip()
        assert len(partial) > 40 and reply_text(4000).startswith(partial)  # kept, note after
        assert "Thinking" not in text


async def test_a_draining_instance_answers_503_on_healthz_and_still_answers(
    slack: FakeSlack, claude: FakeClaude, db_path: str, postgres_url: str
) -> None:
    claude.default = Script(text="Slow but whole.", ttft=2.0)
    async with instances(slack, claude, db_path, postgres_url, 1) as [(proc, port)]:
        root, _ = await mention_over_http(slack, port, "take your time")
        await slack.wait_for(lambda: claude.in_flight == 1, 10)
        proc.send_signal(signal.SIGTERM)
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 503:
                        assert (await response.json())["reason"] == "draining"
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("/healthz never said 503 while draining")
        late, _ = await mention_over_http(slack, port, "one more, while you drain")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert thread_texts(slack, root["ts"]) == ["Slow but whole."]
        assert thread_texts(slack, late["ts"]) == ["Slow but whole."]


async def test_a_database_that_drops_mid_reply_loses_no_answer_and_new_mentions_hear_why(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    from fakes.harness import start_harness
    from fakes.postgres_server import running_postgres

    claude.default = Script(text="An answer that arrives anyway.", ttft=1.0)
    with running_postgres() as server:
        url = server.create_database()
        harness, runner = await start_harness(slack, claude, db_path, database_url=url)
        try:
            root = await harness.mention("first")
            await slack.wait_for(lambda: claude.in_flight == 1, 10)
            server.kill()  # the database goes away while Claude is answering
            await slack.wait_for(
                lambda: thread_texts(slack, root["ts"]) == ["An answer that arrives anyway."], 15
            )
            other = await harness.mention("second, while the database is down")
            await slack.wait_for(lambda: thread_texts(slack, other["ts"]) != [], 20)
            [note] = thread_texts(slack, other["ts"])
            assert note == messages.STORE_FAILED
            server.restart()  # and comes back: the bot reconnects by itself
            await slack.wait_for(lambda: claude.in_flight == 0, 10)
            claude.default = Script(text="Back.")
            third = await harness.mention("third")
            await slack.wait_for(lambda: thread_texts(slack, third["ts"]) == ["Back."], 30)
        finally:
            await runner.cleanup()
            await harness.close()
            await harness.bot.close()


async def test_replies_split_across_instances_stay_within_one_workspace_budget(
    slack: FakeSlack, claude: FakeClaude, db_path: str, postgres_url: str
) -> None:
    # Slack's limit, scaled down to a 6-second window so the test is short: 36 edits in any 6
    # seconds. The workspace budget is 4 a second (240/min, burst 4): split between the two
    # instances, at most 24 + bursts and finals' debt (8) = 32 edits in a window; unsplit,
    # each would take the whole budget and together up to 64.
    slack.minute_seconds = 6.0
    slack.chat_update_per_minute = 36
    claude.default = Script(text=reply_text(1200), tokens_per_second=60)
    settings = {"SLACKBOT_EDIT_BUDGET": "240/4", "SLACKBOT_INSTANCE_TIMEOUT": "1.5"}
    async with instances(slack, claude, db_path, postgres_url, 2, **settings) as [(_, a), (_, b)]:
        await asyncio.sleep(1.5)  # each has seen the other's heartbeat and split the budget
        roots = []
        for n in range(10):  # arriving over 6 s, as people do, not all in one instant
            for port in (a, b):
                roots.append((await mention_over_http(slack, port, f"question {n}"))[0])
                await asyncio.sleep(0.3)
        await slack.wait_for(
            lambda: all(thread_texts(slack, root["ts"]) == [reply_text(1200)] for root in roots),
            60,
        )
    refused = [c for c in slack.calls_to("chat.update") if c.error == "ratelimited"]
    assert refused == []
    assert len(slack.calls_to("chat.update")) >= 20  # every reply's final edit, at least


async def test_a_stop_reaching_another_instance_stops_the_reply_within_a_second(
    slack: FakeSlack, claude: FakeClaude, db_path: str, postgres_url: str
) -> None:
    from fakes.slack import agent_session_stopped_event

    claude.default = Script(text=reply_text(4000), tokens_per_second=40)
    async with instances(slack, claude, db_path, postgres_url, 2) as [(_, a), (_, b)]:
        root, _ = await mention_over_http(slack, a, "write an essay")
        [reply] = await slack.wait_for(lambda: slack.bot_messages(CHANNEL, root["ts"]), 15)
        await slack.wait_for(lambda: len(slack.final_text(CHANNEL, reply["ts"])) > 40, 15)
        started = asyncio.get_running_loop().time()
        stop = agent_session_stopped_event(CHANNEL, root["ts"], "U1", [reply["ts"]])
        await deliver_over_http(b, event_callback(stop))  # Slack picked the other instance
        first = claude.timeline[0]
        await slack.wait_for(lambda: first["disconnected_at"] is not None, 3)
        assert asyncio.get_running_loop().time() - started < 1.5
        assert first["end_at"] is None  # the model's stream never ran to its end
        await slack.wait_for(
            lambda: slack.final_text(CHANNEL, reply["ts"]).endswith(messages.STOPPED), 5
        )
