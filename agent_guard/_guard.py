"""The guard: owns one AgentSession's error decisions, its farewell and its close."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from livekit.agents import AgentSession, CloseEvent, ErrorEvent

from agent_guard import (
    _seams,
    fleet,  # fleet:
)
from agent_guard._classify import classify
from agent_guard._errors import GuardError
from agent_guard._facts import kind_of
from agent_guard._farewell import (
    DEFAULT_ERROR_MESSAGE,
    FarewellResult,
    _session_tts,
    audio_for,
    play_farewell,
    preload,
    presynthesize,
    resolve,
)
from agent_guard._hooks import Hook
from agent_guard._log import log
from agent_guard._policy import GuardPolicy
from agent_guard._signal import participant_of
from agent_guard._verdict import Kind, Verdict

__all__ = ["Decision", "Guard", "Reason", "guard", "guarded"]


#: Verdict history kept per guard: an error storm must not grow memory without bound.
MAX_VERDICTS = 1000

_GUARDS: weakref.WeakKeyDictionary[AgentSession[Any], Guard] = weakref.WeakKeyDictionary()


class Reason(StrEnum):
    """Why the guard decided to close."""

    TERMINAL = "terminal"
    """The verdict says it will fail identically every turn."""
    TOLERANCE_EXCEEDED = "tolerance_exceeded"
    """Too many consecutive countable failures of one kind."""
    MODEL_GAVE_UP = "model_gave_up"
    """A realtime model reported a final (non-recoverable) error: livekit's realtime
    session has stopped reconnecting (llm/_realtime/openai.py:1063-1090), so nothing
    will answer again, whatever the category."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The guard's decision to close the session (made at most once)."""

    verdict: Verdict
    reason: Reason
    at: float
    """``time.monotonic()`` when the decision was made."""


