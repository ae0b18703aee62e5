"""`python -m tests.decode_memory`: two messages full of decompression-amplification PNGs read at
once, in a fresh process, so its memory figures are the reading's alone.

Message A carries eight 7000×7000 single-colour PNGs (~150 kB each, ~200 MB each decoded) and
then a small image; message B, read at the same time, one more of the big ones. The real
`Attachments` downloads them over HTTP from the fake Slack on 127.0.0.1. Prints one JSON object:
per message the names answered with an image and the notes, and the process's RSS in MB before
(`rss_before`), at its peak during the reading (`peak`) and after it (`rss_after`, what stays).
Linux only (`/proc/self/status`, and `/proc/self/clear_refs` to start the peak afresh).
"""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import aiohttp

from fakes.slack import FakeSlack
from slackbot.attachments import Attachments
from tests.images import encode, gradient, solid_png

SIDE = 7000
BIG_IN_A = 8
BIG_IN_B = 1


def memory() -> dict[str, int]:
    """VmRSS and VmHWM (the peak since the last reset) in MB."""
    figures = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) // 1024
    return figures


def reset_peak() -> dict[str, int]:
    """Starts VmHWM afresh from the current RSS, so the peak is the reading's, not the set-up's."""
    Path("/proc/self/clear_refs").write_text("5")
    return memory()


async def main() -> dict[str, Any]:
    big = solid_png(SIDE, SIDE)
    small = encode(gradient(100, 100), "PNG")
    async with FakeSlack() as slack, aiohttp.ClientSession() as session:
        attachments = Attachments(
            session=session, bot_token=slack.bot_token, trusted_hosts=[slack.api_url]
        )
        message_a = [
            slack.add_file(name=f"a{index}.png", mimetype="image/png", content=big)
            for index in range(1, BIG_IN_A + 1)
        ] + [slack.add_file(name="a-small.png", mimetype="image/png", content=small)]
        message_b = [
            slack.add_file(name=f"b{index}.png", mimetype="image/png", content=big)
            for index in range(1, BIG_IN_B + 1)
        ]
        gc.collect()
        before = reset_peak()
        results = await asyncio.gather(
            attachments.read_all(message_a), attachments.read_all(message_b)
        )
        peak = memory()["VmHWM"]
        summary = {
            label: {
                "images": [image.name for image in contents.images],
                "notes": [[note.name, note.text] for note in contents.notes],
            }
            for label, contents in zip("AB", results, strict=True)
        }
        del results
        gc.collect()
        after = memory()["VmRSS"]
    return summary | {"rss_before": before["VmRSS"], "peak": peak, "rss_after": after}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
