"""Every livekit-agents detail the guard relies on that no public API states, in one place.

livekit-agents 1.8.9 has no public way to (a) ask whether a session has started, or
(b) close it with ``CloseReason.ERROR`` and the error attached: ``aclose()`` and
``shutdown()`` always close as ``USER_INITIATED``. livekit's own error path, and RoomIO
when the participant leaves, use the private ``AgentSession._close_soon(reason=...,
error=...)``, which makes it the least fragile choice.

(c) Where a model's failure enters the session: ``AgentActivity._on_error`` emits the
session's public ``"error"`` event, then calls ``AgentSession._on_error(error)``, the
built-in counter that closes the session. The guard takes that call over
(:func:`intercept_errors`): it sees exactly the errors livekit's models report (not
``session.emit("error", ...)`` from application code), after the application's own
listeners have seen them untouched, and the built-in counter never closes a guarded
session. Without the seam, the guard falls back to a first-registered ``"error"``
listener that sets ``recoverable=True`` on the shared error object.

(d) No request after the decision: the activity reads ``agent.llm_node`` per
generation, so an instance attribute shadowing it (:func:`silence_llm`) keeps a reply
started during the farewell from reaching the provider that failed, for this session
only (models may be shared between sessions; agents are not).

(e) A farewell cut by the deadline must not hold the close: livekit waits, after
interrupting a speech, for the audio output to report the segment finished, and only
gives up after its own 5 s. :func:`finish_playback` reports it on behalf of an output
that does not (public ``AudioOutput.on_playback_finished``, with the private pending
count to avoid over-reporting).

Other upstream behaviour the guard's design rests on (public, but easy to miss):

* ``error`` listeners run synchronously, in registration order, before
  ``AgentSession._on_error``, with the same mutable error model; a ``TypeError``
  escaping one breaks the model's retry loop (``rtc.EventEmitter.emit`` re-raises it).
* An error event is emitted for every retry attempt (``recoverable=True``), the final
  one ``recoverable=False``; ``_on_error`` ignores recoverable ones.
* ``say(..., audio=frames)`` never touches TTS; a failed TTS ``say`` resolves its handle
  as if it had played; ``wait_for_playout`` is shielded.
* ``Agent(tts=...)`` overrides the session's TTS for that agent (:func:`speaking_tts`).
* ``generate_reply()`` keeps none of its arguments where a listener can read them (the
  ``SpeechHandle`` does not), and its ``user_input`` joins the agent's chat context as
  soon as the reply is scheduled: the watchdog records an app's arguments as the call
  returns (:func:`record_replies`) and retries a stalled reply with them, minus the
  ``user_input`` already in the context.
* ``rtc.EventEmitter.emit`` calls ``inspect.signature()`` on every listener at every
  emit, to pass it only the arguments it takes: tens of microseconds for a bound method,
  as much as livekit's own handling of an error event. :func:`listener` hands it a precomputed
  signature instead, which ``inspect.signature()`` returns at once (PEP 362's
  ``__signature__``).

``tests/test_seams.py`` fails if upstream renames or reshapes any private attribute used
here, and each has a public fallback, so a changed upstream degrades (a
``USER_INITIATED`` close) instead of breaking (no close at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any

from livekit.agents import AgentSession, CloseReason, tts
from livekit.agents.voice import SpeechHandle

from agent_guard._log import log

__all__ = [
    "SEAMS_OK",
    "close_with_error",
    "finish_playback",
    "has_started",
    "intercept_errors",
    "is_closing",
    "listener",
    "model_of",
    "record_replies",
    "silence_llm",
    "speaking_tts",
]


def _close_soon_supported() -> bool:
    fn = getattr(AgentSession, "_close_soon", None)
    if fn is None:
        return False
    params = inspect.signature(fn).parameters
    return {"reason", "error", "drain"} <= params.keys()


#: Whether this livekit-agents exposes the private seams the guard prefers.
SEAMS_OK: bool = _close_soon_supported() and hasattr(AgentSession, "_is_closing")


def _on_error_supported() -> bool:
    fn = getattr(AgentSession, "_on_error", None)
    return callable(fn) and list(inspect.signature(fn).parameters) == ["self", "error"]


#: Whether the session's error entry point can be taken over (see (c) above).
INTERCEPT_OK: bool = _on_error_supported()


def intercept_errors(session: AgentSession[Any], handler: Callable[[Any], None]) -> bool:
    """Route the errors livekit's models report to ``handler`` instead of the counter.

    ``handler`` gets livekit's error model, untouched (its real ``recoverable`` flag),
    inside the model's task, after the session's ``"error"`` listeners. It must not
    raise. Returns ``False`` (and changes nothing) when this livekit has no such seam.
    """
    if not INTERCEPT_OK:
        return False
    # An instance attribute: only this session, and AgentActivity calls it through
    # self._session._on_error, which finds it first.
    session._on_error = handler  # type: ignore[method-assign, assignment]
    return True


def record_replies(
    session: AgentSession[Any], record: Callable[[SpeechHandle, dict[str, Any]], None]
) -> None:
    """Call ``record(handle, kwargs)`` after each ``session.generate_reply(**kwargs)``.

    An instance attribute shadowing the class's method, for this session only. ``record``
    runs after livekit returned the handle and must not raise into the app's call.
    """
    original = session.generate_reply

    @functools.wraps(original)
    def generate_reply(*args: Any, **kwargs: Any) -> SpeechHandle:
        handle = original(*args, **kwargs)
        if not args:  # keyword-only in livekit; anything else is not ours to replay
            with contextlib.suppress(Exception):
                record(handle, kwargs)
        return handle

    session.generate_reply = generate_reply  # type: ignore[method-assign]


class listener:
    """``callback`` as a livekit event listener that is cheap to dispatch to (module doc).

    Called with the event's one argument, as livekit would call ``callback``.
    """

    __slots__ = ("_callback",)
    __signature__ = inspect.Signature(
        [inspect.Parameter("event", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    )

    def __init__(self, callback: Callable[[Any], object]) -> None:
        self._callback = callback

    def __call__(self, event: Any) -> None:
        self._callback(event)


def model_of(session: AgentSession[Any], kind: str) -> Any:
    """The model of ``kind`` (``"llm"``, ``"stt"``, ``"tts"``, ``"realtime"``) in use."""
    name = "llm" if kind == "realtime" else kind
    with contextlib.suppress(Exception):
        activity = getattr(session, "_activity", None)
        if activity is not None and (model := getattr(activity, name, None)) is not None:
            return model
    return getattr(session, name, None)


def silence_llm(session: AgentSession[Any]) -> Callable[[], None]:
    """Keep this session's next replies from sending any LLM request; returns the undo.

    The current agent's ``llm_node`` is shadowed by one that produces no text, which
    livekit treats as an empty reply.
    """
    try:
        agent = session.current_agent
    except Exception:
        return _nothing

    def silent(*args: Any, **kwargs: Any) -> str:
        return ""

    agent.llm_node = silent  # type: ignore[method-assign, assignment]

    def undo() -> None:
        if agent.__dict__.get("llm_node") is silent:
            del agent.llm_node

    return undo


def _nothing() -> None:
    return None


def finish_playback(output: Any) -> None:
    """Report every segment ``output`` holds as finished (interrupted).

    For an audio output that did not report it after being cleared: livekit's speech
    (and with it the session's close) waits for that report.
    """
    pending = getattr(output, "_pending_playback_count", None)
    if not isinstance(pending, int):
        pending = 1  # the public API alone: one report; a surplus one is only logged
    for _ in range(pending):
        output.on_playback_finished(playback_position=0.0, interrupted=True)


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
        try:
            session._close_soon(reason=CloseReason.ERROR, error=error, drain=False)
        except Exception as e:
            log.error("agent_guard.close_failed", error_type=type(e).__name__)
            session.shutdown(drain=False)
            return
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