def guard(session: AgentSession[Any], policy: GuardPolicy | None = None) -> Guard:
    """Guard ``session``: call once, before ``session.start()``.

    From then on the guard decides, per error kind, whether the session goes on or
    ends; when it ends, the caller hears a farewell (bounded by
    ``policy.farewell_timeout``) and the session closes once, with
    ``CloseReason.ERROR`` and the triggering error on the ``CloseEvent``.

    Calling it again for the same session returns the same guard when ``policy``
    is ``None`` or the same policy, and raises :class:`GuardError` otherwise.
    """
    if not isinstance(session, AgentSession):
        raise TypeError(f"guard() expects a livekit AgentSession, got {type(session).__name__}")
    if policy is not None and not isinstance(policy, GuardPolicy):
        raise TypeError(f"policy must be a GuardPolicy, got {type(policy).__name__}")
    existing = _GUARDS.get(session)
    if existing is not None:
        if policy is None or policy is existing.policy:
            return existing
        raise GuardError("this session is already guarded with a different policy")
    if _seams.has_started(session):
        # Our listener must run before AgentSession._on_error and before SessionHost's
        # (registered during start()), or the built-in counter closes behind our back.
        raise GuardError("guard() must be called before session.start()")
    g = Guard(session, policy or GuardPolicy())
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
        self._verdicts: collections.deque[Verdict] = collections.deque(maxlen=MAX_VERDICTS)
        self._failures: dict[Kind, collections.deque[float]] = {
            k: collections.deque() for k in Kind
        }
        # Bumped on each success of a kind: failures that arrived before it do not count.
        self._epochs: dict[Kind, int] = dict.fromkeys(Kind, 0)
        self._decision: Decision | None = None
        self._farewell: FarewellResult | None = None
        self._teardown: asyncio.Task[None] | None = None
        self._close_event: CloseEvent | None = None
        self._closed = asyncio.Event()
        # Set when TTS fails after the decision: the synthesised farewell is then inaudible.
        self._tts_failed = asyncio.Event()
        self._hooks: list[Hook] = list(policy.hooks)
        # Set while async hooks run: later errors queue behind it to keep their order.
        self._pending: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # Registration order matters: livekit runs "error" listeners in order, and
        # this one must see (and mutate) each error before anyone else.
        session.on("error", self._on_error)
        session.on("close", self._on_close)
        session.on("agent_state_changed", self._on_agent_state)
        session.on("user_input_transcribed", self._on_transcript)
        session.on("speech_created", self._on_speech_created)
        self._prepared = False
        fleet.attach(session, policy)  # fleet: no request to an exhausted account from here on

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
        """Every verdict so far, oldest first (the last :data:`MAX_VERDICTS`)."""
        return tuple(self._verdicts)

    @property
    def decision(self) -> Decision | None:
        """The decision to close, once made."""
        return self._decision

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
        self._hooks.append(hook)

    async def wait_closed(self) -> CloseEvent:
        """Wait until the session has closed and return its CloseEvent."""
        await self._closed.wait()
        assert self._close_event is not None
        return self._close_event

    # -- livekit listeners (synchronous, must never raise) ---------------------------

    def _on_error(self, ev: ErrorEvent) -> None:
        try:
            self._handle_error(ev)
        except Exception as e:
            # A TypeError escaping a listener breaks livekit's retry loop
            # (rtc.EventEmitter.emit re-raises TypeError): swallow everything.
            # Not log.exception: the traceback could carry unredacted provider text.
            log.error("agent_guard.guard_failed", error_type=type(e).__name__)

    def _handle_error(self, ev: ErrorEvent) -> None:
        err = ev.error
        kind = kind_of(err)
        if kind is None:
            return  # e.g. InterruptionDetectionError: livekit never closes on those
        # The guard owns the decision: with recoverable=True, AgentSession._on_error
        # never counts this error nor closes on it (agent_session.py:2022), realtime
        # errors included. We remember livekit's own flag first.
        livekit_recoverable = bool(err.recoverable)
        err.recoverable = True
        if self._decision is not None and kind is Kind.TTS:
            self._tts_failed.set()
        verdict = classify(
            err.error,
            kind=kind,
            classifiers=self._policy.classifiers,
            label=getattr(err, "label", None),
            recoverable=livekit_recoverable,
        )
        arrival = _Arrival(error=err, epoch=self._epochs[kind])
        if self._pending is not None and not self._pending.done():
            # An earlier error is still in an async hook: queue behind it, in order.
            self._pending = self._spawn(
                self._run_hooks_async(verdict, arrival, 0, previous=self._pending), "hooks"
            )
        else:
            self._run_hooks(verdict, arrival)

    def _run_hooks(self, verdict: Verdict, arrival: _Arrival) -> None:
        for i, hook in enumerate(self._hooks):
            result = self._call_hook(hook, verdict)
            if inspect.isawaitable(result):
                # An async hook: the rest of this error's pipeline continues in a task.
                self._pending = self._spawn(
                    self._run_hooks_async(verdict, arrival, i, awaiting=result), "hooks"
                )
                return
            verdict = _accept(hook, result, verdict)
        self._conclude(verdict, arrival)

    async def _run_hooks_async(
        self,
        verdict: Verdict,
        arrival: _Arrival,
        first: int,
        *,
        previous: asyncio.Task[None] | None = None,
        awaiting: Awaitable[Any] | None = None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        for i in range(first, len(self._hooks)):
            hook = self._hooks[i]
            result = (
                awaiting if i == first and awaiting is not None else self._call_hook(hook, verdict)
            )
            if inspect.isawaitable(result):
                try:
                    result = await result
                except Exception as e:
                    log.warning("agent_guard.hook_failed", hook=_name(hook),
                                 error_type=type(e).__name__)  # fmt: skip
                    result = None
            verdict = _accept(hook, result, verdict)
        self._conclude(verdict, arrival)

    def _call_hook(self, hook: Hook, verdict: Verdict) -> Any:
        try:
            return hook(verdict)
        except Exception as e:
            log.warning("agent_guard.hook_failed", hook=_name(hook), error_type=type(e).__name__)
            return None

    def _conclude(self, verdict: Verdict, arrival: _Arrival) -> None:
        self._verdicts.append(verdict)
        if self._decision is not None or self._close_event is not None:
            return
        reason = self._decide(verdict, arrival)
        if reason is None:
            signal = self._policy.signal
            if (
                signal is not None
                and signal.on_tolerated
                and verdict.counts
                and (participant := participant_of(self.session)) is not None
            ):
                self._spawn(signal.publish(participant, verdict, closing=False), "signal")
            return
        # The CloseEvent carries livekit's error model with its real flag back.
        trigger = arrival.error.model_copy(update={"recoverable": False})
        self._decision = Decision(verdict=verdict, reason=reason, at=time.monotonic())
        log.warning(
            "agent_guard.closing",
            reason=reason.value,
            kind=verdict.kind.value,
            category=verdict.category.value,
        )
        self._teardown = self._spawn(self._run_teardown(verdict, reason, trigger), "teardown")

    def _decide(self, verdict: Verdict, arrival: _Arrival) -> Reason | None:
        if verdict.terminal:
            # Close in the first failing turn, even on a recoverable=True attempt:
            # retrying cannot help, and every retry spends quota and time.
            return Reason.TERMINAL
        if not verdict.counts:
            return None
        if verdict.kind is Kind.REALTIME:
            if not verdict.recoverable:
                return Reason.MODEL_GAVE_UP
            # Recoverable realtime errors are failed responses and reconnect attempts;
            # stock livekit ignores them all, so a model failing every response would
            # never close. They count toward the realtime tolerance.
        elif verdict.recoverable:
            # Intermediate retry attempts are the model's business; a failed turn is
            # reported once with recoverable=False (llm.py:331-386).
            return None
        if arrival.epoch != self._epochs[verdict.kind]:
            # A success came after this failure arrived (it waited in an async hook):
            # it belongs to the streak the success already ended.
            return None
        tolerance = self._policy.tolerances[verdict.kind]
        now = time.monotonic()
        failures = self._failures[verdict.kind]
        failures.append(now)
        if tolerance.window is not None:
            while failures and now - failures[0] > tolerance.window:
                failures.popleft()
        # Bounded: only the last max_failures+1 timestamps can ever matter.
        while len(failures) > tolerance.max_failures + 1:
            failures.popleft()
        if len(failures) > tolerance.max_failures:
            return Reason.TOLERANCE_EXCEEDED
        return None

    def _on_agent_state(self, ev: Any) -> None:
        if self._close_event is not None and _seams.has_started(self.session):
            self._new_run()
        if not self._prepared:
            # The first state change comes from session.start() (agent_session.py:1174):
            # a loop is running and the Agent (whose own TTS may override the session's)
            # is known, which guard(), called before start(), cannot rely on.
            self._prepared = True
            self._prepare()
        # Success for llm/tts/realtime = the agent actually started speaking (livekit
        # resets its own llm/tts counters at the same point, agent_session.py:2199).
        if getattr(ev, "new_state", None) == "speaking":
            for kind in (Kind.LLM, Kind.TTS, Kind.REALTIME):
                self._succeeded(kind)

    def _on_transcript(self, ev: Any) -> None:
        # Success for stt = a non-empty transcript (as livekit, agent_session.py:2316).
        if getattr(ev, "transcript", ""):
            self._succeeded(Kind.STT)

    def _on_speech_created(self, ev: Any) -> None:
        fleet.attach(self.session, self._policy)  # fleet: an Agent's own models, before use
        # After the decision, only the farewell may speak. A reply started now (the
        # caller talking over the farewell, a tool, a timer) would run a new generation
        # against the provider that just failed, with all its retries.
        if self._decision is None or asyncio.current_task() is self._teardown:
            return  # no decision yet, or this is the farewell, created by the teardown
        handle = getattr(ev, "speech_handle", None)
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.interrupt(force=True)

    def _succeeded(self, kind: Kind) -> None:
        self._failures[kind].clear()
        self._epochs[kind] += 1

    def _new_run(self) -> None:
        """The session was started again after a close: decide afresh.

        livekit supports restarting a closed session and resets its own counters on
        close (agent_session.py:1346); the verdict history is kept.
        """
        self._decision = None
        self._teardown = None
        self._farewell = None
        self._close_event = None
        self._closed.clear()
        self._tts_failed.clear()
        for failures in self._failures.values():
            failures.clear()

    def _on_close(self, ev: CloseEvent) -> None:
        self._close_event = ev
        self._closed.set()
        for task in list(self._background):
            if task.get_name() in ("agent_guard.preload", "agent_guard.presynthesize"):
                task.cancel()

    # -- teardown --------------------------------------------------------------------

    async def _run_teardown(self, verdict: Verdict, reason: Reason, trigger: Any) -> None:
        session = self.session  # a strong reference for the whole teardown
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.farewell_timeout
        signal = self._policy.signal
        try:
            if session.input.audio is not None:
                # No new caller turns while the farewell plays: each would start another
                # generation against the provider that just failed.
                session.input.set_audio_enabled(False)
            published: asyncio.Task[None] | None = None
            if signal is not None and (participant := participant_of(session)) is not None:
                # Concurrently with the farewell; bounded by the signal's own timeout.
                publish = signal.publish(participant, verdict, closing=True)
                published = self._spawn(publish, "signal")
            farewell = resolve(self._policy, verdict, final=reason is not Reason.TOLERANCE_EXCEEDED)
            if farewell is not None and not _seams.is_closing(session):
                recording = audio_for(session, farewell, verdict)
                self._farewell = await play_farewell(
                    session,
                    farewell,
                    recording=recording,
                    deadline=deadline,
                    tts_failed=self._tts_failed,
                )
            if published is not None:
                # Before the agent leaves: apps often end the job on "close".
                await asyncio.wait({published}, timeout=max(0.0, deadline - loop.time()))
        finally:
            # Exactly once: _close_soon is a no-op when a close is already under way
            # (the user's, or livekit's own).
            _seams.close_with_error(session, trigger)

    # -- background work ---------------------------------------------------------------

    def _prepare(self) -> None:
        """Work done ahead of any failure, so the failure path does not wait for it."""
        policy = self._policy
        if policy.farewell_audio is not None:
            self._spawn(preload(policy.farewell_audio), "preload")
        if policy.presynthesize and (engine := _session_tts(self.session)) is not None:
            self._spawn(presynthesize(engine, _static_texts(policy), limit=30.0), "presynthesize")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = _spawn(coro, name)
        # Keep a strong reference (the loop only keeps weak ones) until it is done.
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


@dataclass(frozen=True, slots=True)
class _Arrival:
    """An error as it arrived: livekit's error model and its kind's success epoch then."""

    error: Any
    epoch: int


def _static_texts(policy: GuardPolicy) -> list[str]:
    """The farewell texts known before any failure (what presynthesis can cover)."""
    texts = [t for t in policy.messages.values() if t]
    if isinstance(policy.error_message, str):
        texts.append(policy.error_message)
    elif policy.error_message is not None and not callable(policy.error_message):
        texts.append(DEFAULT_ERROR_MESSAGE)
    return texts


def _accept(hook: Hook, result: Any, verdict: Verdict) -> Verdict:
    if result is None:
        return verdict
    if isinstance(result, Verdict):
        return result
    log.warning("agent_guard.hook_invalid", hook=_name(hook), returned=type(result).__name__)
    return verdict


def _name(hook: Any) -> str:
    return str(getattr(hook, "__qualname__", None) or type(hook).__qualname__)


def _spawn(coro: Any, name: str) -> asyncio.Task[None]:
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
        coro, name=f"agent_guard.{name}"
    )
    task.add_done_callback(_log_task_failure)
    return task


def _log_task_failure(task: asyncio.Task[None]) -> None:
    # Retrieve every exception: no "Task exception was never retrieved" from the guard.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("agent_guard.task_failed", task=task.get_name(), error_type=type(exc).__name__)
