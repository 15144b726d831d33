"""Awaiting the guard's close from a ``session.run()`` test.

Under the guard, ``await session.run(user_input=...)`` returns (with no reply) as soon as
the decision is made, before the farewell: the farewell and the close happen after the
run, outside its ``RunResult``. :func:`guarded_close` waits for them and returns one
record to assert on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentSession, CloseEvent, CloseReason

from agent_guard._decide import Decision
from agent_guard._guard import guarded
from agent_guard._playback import FarewellResult, FarewellSource
from agent_guard._verdict import Verdict

__all__ = ["GuardedClose", "guarded_close"]


@dataclass(frozen=True, slots=True)
class GuardedClose:
    """How a guarded session ended.

    Attributes:
        said: The farewell's words (a recording's own words when it stood in for TTS);
            ``None`` if the session closed without one.
        source: Where its sound came from (``"text"`` when the session has no audio
            output), ``None`` without a farewell.
        reason: The ``CloseEvent``'s reason: ``CloseReason.ERROR`` when the guard closed.
        verdict: The verdict the guard closed on; ``None`` if something else closed the
            session first.
        decision: The guard's decision, with its reason (``Reason.TERMINAL``, ...).
        farewell: The full farewell report (timings, completed, timed out).
        close: The session's ``CloseEvent`` (its ``error`` is livekit's error model).
    """

    said: str | None
    source: FarewellSource | None
    reason: CloseReason
    verdict: Verdict | None
    decision: Decision | None
    farewell: FarewellResult | None
    close: CloseEvent


async def guarded_close(session: AgentSession[Any], *, within: float = 30.0) -> GuardedClose:
    """Wait until the guarded ``session`` has closed; say how.

    Example::

        result = await session.run(user_input="Book a table for two")
        closed = await guarded_close(session)
        assert closed.said == "We are out of minutes today."
        assert closed.reason is CloseReason.ERROR

    Raises:
        AssertionError: The session is not guarded, or did not close within ``within``
            seconds (the message lists the verdicts seen so far).
    """
    g = guarded(session)
    if g is None:
        raise AssertionError(
            "the session is not guarded: call agent_guard.guard(session) (or install()) "
            "before session.start()"
        )
    try:
        async with asyncio.timeout(within):
            close = await g.wait_closed()
    except TimeoutError:
        seen = ", ".join(f"{v.kind}/{v.category}" for v in g.verdicts) or "none"
        decided = g.decision.reason.value if g.decision is not None else "no decision"
        raise AssertionError(
            f"the guarded session did not close within {within} s (verdicts: {seen}; {decided})"
        ) from None
    decision = g.decision
    farewell = g.farewell
    return GuardedClose(
        said=farewell.text if farewell is not None else None,
        source=farewell.source if farewell is not None else None,
        reason=close.reason,
        verdict=decision.verdict if decision is not None else None,
        decision=decision,
        farewell=farewell,
        close=close,
    )
