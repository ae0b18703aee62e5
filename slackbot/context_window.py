"""Fitting a conversation into the model's context window, measured without a round trip.

Every turn carries a token estimate (computed once and stored); each conversation keeps a
calibration ratio learnt from the API's own count of its last request. Estimates decide while a
request is clearly within the window; near the limit `messages.count_tokens` is asked and decides.
The trimming itself (what is dropped, and the stable cut that keeps prompt caching hitting) lives
in `history.fit`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

from slackbot.claude import Claude
from slackbot.history import Budget, Fitted, Trim, estimate_text_tokens, estimate_turn_tokens, fit
from slackbot.models import ModelLimits
from slackbot.store import BudgetState, Turn

log = logging.getLogger(__name__)

#: Above this share of the token budget (by estimate), the API counts the request first.
NEAR_LIMIT = 0.85
#: Kept free in the window besides `max_tokens`: the count-tokens endpoint is an estimate too.
SAFETY_SHARE = 0.02
SAFETY_MIN_TOKENS = 256
#: Calibration ratios outside this range are taken for a glitch and clamped.
RATIO_RANGE = (0.25, 4.0)


def calibration(actual: int, estimated: int) -> float:
    """The API's count over our estimate, clamped so one odd reading can't skew the budget."""
    low, high = RATIO_RANGE
    return min(high, max(low, actual / max(1, estimated)))


async def with_estimates(turns: Sequence[Turn]) -> tuple[list[Turn], dict[int, int]]:
    """The turns with their token estimates, and the estimates that were missing (computed
    off the event loop) for the caller to store once the reply is under way."""
    missing = [turn for turn in turns if turn.tokens is None]
    if not missing:
        return list(turns), {}
    if any(turn.images for turn in missing):  # images are decoded to measure them
        estimates = await asyncio.to_thread(
            lambda: {turn.id: estimate_turn_tokens(turn) for turn in missing}
        )
    else:  # text is only measured: cheaper than a hop to another thread
        estimates = {turn.id: estimate_turn_tokens(turn) for turn in missing}
    turns = [dataclasses.replace(t, tokens=estimates.get(t.id, t.tokens)) for t in turns]
    return turns, estimates


def budget_for(claude: Claude, limits: ModelLimits, ratio: float | None) -> Budget:
    window = limits.max_input_tokens
    margin = max(SAFETY_MIN_TOKENS, int(window * SAFETY_SHARE))
    return Budget(
        tokens=max(1, window - claude.max_tokens - margin),
        fixed_tokens=estimate_text_tokens(claude.system),
        ratio=ratio or 1.0,
    )


async def fit_to_window(
    claude: Claude, limits: ModelLimits, turns: list[Turn], state: BudgetState
) -> tuple[Fitted, float]:
    """The turns that fit the window, and the calibration ratio they were measured with."""
    budget = budget_for(claude, limits, state.token_ratio)
    fitted = fit(turns, budget, Trim(state.kept_from_id, state.images_from_id))
    if fitted.tokens(budget.ratio) > NEAR_LIMIT * budget.tokens:
        counted = await claude.count_tokens(fitted.messages())
        if counted:
            budget = dataclasses.replace(budget, ratio=calibration(counted, fitted.raw_tokens))
            if counted > budget.tokens:
                fitted = fit(turns, budget, fitted.trim)
    if fitted.trim != Trim(state.kept_from_id, state.images_from_id):
        log.info(
            "conversation cut to fit the window: about %d of %d tokens",
            fitted.tokens(budget.ratio),
            budget.tokens,
        )
    return fitted, budget.ratio
