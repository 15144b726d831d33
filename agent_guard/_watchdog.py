"""Beside the data path: the dead-air watchdog, for failures that raise nothing, or too late.

livekit reports failures that raise. A request accepted and never answered raises only
after its read timeout (10 s, on each of 4 attempts); an empty completion, a 499 that
livekit swallows, or a TTS that answers 200 with no audio raise nothing at all. In each
case the caller hears nothing, so the watchdog watches what the caller hears instead.

*Owing a reply* (livekit-agents 1.8.9): every reply the agent must speak is a speech
handle announced by ``speech_created`` with ``source="generate_reply"``: a committed user
turn (``AgentActivity`` calls ``_generate_reply`` once the turn is complete), the app's
``session.generate_reply()``, and a realtime model's server-side response. ``say()``
(``source="say"``) is the app's own fixed text, not a reply, and is not watched. The reply
is *heard* when its first audio frame reaches the audio output: livekit then sets the
agent state to ``"speaking"`` (``playback_started`` on the output; the first text when
the session has no audio output) while that handle is ``session.current_speech``.

A reply owed and not heard within ``stall_timeout`` seconds of its creation stalls, as
does a reply that ends with no audio. Not stalls: a reply queued behind speech that is
playing, or waiting for the user to stop talking (the clock starts again); a reply
waiting on a tool (``tool_execution_updated``: the clock starts again when the last tool
ends, for the tool's reply); a reply interrupted (by the caller, or by anyone); a reply
that ends silent after calling a tool (a tool-only turn is silent by design); a reply
whose failure livekit reported (a countable error, after livekit's own retries): the
error path owns that turn, counted once.

The stalled stage: ``realtime`` for a realtime model; ``tts`` once the LLM stream of that
speech has ended with output (its ``LLMMetrics``, which carry the speech id), else
``llm``. For STT: the user spoke (``user_state`` went ``speaking`` then ``listening``)
and the STT gave no sign of life (no transcript, no ``STTMetrics``) within
``stall_timeout`` of the end of speech.

A reply that livekit is still retrying after reported failures (a rate limit, say)
stalls the same way, since the caller hears nothing meanwhile; the stall then stands for
that failed turn (its final error never comes: the generation is cancelled) and the turn
is not retried once more, so the kind's tolerance counts turns as it would without the
watchdog.

A stall enters the data path like any failure (:meth:`Guard._observe`, with livekit's
own error model wrapping a :class:`StallError`), then the watchdog cancels the stuck
generation, plays the stall notice and, per policy, retries the turn once; not again
until a reply has been heard, so a provider that stalls on every request reaches the
default tolerance on the 3rd stalled turn (stall and retry, stall, stall).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentSession, llm
from livekit.agents.metrics import LLMMetrics, STTMetrics
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import ToolCallEnded, ToolCallStarted

from agent_guard import _seams
from agent_guard._audio import is_ready, preload, presynthesize
from agent_guard._decide import Decider
from agent_guard._log import log
from agent_guard._playback import play
from agent_guard._policy import Farewell, GuardPolicy
from agent_guard._stall import StallError, error_model, model_of, stall_notice, stt_of
from agent_guard._verdict import Category, Kind, Verdict

__all__ = ["Watchdog"]

#: How long the notice may take to play before it is cut off.
NOTICE_TIMEOUT = 5.0


@dataclass(eq=False)
class _Reply:
    """One reply the agent owes."""

    handle: SpeechHandle
    created_at: float
    timer: asyncio.TimerHandle | None = None
    heard: bool = False
    llm_output: bool = False
    """The LLM stream of this speech ended with output (text or a tool call)."""
    failed: Verdict | None = None
    """The final failure livekit reported while this reply was owed."""
    retrying: Verdict | None = None
    """livekit is retrying this reply after this reported (intermediate) failure."""


class Watchdog:
    """Watches one session for dead air; created by the Guard when ``stall_timeout`` is set.

    Args:
        session: The guarded session.
        policy: The guard's policy (``stall_timeout`` is not ``None``).
        report: Enters a stall into the data path (``Guard._observe``).
        decider: The guard's decider: once it has decided, the watchdog stands down.
        spawn: Starts a task the guard keeps track of.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        policy: GuardPolicy,
        *,
        report: Callable[..., None],
        decider: Decider,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        assert policy.stall_timeout is not None
        self._session_ref = weakref.ref(session)
        self._policy = policy
        self._timeout: float = policy.stall_timeout
        # Weakly: the guard owns the watchdog, and a cycle between them would outlive
        # the session until a full garbage collection.
        self._report_ref = weakref.WeakMethod(report)
        self._spawn_ref = weakref.WeakMethod(spawn)
        self._decider = decider
        self._replies: dict[SpeechHandle, _Reply] = {}
        # The app's generate_reply() arguments, by the handle they made: a retry asks the
        # same (its instructions, tools, tool choice), not a bare generate_reply().
        self._asked: weakref.WeakKeyDictionary[SpeechHandle, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )
        # The dictionary's own method: the session keeps it alive, not the watchdog.
        _seams.record_replies(session, self._asked.__setitem__)
        self._own: weakref.WeakSet[SpeechHandle] = weakref.WeakSet()
        self._tools: set[str] = set()
        self._acting: asyncio.Task[None] | None = None
        # A retry was made and nothing has been heard since: the provider stalls again
        # right after a retry, so another retry would only cost another stall_timeout.
        self._retry_spent = False
        # The kind of the last stall, until a new reply is created: its turn's late final
        # error is the same failure.
        self._stalled: Kind | None = None
        self._prepared = False
        # STT: the user's current utterance, and whether the STT has shown signs of life.
        self._stt_alive = True
        self._stt_failed = False
        self._stt_timer: asyncio.TimerHandle | None = None
        self._speech_ended_at = 0.0
        session.on("speech_created", self._guarded(self._on_speech_created))
        session.on("agent_state_changed", self._guarded(self._on_agent_state))
        session.on("tool_execution_updated", self._guarded(self._on_tool))
        # The only event that ties an LLM stream's outcome to its speech (LLMMetrics carry
        # the speech id). AgentSession.on() logs a deprecation warning for it on every
        # registration; the emitter's own on() registers it quietly.
        # tests/watchdog/test_seams.py fails if livekit stops emitting it.
        super(AgentSession, session).on("metrics_collected", self._guarded(self._on_metrics))
        session.on("user_state_changed", self._guarded(self._on_user_state))
        session.on("user_input_transcribed", self._guarded(self._on_transcript))

    # -- what the guard asks -----------------------------------------------------------

    def _decided(self) -> bool:
        session = self._session_ref()
        return self._decider.decision is not None or session is None or _seams.is_closing(session)

    def _report(self, error: Any, *, recoverable: bool) -> None:
        if (report := self._report_ref()) is not None:
            report(error, recoverable=recoverable)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        if (spawn := self._spawn_ref()) is None:
            coro.close()
            return None
        return spawn(coro)

    def speaking_own(self) -> bool:
        """Whether the speech playing now is the watchdog's notice (not a success)."""
        session = self._session_ref()
        return session is not None and session.current_speech in self._own

    def failure_reported(self, verdict: Verdict) -> Verdict:
        """livekit reported a failure (classified, before the hooks): the error path owns it.

        The watchdog is for failures that raise nothing, or too late. A turn whose final
        failure livekit reported is the error path's, counted (or not) as that failure,
        whatever the hooks make of it, and not retried again. Called as the error arrives,
        so it is known before the reply it ended is done.

        Returns:
            The verdict to go on with: the final error of a turn that has already stalled
            (livekit reported it before the cancellation took effect) no longer counts,
            since the stall stood for that turn.
        """
        if verdict.category is Category.STALLED:
            return verdict
        final = not verdict.recoverable or verdict.kind is Kind.REALTIME
        if not final:
            # An intermediate attempt: livekit retries. If the caller waits too long
            # meanwhile, the stall stands for this failed turn: it counts as its final
            # error would have, and the turn is not retried once more.
            for reply in self._replies.values():
                reply.retrying = verdict
            return verdict
        if verdict.kind is self._stalled and verdict.counts:
            return verdict.replace(
                counts=False, detail=f"{verdict.detail} (already counted: the turn stalled)"
            )
        if verdict.kind is Kind.STT:
            self._stt_failed = True
        else:
            for reply in self._replies.values():
                reply.failed = verdict
        return verdict

    def stop(self) -> None:
        """The session closed: no more timers."""
        for reply in self._replies.values():
            if reply.timer is not None:
                reply.timer.cancel()
        self._replies.clear()
        self._tools.clear()
        self._cancel_stt_timer()
        self._retry_spent = False
        self._stalled = None

    # -- livekit listeners (synchronous, must never raise) --------------------------------

    def _guarded(self, listener: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(ev: Any) -> None:
            try:
                listener(ev)
            except Exception as e:
                log.error("agent_guard.watchdog_failed", error_type=type(e).__name__)

        return _seams.listener(run)

    def _on_speech_created(self, ev: Any) -> None:
        handle = ev.speech_handle
        if ev.source == "say":
            if self._acting is not None and asyncio.current_task() is self._acting:
                self._own.add(handle)  # the notice
            return
        if self._decided():
            return
        self._stalled = None  # a new reply: late errors from now on are its own
        loop = asyncio.get_running_loop()
        reply = _Reply(handle=handle, created_at=loop.time())
        self._replies[handle] = reply
        handle.add_done_callback(self._guarded(self._on_done))
        self._arm(reply, self._timeout)

    def _on_agent_state(self, ev: Any) -> None:
        if not self._prepared:
            self._prepared = True
            self._prepare()
        if ev.new_state != "speaking":
            return
        session = self._session_ref()
        current = session.current_speech if session is not None else None
        if current is None or current in self._own:
            return
        reply = self._replies.get(current)
        if reply is not None and not reply.heard:
            reply.heard = True
            self._disarm(reply)
        # Something the caller asked for was heard: the provider is answering again.
        self._retry_spent = False
        self._stalled = None

    def _on_tool(self, ev: Any) -> None:
        update = ev.update
        if isinstance(update, ToolCallStarted):
            self._tools.add(update.function_call.call_id)
            for reply in self._replies.values():
                self._disarm(reply)
        elif isinstance(update, ToolCallEnded):
            self._tools.discard(update.call_id)
            if not self._tools:
                # The tool's reply is owed now: a fresh clock, heard or not before.
                for reply in self._replies.values():
                    if not reply.handle.done():
                        reply.heard = False
                        reply.created_at = asyncio.get_running_loop().time()
                        self._arm(reply, self._timeout)

    def _on_metrics(self, ev: Any) -> None:
        metrics = ev.metrics
        if isinstance(metrics, LLMMetrics):
            # ttft is -1 when the stream produced nothing (an empty completion, a 499).
            if metrics.ttft >= 0 or metrics.completion_tokens > 0:
                for reply in self._replies.values():
                    if reply.handle.id == metrics.speech_id:
                        reply.llm_output = True
        elif isinstance(metrics, STTMetrics):
            self._stt_heard()

    def _on_user_state(self, ev: Any) -> None:
        session = self._session_ref()
        if session is None or stt_of(session) is None:
            # No STT owes anything (a realtime model hears the caller itself, and its
            # transcription may be off on purpose).
            return
        if ev.new_state == "speaking":
            self._cancel_stt_timer()
            self._stt_alive = False
            self._stt_failed = False
        elif ev.old_state == "speaking" and not self._stt_alive and not self._decided():
            # The STT owes a transcript from the end of speech on: a non-streaming STT
            # only starts then, so waiting while the user talks would be a false alarm.
            loop = asyncio.get_running_loop()
            self._speech_ended_at = loop.time()
            self._stt_timer = loop.call_later(self._timeout, self._guarded_stt_fire)

    def _on_transcript(self, ev: Any) -> None:
        self._stt_heard()

    def _on_done(self, handle: SpeechHandle) -> None:
        reply = self._replies.pop(handle, None)
        if reply is None:
            return
        self._disarm(reply)
        if reply.heard or handle.interrupted or self._decided():
            return
        if any(isinstance(item, llm.FunctionCall) for item in handle.chat_items):
            return  # a tool-only turn: silent by design
        if reply.failed is not None:
            self._notify(reply.failed)
            return
        self._stall(reply, "the reply ended with no audio")

    def _notify(self, failure: Verdict) -> None:
        """livekit gave up on a reply and reported why, before it stalled: the error path
        counts it as that failure, and the caller, who heard nothing, hears the notice."""
        session = self._session_ref()
        if session is None or self._policy.stall_message is None:
            return
        if self._acting is not None and not self._acting.done():
            return
        self._acting = self._spawn(self._act(failure.kind, failure, retry=False, again={}))

    # -- timers ----------------------------------------------------------------------------

    def _arm(self, reply: _Reply, delay: float) -> None:
        self._disarm(reply)
        reply.timer = asyncio.get_running_loop().call_later(delay, self._fire, reply)

    def _disarm(self, reply: _Reply) -> None:
        if reply.timer is not None:
            reply.timer.cancel()
            reply.timer = None

    def _fire(self, reply: _Reply) -> None:
        try:
            self._check(reply)
        except Exception as e:
            log.error("agent_guard.watchdog_failed", error_type=type(e).__name__)

    def _check(self, reply: _Reply) -> None:
        reply.timer = None
        handle = reply.handle
        session = self._session_ref()
        if (
            session is None
            or handle.done()
            or reply.heard
            or handle.interrupted
            or self._decided()
            or self._replies.get(handle) is not reply
            or self._tools
        ):
            return
        if (
            session.current_speech is not handle
            or session.agent_state == "speaking"
            or session.user_state == "speaking"
        ):
            # Not this reply's silence: it waits behind speech that plays, or for the
            # caller to stop talking. Its clock starts again.
            reply.created_at = asyncio.get_running_loop().time()
            self._arm(reply, self._timeout)
            return
        self._replies.pop(handle, None)
        self._stall(reply, None)

    def _guarded_stt_fire(self) -> None:
        try:
            self._stt_timer = None
            if self._stt_alive or self._decided() or self._session_ref() is None:
                return
            self._stt_alive = True  # one stall per utterance
            if self._stt_failed:
                return  # the STT reported its failure: the error path owns it
            waited = asyncio.get_running_loop().time() - self._speech_ended_at
            error = StallError(Kind.STT, "the caller spoke and no transcript came", waited=waited)
            self._enter(Kind.STT, error, retry=False)
        except Exception as e:
            log.error("agent_guard.watchdog_failed", error_type=type(e).__name__)

    def _stt_heard(self) -> None:
        self._stt_alive = True
        self._cancel_stt_timer()

    def _cancel_stt_timer(self) -> None:
        if self._stt_timer is not None:
            self._stt_timer.cancel()
            self._stt_timer = None

    # -- a stall ---------------------------------------------------------------------------

    def _stall(self, reply: _Reply, ended: str | None) -> None:
        session = self._session_ref()
        if session is None or reply.failed is not None:
            return
        if isinstance(model_of(session), llm.RealtimeModel):
            kind, what = Kind.REALTIME, "no audio from the model"
        elif reply.llm_output:
            kind, what = Kind.TTS, "text but no audio"
        else:
            kind, what = Kind.LLM, "no first token"
        waited = asyncio.get_running_loop().time() - reply.created_at
        what = ended or what
        counts = True
        if (retrying := reply.retrying) is not None:
            what = f"{what}, livekit retrying after {retrying.category.value}"
            counts = retrying.counts
        error = StallError(kind, what, waited=waited, counts=counts)
        retry = self._policy.stall_retry and not self._retry_spent and retrying is None
        self._enter(kind, error, retry=retry, again=_again(self._asked.get(reply.handle)))

    def _enter(
        self, kind: Kind, error: StallError, *, retry: bool, again: dict[str, Any] | None = None
    ) -> None:
        session = self._session_ref()
        if session is None:
            return
        self._stalled = kind
        log.warning(
            "agent_guard.stalled",
            kind=kind.value,
            waited=round(error.waited, 3),
        )
        # Realtime failures reported as final close at once (the model gave up); a stall
        # is not the model giving up, so it counts toward the realtime tolerance instead.
        self._report(error_model(session, kind, error), recoverable=kind is Kind.REALTIME)
        if self._decided() or (self._acting is not None and not self._acting.done()):
            return
        if retry:
            self._retry_spent = True
        self._acting = self._spawn(self._act(kind, error.verdict, retry=retry, again=again or {}))

    async def _act(
        self, kind: Kind, verdict: Verdict, *, retry: bool, again: dict[str, Any]
    ) -> None:
        session = self._session_ref()
        if session is None:
            return
        notice = stall_notice(session, self._policy, verdict)
        if notice is None:
            # Cancel the stuck generation (and the LLM's own retries inside it).
            with contextlib.suppress(RuntimeError):
                await session.interrupt(force=True)
        else:
            loop = asyncio.get_running_loop()
            await play(
                session,
                notice,
                verdict,
                deadline=loop.time() + NOTICE_TIMEOUT,
                last_resort=Farewell.STALL,
            )
        if retry and not self._decided() and kind is not Kind.STT:
            try:
                session.generate_reply(**again)
            except RuntimeError:
                pass  # the session is closing
            except Exception as e:  # the app's own arguments, replayed: never the guard's
                log.error("agent_guard.watchdog_failed", error_type=type(e).__name__)

    def _prepare(self) -> None:
        """Decode (or synthesise) the notice ahead, so a stall never waits for it."""
        message = self._policy.stall_message
        if isinstance(message, Farewell) and message.audio is not None:
            if not is_ready(message.audio):  # once per worker: no task for nothing
                self._spawn(preload(message.audio))
            return
        if not is_ready(Farewell.STALL.audio):
            self._spawn(preload(Farewell.STALL.audio))
        session = self._session_ref()
        if (
            message is not None
            and self._policy.presynthesize
            and session is not None
            and (engine := _seams.speaking_tts(session)) is not None
        ):
            text = message if isinstance(message, str) else message.text
            self._spawn(presynthesize(engine, [text], limit=30.0))


def _again(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """What to ask again for a stalled reply made by ``generate_reply(**kwargs)``.

    Its ``user_input`` is already in the agent's chat context (livekit adds it once the
    reply is scheduled), so asking it again would say it twice; unless the app passed its
    own ``chat_ctx``: the request is built from that context, which does not have it.
    """
    if not kwargs:
        return {}
    if "chat_ctx" in kwargs:
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k != "user_input"}
