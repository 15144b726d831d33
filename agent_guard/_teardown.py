"""Step 5 of the data path: from a decision to the close, in a fixed order, bounded.

The farewell played, the frontend told concurrently (once the farewell is queued:
its room calls must not hold back the first frame), then one close with
``CloseReason.ERROR`` and the error. The close is in a ``finally``, so nothing before
it can prevent it, and ``policy.farewell_timeout`` bounds the whole way; each step
before it is fenced off on its own, so one failing step does not cost the caller the
farewell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from livekit.agents import AgentSession

from agent_guard import _seams, _signal
from agent_guard._decide import Decision, Reason
from agent_guard._log import log
from agent_guard._message import resolve
from agent_guard._playback import FarewellResult, play
from agent_guard._policy import Farewell, GuardPolicy

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
    published: asyncio.Task[None] | None = None
    signalled = False

    def signal() -> None:
        nonlocal published, signalled
        if not signalled:
            signalled = True
            published = _publish(session, policy, decision, spawn)

    try:
        if callable(policy.error_message):
            # Words from a factory may take a while: the frontend is told meanwhile.
            signal()
        try:
            farewell = await resolve(
                policy,
                verdict,
                final=decision.reason is not Reason.TOLERANCE_EXCEEDED,
                budget=min(policy.hook_timeout, policy.farewell_timeout / 2),
            )
        except Exception as e:
            # Whatever went wrong choosing the words, the caller still hears goodbye.
            log.error("agent_guard.message_failed", error_type=type(e).__name__)
            farewell = Farewell.DEFAULT
        if farewell is not None and not _seams.is_closing(session):
            on_farewell(
                await play(
                    session,
                    farewell,
                    verdict,
                    deadline=deadline,
                    tts_failed=tts_failed,
                    signal=signal,
                )
            )
        signal()  # no farewell, or none could be queued
        if published is not None:
            # Before the agent leaves: apps often end the job on "close".
            await asyncio.wait({published}, timeout=max(0.0, deadline - loop.time()))
    except Exception as e:
        log.error("agent_guard.teardown_failed", error_type=type(e).__name__)
    finally:
        # Exactly once: _close_soon is a no-op when a close is already under way (the
        # user's, or livekit's own).
        _seams.close_with_error(session, trigger)


def _publish(
    session: AgentSession[Any],
    policy: GuardPolicy,
    decision: Decision,
    spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
) -> asyncio.Task[None] | None:
    """Tell the web client, concurrently with the farewell (bounded by its own timeout)."""
    signal = policy.signal
    try:
        if signal is not None and (participant := _signal.participant_of(session)) is not None:
            return spawn(signal.publish(participant, decision.verdict, closing=True))
    except Exception as e:
        log.warning("agent_guard.signal_failed", error_type=type(e).__name__)
    return None
