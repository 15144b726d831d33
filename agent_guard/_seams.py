"""Every livekit-agents detail the guard relies on that no public API states, in one place.

livekit-agents 1.8.9 has no public way to (a) ask whether a session has started, or
(b) close it with ``CloseReason.ERROR`` and the error attached: ``aclose()`` and
``shutdown()`` always close as ``USER_INITIATED``. livekit's own error path, and RoomIO
when the participant leaves, use the private ``AgentSession._close_soon(reason=...,
error=...)``, which makes it the least fragile choice.

Other upstream behaviour the guard's design rests on (public, but easy to miss):

* ``error`` listeners run synchronously, in registration order, before
  ``AgentSession._on_error``, with the same mutable error model; a ``TypeError``
  escaping one breaks the model's retry loop (``rtc.EventEmitter.emit`` re-raises it).
* An error event is emitted for every retry attempt (``recoverable=True``), the final
  one ``recoverable=False``; ``_on_error`` ignores recoverable ones.
* ``say(..., audio=frames)`` never touches TTS; a failed TTS ``say`` resolves its handle
  as if it had played; ``wait_for_playout`` is shielded.
* ``Agent(tts=...)`` overrides the session's TTS for that agent (:func:`speaking_tts`).

``tests/test_seams.py`` fails if upstream renames or reshapes any private attribute used
here, and each has a public fallback, so a changed upstream degrades (a
``USER_INITIATED`` close) instead of breaking (no close at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

from livekit.agents import AgentSession, CloseReason, tts

from agent_guard._log import log

__all__ = ["SEAMS_OK", "close_with_error", "has_started", "is_closing", "speaking_tts"]


def _close_soon_supported() -> bool:
    fn = getattr(AgentSession, "_close_soon", None)
    if fn is None:
        return False
    params = inspect.signature(fn).parameters
    return {"reason", "error", "drain"} <= params.keys()


#: Whether this livekit-agents exposes the private seams the guard prefers.
SEAMS_OK: bool = _close_soon_supported() and hasattr(AgentSession, "_is_closing")


def has_started(session: AgentSession[Any]) -> bool:
    """Whether ``session.start()`` was already called (no public flag)."""
    return bool(getattr(session, "_started", False))


def is_closing(session: AgentSession[Any]) -> bool:
    """Whether a close is already under way (``_closing_task`` is set synchronously)."""
    check = getattr(session, "_is_closing", None)
    return bool(check()) if callable(check) else False


def speaking_tts(session: AgentSession[Any]) -> tts.TTS[Any] | None:
    """The TTS that speaks for the session's current agent, or ``None``."""
    agent_tts: Any = None
    with contextlib.suppress(Exception):
        agent_tts = session.current_agent.tts
    if isinstance(agent_tts, tts.TTS):
        return agent_tts
    return session.tts


def close_with_error(session: AgentSession[Any], error: Any) -> None:
    """Close ``session`` with ``CloseReason.ERROR`` and ``error`` on the CloseEvent.

    Never waits; a no-op when a close is already under way (``_close_soon`` checks
    ``_closing_task`` itself). ``drain=False``: the farewell has already been played
    or given up on, and anything still queued must not delay teardown.
    """
    if SEAMS_OK:
        before = getattr(session, "_closing_task", None)
        session._close_soon(reason=CloseReason.ERROR, error=error, drain=False)
        task = getattr(session, "_closing_task", None)
        if before is None and isinstance(task, asyncio.Task):
            # _close_soon never clears _closing_task, unlike livekit's own error close:
            # without this, a restarted session would look "closing" for ever and
            # ignore shutdown() and errors.
            def _done(t: asyncio.Task[Any]) -> None:
                if getattr(session, "_closing_task", None) is t:
                    session._closing_task = None

            task.add_done_callback(_done)
        return
    log.warning(
        "agent_guard.close_fallback",
        reason="AgentSession._close_soon is missing or changed; closing as USER_INITIATED",
    )
    session.shutdown(drain=False)
