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
        """Wait for the tasks in flight, up to `timeout`; returns how many are still running."""
        running = list(self._running)
        if running:
            await asyncio.wait(running, timeout=timeout)
        return sum(1 for task in running if not task.done())

    def __len__(self) -> int:
        return len(self._running)
