"""Step 5 of the data path: from a decision to the close, in a fixed order, bounded.

No new caller turns, the frontend told (concurrently), the farewell played, then one
close with ``CloseReason.ERROR`` and the error: the close is in a ``finally`` so
nothing before it can prevent it, and ``policy.farewell_timeout`` bounds the whole way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from livekit.agents import AgentSession

from agent_guard import _seams, _signal
from agent_guard._decide import Decision, Reason
from agent_guard._message import resolve
from agent_guard._playback import FarewellResult, choose, play
from agent_guard._policy import GuardPolicy

__all__ = ["teardown"]


async def teardown(
    session: AgentSession[Any],
    decision: Decision,
    trigger: Any,
    *,
    policy: GuardPolicy,
    tts_failed: asyncio.Event,
    spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    on_farewell: Callable[[FarewellResult], None],
) -> None:
    """Say goodbye and close ``session`` with ``trigger`` (livekit's error model).

    Args:
        session: The guarded session.
        decision: What was decided, and why.
        trigger: The error model to put on the ``CloseEvent``.
        policy: The guard's policy.
        tts_failed: Set when TTS fails after the decision.
        spawn: Starts a task the guard keeps track of.
        on_farewell: Receives the farewell's result once it is over.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.farewell_timeout
    verdict = decision.verdict
    try:
        if session.input.audio is not None:
            # No new caller turns while the farewell plays: each would start another
            # generation against the provider that just failed.
            session.input.set_audio_enabled(False)
        published: asyncio.Task[None] | None = None
        signal = policy.signal
        if signal is not None and (participant := _signal.participant_of(session)) is not None:
            # Concurrently with the farewell; bounded by the signal's own timeout.
            published = spawn(signal.publish(participant, verdict, closing=True))
        farewell = resolve(policy, verdict, final=decision.reason is not Reason.TOLERANCE_EXCEEDED)
        if farewell is not None and not _seams.is_closing(session):
            played = choose(session, farewell, verdict)
            on_farewell(await play(session, played, deadline=deadline, tts_failed=tts_failed))
        if published is not None:
            # Before the agent leaves: apps often end the job on "close".
            await asyncio.wait({published}, timeout=max(0.0, deadline - loop.time()))
    finally:
        # Exactly once: _close_soon is a no-op when a close is already under way (the
        # user's, or livekit's own).
        _seams.close_with_error(session, trigger)
