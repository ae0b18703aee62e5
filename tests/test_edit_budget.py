"""The shared chat.update budget: rate, burst, priority and fairness."""

from __future__ import annotations

import asyncio

from slackbot.edit_budget import FIRST_TEXT, INTERMEDIATE, EditBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_burst_then_rate() -> None:
    budget = EditBudget(per_minute=600, burst=3)  # 10/s
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(8):
        await budget.acquire(INTERMEDIATE, 0.0)
    elapsed = loop.time() - started
    # 3 from the burst, then 5 more at 10/s: about 0.5 s
    assert 0.4 <= elapsed < 1.5


async def test_first_text_beats_intermediate_and_oldest_goes_first() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=1, clock=clock)
    await budget.acquire(INTERMEDIATE, 0.0)  # empty the bucket
    order: list[str] = []

    async def want(name: str, priority: int, last_edit: float) -> None:
        await budget.acquire(priority, last_edit)
        order.append(name)

    tasks = [
        asyncio.create_task(want("recent", INTERMEDIATE, 5.0)),
        asyncio.create_task(want("stale", INTERMEDIATE, 1.0)),
        asyncio.create_task(want("first", FIRST_TEXT, 9.0)),
    ]
    await asyncio.sleep(0)
    for _ in range(3):
        clock.now += 1.0
        budget._dispatch()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["first", "stale", "recent"]


async def test_finals_are_charged_but_never_wait() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=2, clock=clock)
    for _ in range(10):
        budget.charge_final()  # never blocks
    # the debt is capped at one burst: an intermediate edit waits ~3 s, not ~9 s
    waiter = asyncio.create_task(budget.acquire(INTERMEDIATE, 0.0))
    await asyncio.sleep(0)
    clock.now = 2.9
    budget._dispatch()
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.now = 3.0
    budget._dispatch()
    await asyncio.sleep(0)
    assert waiter.done()


async def test_hold_pauses_intermediate_edits_for_retry_after() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=5, clock=clock)
    budget.hold(10.0)  # Slack: Retry-After 10
    waiter = asyncio.create_task(budget.acquire(INTERMEDIATE, 0.0))
    await asyncio.sleep(0)
    clock.now = 9.9
    budget._dispatch()
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.now = 10.0
    budget._dispatch()
    await asyncio.sleep(0)
    assert waiter.done()


async def test_progress_edits_pause_while_the_finals_in_flight_need_the_budget() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=10, burst=2, clock=clock)
    for _ in range(9):  # more replies in flight than the minute's budget leaves for progress
        budget.reply_started()
    waiter = asyncio.create_task(budget.acquire(INTERMEDIATE, 0.0))
    await asyncio.sleep(0)
    assert not waiter.done()  # the bucket is full, but its tokens are kept for the finals
    budget.reply_finished()
    await asyncio.sleep(0)
    assert waiter.done()  # eight in flight: progress edits resume
