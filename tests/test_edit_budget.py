"""The shared chat.update budget: rate, burst, priority and fairness."""

from __future__ import annotations

import asyncio

from slackbot.edit_budget import FIRST_TEXT, INTERMEDIATE, RECOVERY_SECONDS, EditBudget


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


async def settle(budget: EditBudget, clock: Clock, at: float) -> None:
    """Move the clock to `at` and let the budget hand out what it can."""
    clock.now = at
    budget._dispatch()
    for _ in range(3):
        await asyncio.sleep(0)


async def test_finals_go_at_once_until_slack_refuses_one() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=2, clock=clock)
    for _ in range(5):  # a wave of finals: none waits, each is charged
        await asyncio.wait_for(budget.acquire_final(budget.final_place()), 0.1)
    assert budget.waiting == 0
    budget.hold(3.0, sent_at=0.0)  # one of them was refused
    waiter = asyncio.create_task(budget.acquire_final(budget.final_place()))
    await settle(budget, clock, 2.9)
    assert not waiter.done()  # finals wait their turn now
    await settle(budget, clock, 3.0)
    assert waiter.done()


async def test_after_a_refusal_finals_go_first_in_order_one_per_token() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=5, clock=clock)
    for _ in range(20):  # more in flight than leaves room for progress edits
        budget.reply_started()
    order: list[str] = []

    async def final(name: str, place: int) -> None:
        await budget.acquire_final(place)
        order.append(name)

    async def progress(name: str, priority: int) -> None:
        await budget.acquire(priority, 0.0)
        order.append(name)

    places = [budget.final_place() for _ in range(3)]
    budget.hold(2.0, sent_at=0.0)
    rate = budget.per_minute / 60
    tasks = [
        asyncio.create_task(progress("first text", FIRST_TEXT)),
        asyncio.create_task(final("c", places[2])),
        asyncio.create_task(final("a", places[0])),
        asyncio.create_task(final("b", places[1])),
    ]
    await settle(budget, clock, 1.9)
    assert order == []  # Retry-After is respected
    await settle(budget, clock, 2.0)
    assert order == ["a"]  # one token, to the final that asked first
    await settle(budget, clock, 2.0 + 1 / rate)
    assert order == ["a", "b"]
    await settle(budget, clock, 2.0 + 2 / rate)
    assert order == ["a", "b", "c"]
    for _ in range(20):
        budget.reply_finished()
    await settle(budget, clock, 2.0 + 3 / rate)
    assert order == ["a", "b", "c", "first text"]
    await asyncio.gather(*tasks)


async def test_a_refusal_cuts_the_rate_once_and_it_grows_back() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=5, clock=clock)
    clock.now = 10.0
    budget.hold(1.0, sent_at=9.9)
    cut = budget.per_minute
    assert cut < 60
    budget.hold(1.0, sent_at=9.95)  # sent before the cut: the same burst of refusals
    assert budget.per_minute == cut
    clock.now = 12.0
    budget.hold(1.0, sent_at=11.5)  # sent after it: the budget is still too high
    assert budget.per_minute < cut
    await settle(budget, clock, 13.0 + 10 * RECOVERY_SECONDS)
    assert budget.per_minute == 60


async def test_finals_go_at_once_again_once_the_bucket_has_refilled() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=2, clock=clock)
    budget.hold(1.0)
    await settle(budget, clock, 1.0 + 2.0 * 60 / budget.per_minute)  # full again
    await asyncio.wait_for(budget.acquire_final(budget.final_place()), 0.1)


async def test_an_abandoned_final_leaves_nothing_behind() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=1, clock=clock)
    budget.hold(5.0)
    abandoned = asyncio.create_task(budget.acquire_final(budget.final_place()))
    nxt = asyncio.create_task(budget.acquire_final(budget.final_place()))
    await asyncio.sleep(0)
    assert budget.waiting == 2
    abandoned.cancel()
    await asyncio.sleep(0)
    assert budget.waiting == 1
    await settle(budget, clock, 5.0)
    assert nxt.done() and budget.waiting == 0  # the token went to the next in line
