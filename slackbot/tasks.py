"""The turns in flight: held until done, and drained on shutdown.

asyncio keeps only weak references to tasks, and Bolt does not keep the task it runs a listener
in: a turn waiting on its own helpers could be garbage-collected mid-reply. Hosts send SIGTERM
and wait about 30 s, so shutdown lets the replies in flight finish first (`drain`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class TaskKeeper:
    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def drain(self, timeout: float) -> int:
        """Wait for the tasks in flight, and for any started meanwhile (a draining HTTP
        listener still takes events), up to `timeout`; returns how many are still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._running and (left := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._running), timeout=left)
        return len(self._running)

    def __len__(self) -> int:
        return len(self._running)
