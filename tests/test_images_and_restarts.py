"""Images through the whole bot, and what a restart leaves behind."""

from __future__ import annotations

import asyncio
import base64
import signal

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, Harness, conversation, start_harness
from fakes.slack import FakeSlack
from slackbot.conversation import CHECKPOINT_SECONDS
from tests.images import decode, encode, gradient
from tests.processes import bot_process, mention_over_http


async def test_attached_image_becomes_a_base64_block_and_stays_in_history(
    harness: Harness,
) -> None:
    big = harness.slack.add_file(
        name="chart.png", mimetype="image/png", content=encode(gradient(3000, 1500), "PNG")
    )
    pdf = harness.slack.add_file(name="report.pdf", mimetype="application/pdf", content=b"%PDF-1")
    harness.claude.default = Script(text="A gradient.")
    mention = await harness.mention("what is this?", files=[big, pdf])
    await harness.settled()

    content = conversation(harness.claude.requests[-1])[0]["content"]
    image_block, text_block = content
    assert image_block["type"] == "image"
    assert image_block["source"]["media_type"] == "image/png"
    assert max(decode(image_block["source"]["data"]).size) == 1568
    assert text_block["text"].startswith("Alice: what is this?")
    assert "report.pdf" in text_block["text"]
    # the download carried the bot token; the unsupported file got a note in the reply
    assert all(d.had_auth_header for d in harness.slack.downloads)
    [reply] = harness.texts(CHANNEL, mention["ts"])
    assert reply.startswith("A gradient.") and "report.pdf" in reply

    # a later mention re-sends the image from the store without downloading it again
    downloads = len(harness.slack.downloads)
    await harness.mention("and now?", thread_ts=mention["ts"])
    await harness.settled()
    first_turn = conversation(harness.claude.requests[-1])[0]["content"]
    assert first_turn[0] == image_block
    assert len(harness.slack.downloads) == downloads


async def test_file_shared_as_check_file_info_is_looked_up(harness: Harness) -> None:
    file = harness.slack.add_file(
        name="pic.jpg", mimetype="image/jpeg", content=encode(gradient(64, 64), "JPEG")
    )
    stub = {"id": file["id"], "file_access": "check_file_info", "mode": "hosted"}
    await harness.mention("look", files=[stub])
    await harness.settled()
    assert harness.slack.calls_to("files.info")
    block = conversation(harness.claude.requests[-1])[0]["content"][0]
    assert block["type"] == "image" and base64.b64decode(block["source"]["data"])


async def test_kill_9_mid_reply_then_restart(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """The real bot process is SIGKILLed while streaming; the next start closes the reply,
    does not answer the redelivered event again, and the thread carries on."""
    claude.default = Script(text="Half of an answer that never ends. " * 100, tokens_per_second=40)
    async with bot_process(slack, claude, db_path) as (proc, port):
        message, payload = await mention_over_http(slack, port, "long question")
        # wait until the reply has been streaming long enough to be checkpointed
        await slack.wait_for(
            lambda: (
                len(slack.calls_to("chat.update")) >= 3
                and any(
                    "Half of" in slack.final_text(CHANNEL, m["ts"])
                    for m in slack.bot_messages(CHANNEL, message["ts"])
                )
            ),
            timeout=10,
        )
        await asyncio.sleep(CHECKPOINT_SECONDS + 0.5)
        proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    claude.default = Script(text="Fresh answer.")
    second, runner = await start_harness(slack, claude, db_path)
    try:
        [reply] = slack.bot_messages(CHANNEL, message["ts"])
        text = slack.final_text(CHANNEL, reply["ts"])
        assert text.startswith("Half of an answer")
        assert "Thinking" not in text and "restarted" in text
        # Slack redelivers the original event after the restart: not answered twice
        requests = len(claude.requests)
        response = await second.post_event(payload, retry_num=1)
        assert response.status == 200
        second.expected += 1
        await second.settled()
        assert len(claude.requests) == requests
        # and the conversation carries on, with the partial reply in its history
        await second.mention("again please", thread_ts=message["ts"])
        await second.settled()
        assert second.texts(CHANNEL, message["ts"])[-1] == "Fresh answer."
        roles = [m["role"] for m in conversation(claude.requests[-1])]
        assert roles == ["user", "assistant", "user"]
    finally:
        await second.settled()
        await runner.cleanup()
        await second.close()
        await second.bot.close()


async def test_workspace_edit_budget_holds_under_tier3(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """Many replies streaming at once stay within the budget, and every final text lands."""
    slack.chat_update_per_minute = 20
    slack.minute_seconds = 2.0  # Tier 3 scaled: 20 updates per 2 s
    claude.default = Script(text="word " * 200, tokens_per_second=400)
    h, runner = await start_harness(
        slack, claude, db_path, edit_budget_per_minute=300.0, edit_burst=3, edit_interval=0.05
    )
    try:
        mentions = [await h.mention(f"q{i}", channel=f"C{i}") for i in range(12)]
        await h.settled(timeout=40)
        for i, m in enumerate(mentions):
            assert [t.strip() for t in h.texts(f"C{i}", m["ts"])] == [("word " * 200).strip()]
    finally:
        await runner.cleanup()
        await h.close()
        await h.bot.close()


async def test_sigterm_lets_the_reply_in_flight_finish(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="A complete answer, " * 10, tokens_per_second=30)
    async with bot_process(slack, claude, db_path) as (proc, port):
        message, _ = await mention_over_http(slack, port, "question")
        await slack.wait_for(lambda: claude.requests, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    [reply] = slack.bot_messages(CHANNEL, message["ts"])
    assert slack.final_text(CHANNEL, reply["ts"]) == "A complete answer, " * 10


async def test_a_reply_killed_mid_stream_keeps_all_it_had_shown(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """What people saw before the crash is still there after the restart closes the reply."""
    claude.default = Script(text="Word by word, a long answer. " * 200, tokens_per_second=40)
    async with bot_process(slack, claude, db_path) as (proc, port):
        message, _ = await mention_over_http(slack, port, "long question")
        await slack.wait_for(lambda: len(slack.calls_to("chat.update")) >= 3, timeout=10)
        edits = len(slack.calls_to("chat.update"))
        await slack.wait_for(lambda: len(slack.calls_to("chat.update")) > edits, timeout=5)
        await asyncio.sleep(0.5)  # an edit just landed; the next is ~1 s after it
        [reply] = slack.bot_messages(CHANNEL, message["ts"])
        seen = slack.final_text(CHANNEL, reply["ts"]).strip()
        proc.kill()
        await proc.wait()
    assert seen.startswith("Word by word")
    second, runner = await start_harness(slack, claude, db_path)
    try:
        closed = slack.final_text(CHANNEL, reply["ts"])
        assert "restarted" in closed
        assert closed.startswith(seen), (seen[-80:], closed[:200])
    finally:
        await runner.cleanup()
        await second.close()
        await second.bot.close()
