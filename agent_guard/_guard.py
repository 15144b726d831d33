"""Step 1 of the data path, and the thread through the others.

:class:`Guard` is the adapter between one ``AgentSession``'s events and the steps, which
live in their own modules: classify (:mod:`._classify`), the user's hooks
(:mod:`._hooks`), decide (:mod:`._decide`), then farewell and close
(:mod:`._teardown`, :mod:`._message`, :mod:`._playback`). It holds no rule itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import weakref
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from livekit.agents import AgentSession, CloseEvent, ErrorEvent

from agent_guard import _seams, _signal, fleet
from agent_guard._audio import OWN_REQUEST
from agent_guard._classify import classify
from agent_guard._decide import Decider, Decision
from agent_guard._errors import GuardError
from agent_guard._facts import kind_of
from agent_guard._hooks import Hook, HookChain
from agent_guard._log import log, log_closing
from agent_guard._playback import FarewellResult, needs_preparing, prepare
from agent_guard._policy import GuardPolicy
from agent_guard._teardown import teardown
from agent_guard._verdict import Category, Kind, Verdict
from agent_guard._watchdog import Watchdog

__all__ = ["Guard", "guard", "guarded"]

_GUARDS: weakref.WeakKeyDictionary[AgentSession[Any], Guard] = weakref.WeakKeyDictionary()

#: The worker-wide policy set by :func:`agent_guard.install`, used when none is given.
_worker_policy: GuardPolicy | None = None


def set_worker_policy(policy: GuardPolicy | None) -> None:
    global _worker_policy
    _worker_policy = policy


def worker_policy() -> GuardPolicy | None:
    return _worker_policy


def guard(session: AgentSession[Any], policy: GuardPolicy | None = None) -> Guard:
    """Guard ``session``: call once, before ``session.start()``.

    From then on the guard decides, per error kind, whether the session goes on or
    ends; when it ends, the caller hears a farewell (bounded by
    ``policy.farewell_timeout``) and the session closes once, with
    ``CloseReason.ERROR`` and the triggering error on the ``CloseEvent``.

    ``policy=None`` means the worker-wide policy of :func:`agent_guard.install`, or the
    default one. Calling it again for the same session returns the same guard when
    ``policy`` is ``None`` or an equal policy, and raises :class:`GuardError` otherwise.
    """
    if not isinstance(session, AgentSession):
        raise TypeError(f"guard() expects a livekit AgentSession, got {type(session).__name__}")
    if policy is not None and not isinstance(policy, GuardPolicy):
        raise TypeError(f"policy must be a GuardPolicy, got {type(policy).__name__}")
    existing = _GUARDS.get(session)
    if existing is not None:
        if policy is None or policy == existing.policy:
            return existing
        raise GuardError("this session is already guarded with a different policy")
    if _seams.has_started(session):
        # Our listener must run before AgentSession._on_error and before SessionHost's
        # (registered during start()), or the built-in counter closes behind our back.
        raise GuardError("guard() must be called before session.start()")
    g = Guard(session, policy or _worker_policy or GuardPolicy())
    _GUARDS[session] = g
    return g


def guarded(session: AgentSession[Any]) -> Guard | None:
    """The guard of ``session``, or ``None`` if it is not guarded."""
    return _GUARDS.get(session)


class Guard:
    """The handle returned by :func:`guard`. Read-only for users."""

    def __init__(self, session: AgentSession[Any], policy: GuardPolicy) -> None:
        # A weak reference: _GUARDS maps session -> guard weakly, and a strong reference
        # back would keep every guarded session (history, events) alive for ever.
        self._session_ref = weakref.ref(session)
        self._policy = policy
        # The last few verdicts and a count of all: an error storm must not grow memory.
        self._verdicts: collections.deque[Verdict] = collections.deque(
            maxlen=policy.recent_verdicts
        )
        self._counts: dict[tuple[Kind, Category], int] = {}
        self._decider = Decider(policy.tolerances)
        self._hooks = HookChain(policy.hooks, timeout=policy.hook_timeout)
        self._farewell: FarewellResult | None = None
        self._teardown: asyncio.Task[None] | None = None
        # A decision made before start() waits for it: there is nothing to close yet.
        self._deferred: tuple[Decision, Any] | None = None
        self._close_event: CloseEvent | None = None
        self._closed = asyncio.Event()
        # Set when TTS fails after the decision: the synthesised farewell is then inaudible.
        self._tts_failed = asyncio.Event()
        # Undone when a closed session is started again.
        self._undo: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Work ahead of any failure (preload, presynthesis): cancelled on close.
        self._preparing: set[asyncio.Task[None]] = set()
        self._prepared = False
        # Tolerated failures signalled to the frontend: one publication at a time, the
        # latest waiting (a storm of retries is not a storm of room calls).
        self._signalling: asyncio.Task[None] | None = None
        self._signal_next: Verdict | None = None
        if not _seams.intercept_errors(session, self._on_model_error):
            # No seam: a first-registered listener (livekit runs them in order, before the
            # built-in counter) that flips the shared flag.
            session.on("error", _seams.listener(self._on_error_event))
        session.on("close", _seams.listener(self._on_close))
        session.on("agent_state_changed", _seams.listener(self._on_agent_state))
        session.on("user_input_transcribed", _seams.listener(self._on_transcript))
        session.on("speech_created", _seams.listener(self._on_speech_created))
        # watchdog: dead air (failures that raise nothing, or too late) enters through
        # _observe like any failure; None when policy.stall_timeout is None.
        self._watchdog = (
            Watchdog(
                session,
                policy,
                report=self._observe,
                decider=self._decider,
                spawn=self._spawn,
            )
            if policy.stall_timeout is not None
            else None
        )
        # No request to an exhausted account from here on (the fleet breaker).
        fleet.attach(session, policy)

    # -- public, read-only ---------------------------------------------------------

    @property
    def session(self) -> AgentSession[Any]:
        """The guarded session (``RuntimeError`` once it has been garbage-collected)."""
        session = self._session_ref()
        if session is None:
            raise RuntimeError("the guarded AgentSession no longer exists")
        return session

    @property
    def policy(self) -> GuardPolicy:
        return self._policy

    @property
    def verdicts(self) -> tuple[Verdict, ...]:
        """The latest verdicts, oldest first: at most ``policy.recent_verdicts`` of them."""
        return tuple(self._verdicts)

    @property
    def verdict_counts(self) -> Mapping[str, int]:
        """Every verdict so far, counted per ``"<kind>.<category>"`` (``"llm.rate_limited"``)."""
        return {f"{k.value}.{c.value}": n for (k, c), n in sorted(self._counts.items())}

    @property
    def decision(self) -> Decision | None:
        """The decision to close, once made."""
        return self._decider.decision

    @property
    def farewell(self) -> FarewellResult | None:
        """How the farewell went, once it is over (``None`` if none was played)."""
        return self._farewell

    @property
    def close_event(self) -> CloseEvent | None:
        """The session's CloseEvent, once closed (whoever closed it)."""
        return self._close_event

    def add_hook(self, hook: Hook) -> None:
        """Run ``hook`` (sync or async) on each Verdict of this session, after the policy's."""
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {hook!r}")
        self._hooks.add(hook)

    async def wait_closed(self) -> CloseEvent:
        """Wait until the session has closed and return its CloseEvent."""
        await self._closed.wait()
        assert self._close_event is not None
        return self._close_event

    # -- where failures come in (inside the model's task: must never raise) ----------

    def _on_model_error(self, error: Any) -> None:
        """A failure a livekit model reported, after the app's listeners saw it as is."""
        try:
            if OWN_REQUEST.get():
                return  # the guard's own request (presynthesis): not the session's failure
            if kind_of(error) is not None:
                self._observe(error, recoverable=bool(error.recoverable))
        except (Exception, asyncio.CancelledError) as e:
            # Anything escaping here unwinds the model's retry loop (and a TypeError
            # escaping a listener does too). Not log.exception: the traceback could
            # carry provider text.
            log.error("agent_guard.guard_failed", error_type=type(e).__name__)

    def _on_error_event(self, ev: ErrorEvent) -> None:
        """The fallback entry, without the seam: a listener on the session's "error"."""
        try:
            err = ev.error
            if kind_of(err) is None or err is self._reemitted or OWN_REQUEST.get():
                return
            # With recoverable=True, AgentSession._on_error never counts this error nor
            # closes on it. livekit's own flag is remembered first.
            livekit_recoverable = bool(err.recoverable)
            err.recoverable = True
            self._observe(err, recoverable=livekit_recoverable)
        except (Exception, asyncio.CancelledError) as e:
            log.error("agent_guard.guard_failed", error_type=type(e).__name__)

    _reemitted: Any = None

    def _observe(self, err: Any, *, recoverable: bool) -> None:
        """One failure enters the data path: classify, hooks, then decide.

        ``err`` is livekit's error model (``LLMError``, ``STTError``, ``TTSError``,
        ``RealtimeModelError``); ``recoverable`` is livekit's flag as emitted. Every
        failure the guard acts on comes through here.
        """
        kind = kind_of(err)
        if kind is None:
            return
        if self._decider.decision is not None and kind is Kind.TTS:
            self._tts_failed.set()
        verdict = classify(
            err.error,
            kind=kind,
            classifiers=self._policy.classifiers,
            label=getattr(err, "label", None),
            recoverable=recoverable,
            retry_horizon=self._policy.retry_horizon,
        )
        if self._watchdog is not None:  # watchdog: this turn's failure was reported
            verdict = self._watchdog.failure_reported(verdict)
        ticket = self._decider.ticket(kind)
        self._hooks.run(verdict, lambda v: self._conclude(v, err, ticket, recoverable), self._spawn)

    def _conclude(
        self, verdict: Verdict, error: Any, ticket: int, emitted_recoverable: bool
    ) -> None:
        self._verdicts.append(verdict)
        key = (verdict.kind, verdict.category)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._close_event is not None:
            return
        decision = self._decider.decide(verdict, ticket)
        if decision is None:
            self._signal_tolerated(verdict)
            return
        self._decided(decision, error, emitted_recoverable)

    def _decided(self, decision: Decision, error: Any, emitted_recoverable: bool) -> None:
        """From the decision to the teardown: nothing here may prevent the close."""
        try:
            # The CloseEvent carries livekit's error model with its real flag back.
            trigger = error.model_copy(update={"recoverable": False})
        except Exception:
            trigger = error
        session = self._session_ref()
        if session is None:
            return
        if _seams.has_started(session):
            self._start_teardown(session, decision, trigger)
        else:
            self._deferred = (decision, trigger)
        verdict = decision.verdict
        with contextlib.suppress(Exception):
            log_closing(decision)
        if emitted_recoverable:
            # The app's listeners saw this error as a retry attempt (livekit's flag); the
            # session now ends on it, so they see it once more, final, before the close.
            self._reemitted = trigger
            with contextlib.suppress(Exception):
                source = _seams.model_of(session, verdict.kind.value)
                session.emit("error", ErrorEvent(error=trigger, source=source))

    def _start_teardown(self, session: AgentSession[Any], decision: Decision, trigger: Any) -> None:
        self._deferred = None
        with contextlib.suppress(Exception):
            if session.input.audio is not None and session.input.audio_enabled:
                # No new caller turns while the farewell plays: each would start another
                # generation against the provider that just failed.
                session.input.set_audio_enabled(False)
                self._undo.append(lambda: session.input.set_audio_enabled(True))
        with contextlib.suppress(Exception):
            # And none that slips through (a tool, a timer, generate_reply) reaches it.
            self._undo.append(_seams.silence_llm(session))
        self._teardown = self._spawn(
            teardown(
                session,
                decision,
                trigger,
                policy=self._policy,
                tts_failed=self._tts_failed,
                spawn=self._spawn,
                on_farewell=self._set_farewell,
            )
        )

    def _signal_tolerated(self, verdict: Verdict) -> None:
        signal = self._policy.signal
        if signal is None or not signal.on_tolerated or not verdict.counts:
            return
        if self._signalling is not None and not self._signalling.done():
            self._signal_next = verdict  # coalesced: only the latest waits
            return
        if (participant := _signal.participant_of(self.session)) is not None:
            self._signalling = self._spawn(self._publish_tolerated(participant, verdict))

    async def _publish_tolerated(self, participant: Any, verdict: Verdict | None) -> None:
        signal = self._policy.signal
        while verdict is not None and signal is not None and self._decider.decision is None:
            await signal.publish(participant, verdict, closing=False)
            verdict, self._signal_next = self._signal_next, None

    def _set_farewell(self, result: FarewellResult) -> None:
        self._farewell = result

    # -- the session's life -----------------------------------------------------------

    def _on_agent_state(self, ev: Any) -> None:
        session = self.session
        if self._close_event is not None and _seams.has_started(session):
            self._new_run()
        if not self._prepared:
            # The first state change comes from session.start(): a loop is running and
            # the Agent (whose own TTS may override the session's) is known, which
            # guard(), called before start(), cannot rely on.
            self._prepared = True
            self._prepare()
        if self._deferred is not None and _seams.has_started(session):
            self._start_teardown(session, *self._deferred)
        # Success for llm/tts/realtime = the agent actually started speaking (livekit
        # resets its own llm/tts counters at the same point).
        if getattr(ev, "new_state", None) == "speaking" and not (
            # watchdog: the stall notice playing is not the provider answering
            self._watchdog is not None and self._watchdog.speaking_own()
        ):
            for kind in (Kind.LLM, Kind.TTS, Kind.REALTIME):
                self._decider.succeeded(kind)

    def _on_transcript(self, ev: Any) -> None:
        # Success for stt = a non-empty transcript (as livekit counts it).
        if getattr(ev, "transcript", ""):
            self._decider.succeeded(Kind.STT)

    def _on_speech_created(self, ev: Any) -> None:
        fleet.attach(self.session, self._policy)  # fleet: an Agent's own models, before use
        # After the decision, only the farewell may speak. A reply started now (the
        # caller talking over the farewell, a tool, a timer) must not be heard.
        if self._decider.decision is None or asyncio.current_task() is self._teardown:
            return  # no decision yet, or this is the farewell, created by the teardown
        handle = getattr(ev, "speech_handle", None)
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.interrupt(force=True)

    def _new_run(self) -> None:
        """The session was started again after a close: decide afresh.

        livekit supports restarting a closed session and resets its own counters on
        close; the verdict history is kept, and what the teardown switched off (the
        caller's audio, the LLM) is switched back on.
        """
        self._decider.reset()
        self._teardown = None
        self._deferred = None
        self._farewell = None
        self._close_event = None
        self._closed.clear()
        self._tts_failed.clear()
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    def _on_close(self, ev: CloseEvent) -> None:
        self._close_event = ev
        self._closed.set()
        if self._watchdog is not None:  # watchdog: no timers outlive the session
            self._watchdog.stop()
        for task in self._preparing:
            task.cancel()

    # -- background work ---------------------------------------------------------------

    def _prepare(self) -> None:
        """Work done ahead of any failure, so the failure path does not wait for it."""
        if not needs_preparing(self.session, self._policy):
            return
        task = self._spawn(prepare(self.session, self._policy))
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        name = f"agent_guard.{getattr(coro, '__name__', 'task')}"
        task = asyncio.get_running_loop().create_task(coro, name=name)
        # Keep a strong reference (the loop only keeps weak ones) until it is done.
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # Retrieve every exception: no "Task exception was never retrieved" from the guard.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error(
                "agent_guard.task_failed", task=task.get_name(), error_type=type(exc).__name__
            )
