"""Files Claude's code execution makes reach the thread: the Files API on one side, Slack's
external upload on the other, both through the real clients against the fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fakes.claude import (
    CodeExecutionResult,
    FakeClaude,
    MadeFile,
    Script,
    ServerToolUse,
    Text,
    current_models,
)
from fakes.harness import CHANNEL
from fakes.slack import FakeSlack
from slackbot.stream_events import output_file_ids
from tests.started import started

ALL_TOOLS = ("web_search", "web_fetch", "code_execution")
CHART = MadeFile("chart.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000, "image/png")
TABLE = MadeFile("totals.csv", b"region,total\nnorth,12\nsouth,30\n", "text/csv")


@pytest.fixture
async def current() -> AsyncIterator[FakeClaude]:
    async with FakeClaude(models=current_models()) as fake:
        yield fake


def ran_code(*files: MadeFile, bash: bool = False) -> Script:
    call = "bash_code_execution" if bash else "code_execution"
    return Script(
        blocks=[
            ServerToolUse(call, {"code": "make_chart()"}),
            CodeExecutionResult(stdout="done\n", files=files, bash=bash),
            Text("Here is the chart of totals by region."),
        ]
    )


async def test_files_made_by_code_execution_are_uploaded_into_the_thread_after_the_answer(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.default = ran_code(CHART, TABLE)
    async with started(slack, current, db_path, tools=ALL_TOOLS) as harness:
        root = await harness.mention("chart the totals please")
        await harness.settled()
        request = current.requests[-1]
        assert "code_execution" in [t["name"] for t in request["tools"]]
        uploads = [u for u in slack.uploads.values() if u["channel"] == CHANNEL]
        assert {u["filename"]: u["data"] for u in uploads} == {
            "chart.png": CHART.data,
            "totals.csv": TABLE.data,
        }
        assert all(u["thread_ts"] == root["ts"] for u in uploads)
        # The answer comes first: its final edit is made before the files are shared.
        [answer, *shared] = harness.replies(CHANNEL, root["ts"])
        assert slack.final_text(CHANNEL, answer["ts"]) == "Here is the chart of totals by region."
        assert [m["files"][0]["name"] for m in shared] == ["chart.png", "totals.csv"]
        final_edit = max(c.at for c in slack.calls_to("chat.update"))
        first_share = min(c.at for c in slack.calls_to("files.completeUploadExternal"))
        assert final_edit < first_share
    # The Files API was asked with its beta header; the upload URL never saw the bot token.
    assert current.file_requests and all(
        "files-api-2025-04-14" in beta for _, beta in current.file_requests
    )
    assert all("Authorization" not in u["headers"] for u in uploads)
    assert all(slack.bot_token not in str(u["headers"]) for u in uploads)


async def test_the_bash_tools_result_shape_is_read_too(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.default = ran_code(TABLE, bash=True)
    async with started(slack, current, db_path, tools=ALL_TOOLS) as harness:
        root = await harness.mention("make a csv")
        await harness.settled()
        [upload] = slack.uploads.values()
        assert (upload["filename"], upload["thread_ts"]) == ("totals.csv", root["ts"])


async def test_a_file_over_the_cap_is_named_in_a_note_and_not_downloaded(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.default = ran_code(CHART, TABLE)
    async with started(slack, current, db_path, tools=ALL_TOOLS, max_file_bytes=1000) as harness:
        root = await harness.mention("chart it")
        await harness.settled()
        texts = harness.texts(CHANNEL, root["ts"])
        assert [u["filename"] for u in slack.uploads.values()] == ["totals.csv"]
        assert any("chart.png" in t and "too big" in t for t in texts)
    contents = [p for p, _ in current.file_requests if p.endswith("/content")]
    assert len(contents) == 1  # only the CSV's bytes were fetched


async def test_a_failed_upload_or_a_missing_file_gets_a_note_and_the_answer_stands(
    slack: FakeSlack, current: FakeClaude, db_path: str
) -> None:
    current.default = ran_code(CHART, TABLE)
    slack.fail_next("files.completeUploadExternal", "not_in_channel")
    async with started(slack, current, db_path, tools=ALL_TOOLS) as harness:
        root = await harness.mention("chart it")
        await harness.settled()
        texts = harness.texts(CHANNEL, root["ts"])
        assert texts[0] == "Here is the chart of totals by region."
        assert any("chart.png" in t and "couldn't upload" in t for t in texts)
        shared = [u for u in slack.uploads.values() if u["channel"] == CHANNEL]
        assert [u["filename"] for u in shared] == ["totals.csv"]

        current.default = ran_code(MadeFile("gone.png", b"x", kept=False), TABLE)
        await harness.mention("again", thread_ts=root["ts"])
        await harness.settled()
        texts = harness.texts(CHANNEL, root["ts"])
        assert any("a file" in t and "couldn't upload" in t for t in texts)
        shared = [u for u in slack.uploads.values() if u["channel"] == CHANNEL]
        assert [u["filename"] for u in shared] == ["totals.csv", "totals.csv"]


def test_file_ids_are_found_in_every_result_shape() -> None:
    python = {
        "type": "code_execution_result",
        "stdout": "",
        "content": [{"type": "code_execution_output", "file_id": "file_a"}],
    }
    bash = {
        "type": "bash_code_execution_result",
        "content": [
            {"type": "bash_code_execution_output", "file_id": "file_b"},
            {"type": "bash_code_execution_output", "file_id": "file_a"},
        ],
    }
    assert output_file_ids(python) == ["file_a"]
    assert output_file_ids([bash, python]) == ["file_b", "file_a"]
    assert output_file_ids({"type": "code_execution_tool_result_error"}) == []
