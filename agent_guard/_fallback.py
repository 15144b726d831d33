"""Guarded drop-in replacements for livekit's llm/tts/stt ``FallbackAdapter``.

livekit 1.8.9's adapters judge every failure the same way (``fallback_adapter.py`` in
``livekit/agents/{llm,tts,stt}``):

* any ``Exception`` marks the instance unavailable (llm ``:376-383``, tts ``:338-344`` and
  ``:545-551``, stt ``:292-298`` and ``:451-457``), a client cancellation included: a
  mid-stream 499 arrives as ``APIConnectionError`` and an STT 499 as ``APIStatusError``;
* after every request an instance did not serve, a recovery probe replays the whole request
  (llm ``:298-321`` and ``:400``): a real, billed request, sent even when the instance is out
  of credits;
* when every instance failed, the error raised carries no cause (llm ``:402-404``, tts
  ``:356-358`` and ``:565-567``, stt ``:302-304`` and ``:466-468``), and the instances'
  own ``"error"`` events are not forwarded (only ``metrics_collected`` is, llm ``:93-94``),
  so the session, and the guard, see "all LLMs failed" and nothing else.

The subclasses here keep livekit's loop, ordering and ``*_availability_changed`` events, and
change only those three things, through the adapters' private per-instance methods (their
only seams; each override says which upstream lines it answers):

* every instance failure is classified with :func:`agent_guard.classify` and kept
  (:attr:`FallbackLLM.verdicts`); a ``CLIENT_CANCELLED`` one never marks the instance
  unavailable;
* probes go only to instances whose last verdict is transient, no more often than
  :class:`ProbeBackoff` allows; an instance with a terminal verdict (credits, auth) gets no
  request at all any more, for the adapter's lifetime (build one per session, as livekit's
  examples do);
* when every instance failed, :class:`AllFailedError` carries each verdict and, as
  ``__cause__``, the decisive instance's own error; :func:`agent_guard.classifiers.carried_verdict`
  turns it into the session-level Verdict.

Outer retries: the session hands its ``llm_conn_options``/``tts_conn_options``
(``max_retry=3`` by default) to the adapter, overriding the adapter's own ``max_retry=0``,
so livekit's retry loop (``llm/llm.py:331-386``, ``tts/tts.py:410-460``) reruns the whole
round of instances up to three more times. We keep that for transient failures, since it is
the only pause between rounds and what the session asked for, but an
:class:`AllFailedError` whose instances all failed terminally is ``retryable=False``, so
the loop stops after the first round (``llm/llm.py:359-361``), and a retried round never
sends a request to a terminal instance nor an extra probe. Retries *inside* an instance
(``max_retry_per_tts=2``, ``max_retry_per_stt=1`` by default) happen in the instance's own
loop before the adapter sees any failure, so they are spent whatever the verdict: pass 0
to fail over at once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from livekit.agents import llm as _llm
from livekit.agents import stt as _stt
from livekit.agents import tts as _tts
from livekit.agents import utils
from livekit.agents._exceptions import APIConnectionError
from livekit.agents.llm.fallback_adapter import (
    DEFAULT_FALLBACK_API_CONNECT_OPTIONS as _LLM_DEFAULT_CONN,
)
from livekit.agents.llm.fallback_adapter import FallbackLLMStream
from livekit.agents.llm.tool_context import Tool, ToolChoice
from livekit.agents.stt.fallback_adapter import (
    DEFAULT_FALLBACK_API_CONNECT_OPTIONS as _STT_DEFAULT_CONN,
)
from livekit.agents.stt.fallback_adapter import FallbackRecognizeStream
from livekit.agents.tts.fallback_adapter import (
    DEFAULT_FALLBACK_API_CONNECT_OPTIONS as _TTS_DEFAULT_CONN,
)
from livekit.agents.tts.fallback_adapter import FallbackChunkedStream, FallbackSynthesizeStream
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.vad import VAD

from agent_guard._classify import classify
from agent_guard._log import log as _log
from agent_guard._verdict import Category, Kind, Verdict
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, Classifier
from agent_guard.fleet import refused as _fleet_refused  # fleet:

__all__ = [
    "DEFAULT_PROBE_BACKOFF",
    "AllFailedError",
    "FallbackLLM",
    "FallbackSTT",
    "FallbackTTS",
    "ProbeBackoff",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeBackoff:
    """How soon a guarded adapter may probe an instance that failed transiently.

    livekit starts a probe (a replay of the whole request) for every instance that did not
    serve, after every request, as soon as the previous probe is over. Here the ``n``-th
    consecutive failure of an instance holds its probes back for
    ``min(initial * factor ** (n - 1), maximum)`` seconds; a success resets the count.
    Probes still start only from a request, as in livekit: no timer sends any. An instance
    whose last failure was terminal is never probed.

    Attributes:
        initial: Seconds after the first failure. ``0`` probes at once, as livekit does.
        factor: Growth per further consecutive failure (at least 1).
        maximum: Upper bound of the hold-back, in seconds.
    """

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0

    def __post_init__(self) -> None:
        for name in ("initial", "factor", "maximum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"ProbeBackoff.{name} must be a non-negative number: {value!r}")
            if value == float("inf"):
                raise ValueError(f"ProbeBackoff.{name} must be finite")
        if self.factor < 1:
            raise ValueError(f"ProbeBackoff.factor must be at least 1: {self.factor!r}")
        if self.maximum < self.initial:
            raise ValueError("ProbeBackoff.maximum must not be below initial")

    def delay(self, failures: int) -> float:
        """Seconds to hold probes back after ``failures`` consecutive failures."""
        if failures <= 0:
            return 0.0
        try:
            return min(self.initial * self.factor ** (failures - 1), self.maximum)
        except OverflowError:  # a float power this large only approaches maximum anyway
            return self.maximum


DEFAULT_PROBE_BACKOFF = ProbeBackoff()


def _decisive(verdicts: Sequence[Verdict]) -> int:
    """The index of the verdict that speaks for a whole failed round.

    Terminal only when every instance is: then the first (the primary). Otherwise the
    first transient verdict, preferring one that knows more (a known category, then an
    HTTP status) over a bare UNKNOWN or a status-less one.
    """
    if all(v.terminal for v in verdicts):
        return 0
    transient = [i for i, v in enumerate(verdicts) if not v.terminal]
    return min(
        transient,
        key=lambda i: (
            verdicts[i].category is Category.UNKNOWN,
            verdicts[i].status_code is None,
            i,
        ),
    )


class AllFailedError(APIConnectionError):
    """Every instance of a guarded fallback adapter failed; each one's verdict is kept.

    Raised instead of livekit's cause-less ``APIConnectionError("all LLMs failed ...")``.
    ``__cause__`` is the decisive instance's own error (see :attr:`verdict`), so even a
    classifier chain without :func:`~agent_guard.classifiers.carried_verdict` reads the
    real status and body.
    ``retryable`` is False when every instance failed terminally: livekit's retry loop then
    stops instead of rerunning the round.

    Attributes:
        verdicts: One Verdict per instance, in the adapter's order: its failure in this
            round, or the last one that made it unavailable.
        decisive: The index of the verdict :attr:`verdict` is built from.
        verdict: The combined verdict: terminal only if every instance's is (then the
            primary's, with its real category, e.g. ``QUOTA_EXHAUSTED``), otherwise the
            most informative transient one.
    """

    def __init__(self, message: str, *, verdicts: Sequence[Verdict]) -> None:
        if not verdicts:
            raise ValueError("AllFailedError needs one verdict per instance")
        self.verdicts = tuple(verdicts)
        self.decisive = _decisive(self.verdicts)
        chosen = self.verdicts[self.decisive]
        summary = ", ".join(f"#{i} {v.category.value}" for i, v in enumerate(self.verdicts))
        self.verdict = chosen.replace(
            detail=f"all {len(self.verdicts)} instances failed ({summary}); "
            f"#{self.decisive}: {chosen.detail}"
        )
        super().__init__(message, retryable=not self.verdict.terminal)

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException copies and pickles as cls(*args); verdicts is keyword-only.
        return functools.partial(AllFailedError, verdicts=self.verdicts), (self.message,)


class _Instance(Protocol):
    @property
    def label(self) -> str: ...


@dataclass(slots=True)
class _InstanceState:
    verdict: Verdict | None = None
    """The last failure since the instance last served; None while healthy."""
    error: BaseException | None = None
    failures: int = 0
    """Consecutive failures, probes included: drives the backoff."""
    probe_after: float = 0.0
    """``time.monotonic()`` before which no probe is sent."""
    cancelled: bool = False
    """STT only: its last failure was a client cancellation (see FallbackSTT.emit)."""


class _SkippedError(APIConnectionError):
    """Stands in for a request not sent to an instance whose last verdict is terminal."""


class _Health:
    """What one guarded adapter knows about its instances."""

    def __init__(
        self,
        instances: Sequence[_Instance],
        *,
        kind: Kind,
        classifiers: Sequence[Classifier] | None,
        backoff: ProbeBackoff,
    ) -> None:
        if not isinstance(backoff, ProbeBackoff):
            raise TypeError(f"probe_backoff must be a ProbeBackoff, got {backoff!r}")
        self._instances = list(instances)
        self._kind = kind
        self._classifiers = tuple(DEFAULT_CLASSIFIERS if classifiers is None else classifiers)
        self._backoff = backoff
        self._states = [_InstanceState() for _ in self._instances]

    @property
    def verdicts(self) -> tuple[Verdict | None, ...]:
        return tuple(state.verdict for state in self._states)

    def _index(self, instance: _Instance) -> int:
        # By identity, as livekit's own ``_instances.index()``: models do not define __eq__.
        return next(i for i, known in enumerate(self._instances) if known is instance)

    def classify(self, instance: _Instance, error: BaseException) -> Verdict:
        return classify(error, kind=self._kind, classifiers=self._classifiers, label=instance.label)

    def failed(self, instance: _Instance, error: BaseException, *, probe: bool) -> Verdict:
        """Classify a failure; record it unless it is a client cancellation."""
        verdict = self.classify(instance, error)
        index = self._index(instance)
        state = self._states[index]
        if verdict.category is Category.CLIENT_CANCELLED:
            _log.info("agent_guard.fallback_cancel_ignored", kind=self._kind.value, instance=index)
            return verdict
        state.verdict = verdict
        state.error = error
        state.failures += 1
        state.probe_after = time.monotonic() + self._backoff.delay(state.failures)
        _log.info(
            "agent_guard.fallback_instance_failed",
            kind=self._kind.value,
            instance=index,
            category=verdict.category.value,
            terminal=verdict.terminal,
            probe=probe,
        )
        return verdict

    def served(self, instance: _Instance) -> None:
        self._states[self._index(instance)] = _InstanceState()

    def ensure_askable(self, instance: _Instance) -> None:
        """Raise instead of sending a request that would fail identically.

        With every instance down, livekit's loops ask all of them again (llm
        ``fallback_adapter.py:326-333``, tts ``:299-312`` and ``:456-499``, stt
        ``:275-281``); one whose last verdict is terminal is not asked. The error stands in
        for its failure: the loop goes on to the next instance, as after a real one.

        Raises:
            _SkippedError: The instance's last verdict is terminal.
        """
        state = self._states[self._index(instance)]
        verdict = state.verdict
        # fleet: a request the fleet breaker refused was never sent: ask again (its gate
        # fleet: refuses at once, without a request, until the breaker closes)
        if verdict is not None and verdict.terminal and not _fleet_refused(state.error):
            raise _SkippedError(f"{instance.label} not asked: it failed with {verdict.category}")

    def may_probe(self, instance: _Instance) -> bool:
        index = self._index(instance)
        state = self._states[index]
        refused = _fleet_refused(state.error)  # fleet: as in ensure_askable
        if state.verdict is not None and state.verdict.terminal and not refused:  # fleet:
            allowed = False
        else:
            allowed = time.monotonic() >= state.probe_after
        if not allowed:
            _log.debug("agent_guard.fallback_probe_held", kind=self._kind.value, instance=index)
        return allowed

    def all_failed(self, error: APIConnectionError) -> tuple[AllFailedError, BaseException | None]:
        """livekit's cause-less all-failed error, rebuilt with the causes, and its cause."""
        verdicts = [
            # No record (an STT instance that was cancelled, or failed without an "error"
            # event): the adapter's own words.
            state.verdict or self.classify(instance, error)
            for instance, state in zip(self._instances, self._states, strict=True)
        ]
        rebuilt = AllFailedError(error.message, verdicts=verdicts)
        return rebuilt, self._states[rebuilt.decisive].error

    # -- STT: instance failures are seen through their "error" events ---------------------

    def listener(self, instance: _Instance) -> Callable[[_stt.STTError], None]:
        return functools.partial(self._on_instance_error, instance)

    def _on_instance_error(self, instance: _Instance, event: _stt.STTError) -> None:
        # A TypeError escaping an "error" listener breaks livekit's retry loop
        # (rtc.EventEmitter.emit re-raises it): swallow everything.
        try:
            if event.recoverable:
                return  # the instance retries by itself; its final report decides
            verdict = self.failed(instance, event.error, probe=False)
            self._states[self._index(instance)].cancelled = (
                verdict.category is Category.CLIENT_CANCELLED
            )
        except Exception:
            _log.exception("agent_guard.hook_failed")

    def take_cancelled(self, instance: _Instance) -> bool:
        state = self._states[self._index(instance)]
        cancelled, state.cancelled = state.cancelled, False
        return cancelled


# -- LLM --------------------------------------------------------------------------------


class _Observable:
    """The read-only views every guarded adapter adds to livekit's."""

    _health: _Health
    _status: Any  # livekit: list[_LLMStatus | _TTSStatus | _STTStatus]

    @property
    def verdicts(self) -> tuple[Verdict | None, ...]:
        """Per instance, in order: its last failure's Verdict, ``None`` if it has not
        failed since it last served."""
        return self._health.verdicts

    @property
    def availability(self) -> tuple[bool, ...]:
        """Per instance, in order: whether livekit considers it available."""
        return tuple(status.available for status in self._status)


class FallbackLLM(_Observable, _llm.FallbackAdapter):
    """livekit's ``llm.FallbackAdapter``, minus false blacklisting, blind probes and lost causes.

    Same constructor as livekit's, plus ``classifiers`` and ``probe_backoff``. Compared with
    the stock adapter:

    * a client cancellation (HTTP 499, also mid-stream, classified ``CLIENT_CANCELLED``)
      ends the request the way livekit's own 499 handling does, quietly with what was
      streamed so far, and leaves the instance available;
    * an instance whose last verdict is terminal is neither probed nor asked again;
      transient ones are probed per ``probe_backoff``;
    * when every instance failed, :class:`AllFailedError` carries the verdicts and the
      decisive error.

    Args:
        llm: The instances, primary first.
        attempt_timeout: As livekit's.
        max_retry_per_llm: As livekit's.
        retry_interval: As livekit's.
        retry_on_chunk_sent: As livekit's.
        sticky: As livekit's.
        classifiers: Classify instance failures; ``None`` for
            :data:`agent_guard.DEFAULT_CLASSIFIERS`.
        probe_backoff: How soon a transiently failed instance may be probed.
    """

    def __init__(
        self,
        llm: list[_llm.LLM[Any]],
        *,
        attempt_timeout: float = 5.0,
        max_retry_per_llm: int = 0,
        retry_interval: float = 0.5,
        retry_on_chunk_sent: bool = False,
        sticky: bool = False,
        classifiers: Sequence[Classifier] | None = None,
        probe_backoff: ProbeBackoff = DEFAULT_PROBE_BACKOFF,
    ) -> None:
        super().__init__(
            llm,
            attempt_timeout=attempt_timeout,
            max_retry_per_llm=max_retry_per_llm,
            retry_interval=retry_interval,
            retry_on_chunk_sent=retry_on_chunk_sent,
            sticky=sticky,
        )
        self._health = _Health(
            self._llm_instances, kind=Kind.LLM, classifiers=classifiers, backoff=probe_backoff
        )

    def chat(
        self,
        *,
        chat_ctx: _llm.ChatContext,
        tools: list[Tool] | None = None,
        conn_options: APIConnectOptions = _LLM_DEFAULT_CONN,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> _llm.LLMStream:
        return _GuardedLLMStream(
            llm=self,
            conn_options=conn_options,
            chat_ctx=chat_ctx,
            tools=tools or [],
            parallel_tool_calls=parallel_tool_calls,
            tool_choice=tool_choice,
            extra_kwargs=extra_kwargs,
        )


class _GuardedLLMStream(FallbackLLMStream):
    def __init__(
        self,
        llm: FallbackLLM,
        *,
        chat_ctx: _llm.ChatContext,
        tools: list[Tool],
        conn_options: APIConnectOptions,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> None:
        super().__init__(
            llm,
            chat_ctx=chat_ctx,
            tools=tools,
            conn_options=conn_options,
            parallel_tool_calls=parallel_tool_calls,
            tool_choice=tool_choice,
            extra_kwargs=extra_kwargs,
        )
        self._health = llm._health
        # Instance errors that left _try_generate in the current round: _run re-raises one
        # of them itself when chunks were already sent (fallback_adapter.py:385-393).
        self._instance_errors: list[BaseException] = []

    async def _try_generate(
        self, *, llm: _llm.LLM[Any], check_recovery: bool = False
    ) -> AsyncIterable[_llm.ChatChunk]:
        if not check_recovery:
            self._health.ensure_askable(llm)
        try:
            async for chunk in super()._try_generate(llm=llm, check_recovery=check_recovery):
                yield chunk
        except Exception as e:
            # CancelledError is a BaseException: _run lets it through untouched already.
            verdict = self._health.failed(llm, e, probe=check_recovery)
            if check_recovery:
                raise  # the probe failed (a cancelled one proves nothing either)
            if verdict.category is Category.CLIENT_CANCELLED:
                # _run would mark the instance unavailable for any exception (:376-383).
                # End like LLMStream's own 499 path (llm/llm.py:351): quietly, keeping
                # what was streamed.
                return
            self._instance_errors.append(e)
            raise
        self._health.served(llm)

    def _try_recovery(self, llm: _llm.LLM[Any]) -> None:
        # livekit starts a probe replaying this request after every request the instance
        # did not serve (fallback_adapter.py:298-321, :400): only if the backoff allows.
        if self._health.may_probe(llm):
            super()._try_recovery(llm)

    async def _run(self) -> None:
        self._instance_errors = []
        try:
            await super()._run()
        except APIConnectionError as e:
            if any(e is seen for seen in self._instance_errors):
                raise
            # The cause-less "all LLMs failed" (fallback_adapter.py:402-404).
            rebuilt, cause = self._health.all_failed(e)
            raise rebuilt from cause


# -- TTS --------------------------------------------------------------------------------


class FallbackTTS(_Observable, _tts.FallbackAdapter):
    """livekit's ``tts.FallbackAdapter`` with the guarantees of :class:`FallbackLLM`.

    A client cancellation ends the synthesis quietly (as livekit's own 499 handling does,
    ``tts/tts.py:426-429``) without marking the instance unavailable; terminal instances
    are neither probed nor asked again; transient ones are probed per ``probe_backoff``;
    :class:`AllFailedError` carries the causes. Note that ``max_retry_per_tts`` (livekit's
    default 2) retries an instance inside its own loop before the adapter sees the
    failure, terminal or not: pass 0 to fail over at once.

    Args:
        tts: The instances, primary first.
        max_retry_per_tts: As livekit's.
        sample_rate: As livekit's.
        classifiers: Classify instance failures; ``None`` for
            :data:`agent_guard.DEFAULT_CLASSIFIERS`.
        probe_backoff: How soon a transiently failed instance may be probed.
    """

    def __init__(
        self,
        tts: list[_tts.TTS[Any]],
        *,
        max_retry_per_tts: int = 2,
        sample_rate: int | None = None,
        classifiers: Sequence[Classifier] | None = None,
        probe_backoff: ProbeBackoff = DEFAULT_PROBE_BACKOFF,
    ) -> None:
        super().__init__(tts, max_retry_per_tts=max_retry_per_tts, sample_rate=sample_rate)
        self._health = _Health(
            self._tts_instances, kind=Kind.TTS, classifiers=classifiers, backoff=probe_backoff
        )

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = _TTS_DEFAULT_CONN
    ) -> FallbackChunkedStream:
        return _GuardedChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = _TTS_DEFAULT_CONN
    ) -> FallbackSynthesizeStream:
        return _GuardedSynthesizeStream(tts=self, conn_options=conn_options)


async def _guarded_synthesis(
    health: _Health,
    tts: _tts.TTS[Any],
    attempt: AsyncGenerator[_tts.SynthesizedAudio, None],
    *,
    recovering: bool,
) -> AsyncGenerator[_tts.SynthesizedAudio, None]:
    """One instance's synthesis, as both TTS streams' ``_try_synthesize`` run it."""
    try:
        async for audio in attempt:
            yield audio
    except Exception as e:
        verdict = health.failed(tts, e, probe=recovering)
        if verdict.category is Category.CLIENT_CANCELLED and not recovering:
            # _run would mark the instance unavailable for any exception (:338-344,
            # :545-551). End like ChunkedStream's own 499 path (tts/tts.py:426-429).
            # A cancelled probe proves nothing: it fails.
            return
        raise
    health.served(tts)


class _GuardedTTSStream:
    """What both guarded TTS streams add to livekit's: gated probes, a real all-failed."""

    _health: _Health

    def _try_recovery(self, tts: _tts.TTS[Any]) -> None:
        # livekit probes after every request the instance did not serve
        # (tts/fallback_adapter.py:267-292, :354 chunked; :563-620 streamed): only if the
        # backoff allows.
        if self._health.may_probe(tts):
            super()._try_recovery(tts)  # type: ignore[misc]

    async def _run(self, output_emitter: _tts.AudioEmitter) -> None:
        try:
            await super()._run(output_emitter)  # type: ignore[misc]
        except APIConnectionError as e:
            # Instance errors never leave livekit's _run (it returns or goes on, :338-352
            # and :545-561): this is the cause-less "all TTSs failed" (:356-358, :565-567).
            rebuilt, cause = self._health.all_failed(e)
            raise rebuilt from cause


class _GuardedChunkedStream(_GuardedTTSStream, FallbackChunkedStream):
    def __init__(
        self, *, tts: FallbackTTS, input_text: str, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._health = tts._health

    async def _try_synthesize(
        self, *, tts: _tts.TTS[Any], recovering: bool = False
    ) -> AsyncGenerator[_tts.SynthesizedAudio, None]:
        if not recovering:
            self._health.ensure_askable(tts)
        attempt = super()._try_synthesize(tts=tts, recovering=recovering)
        async for audio in _guarded_synthesis(self._health, tts, attempt, recovering=recovering):
            yield audio


class _GuardedSynthesizeStream(_GuardedTTSStream, FallbackSynthesizeStream):
    def __init__(self, *, tts: FallbackTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._health = tts._health

    async def _try_synthesize(
        self,
        *,
        tts: _tts.TTS[Any],
        input_ch: utils.aio.ChanReceiver[str | _tts.SynthesizeStream._FlushSentinel],
        conn_options: APIConnectOptions,
        recovering: bool = False,
    ) -> AsyncGenerator[_tts.SynthesizedAudio, None]:
        if not recovering:
            self._health.ensure_askable(tts)
        attempt = super()._try_synthesize(
            tts=tts, input_ch=input_ch, conn_options=conn_options, recovering=recovering
        )
        async for audio in _guarded_synthesis(self._health, tts, attempt, recovering=recovering):
            yield audio


# -- STT --------------------------------------------------------------------------------


class FallbackSTT(_Observable, _stt.FallbackAdapter):
    """livekit's ``stt.FallbackAdapter`` with the guarantees of :class:`FallbackLLM`.

    Failures are read from the instances' own ``"error"`` events: the streaming path opens
    and consumes instance streams inline in ``FallbackRecognizeStream._run``
    (stt/fallback_adapter.py:399-459), with no per-instance method to wrap. A client
    cancellation (livekit's STT, unlike LLM and TTS, does not swallow a 499:
    ``stt/stt.py:256-275``) does not mark the instance unavailable; the request goes on to
    the next instance, as for any failure. A terminal instance is never probed, nor asked
    again by ``recognize()``; a stream opened while every instance is down still opens one
    on it (that loop, again, has no seam).

    Args:
        stt: The instances, primary first.
        vad: As livekit's.
        attempt_timeout: As livekit's.
        max_retry_per_stt: As livekit's.
        retry_interval: As livekit's.
        classifiers: Classify instance failures; ``None`` for
            :data:`agent_guard.DEFAULT_CLASSIFIERS`.
        probe_backoff: How soon a transiently failed instance may be probed.
    """

    def __init__(
        self,
        stt: list[_stt.STT[Any]],
        *,
        vad: VAD | None = None,
        attempt_timeout: float = 10.0,
        max_retry_per_stt: int = 1,
        retry_interval: float = 5,
        classifiers: Sequence[Classifier] | None = None,
        probe_backoff: ProbeBackoff = DEFAULT_PROBE_BACKOFF,
    ) -> None:
        super().__init__(
            stt,
            vad=vad,
            attempt_timeout=attempt_timeout,
            max_retry_per_stt=max_retry_per_stt,
            retry_interval=retry_interval,
        )
        # After super(): livekit may have wrapped non-streaming instances in StreamAdapters,
        # and those are the instances its loops and events name.
        self._health = _Health(
            self._stt_instances, kind=Kind.STT, classifiers=classifiers, backoff=probe_backoff
        )
        self._listeners = [(s, self._health.listener(s)) for s in self._stt_instances]
        for instance, listener in self._listeners:
            instance.on("error", listener)

    def _needs_probe(self, stt: _stt.STT[Any]) -> bool:
        """Whether livekit's recovery probe may go to ``stt`` now.

        Unlike LLM and TTS, a cancelled STT request is a failure livekit goes on from
        (``stt/fallback_adapter.py:292-300``), so it asks for a probe of an instance that
        :meth:`emit` kept available: a probe can only confirm that.
        """
        if self._status[self._stt_instances.index(stt)].available:
            return False
        return self._health.may_probe(stt)

    def emit(
        self,
        event: Literal["metrics_collected", "error", "stt_availability_changed"],
        *args: Any,
    ) -> None:
        """Publish an event; an instance "unavailable" because it was cancelled stays available.

        Both STT paths set ``available = False`` and publish it in one synchronous step
        (stt/fallback_adapter.py:292-298, :451-457), right after the instance reported the
        failure through its ``"error"`` event; this is the one place both pass through.
        """
        change = args[0] if args else None
        if event == "stt_availability_changed" and isinstance(
            change, _stt.AvailabilityChangedEvent
        ):
            if not change.available and self._health.take_cancelled(change.stt):
                self._status[self._stt_instances.index(change.stt)].available = True
                return
            if change.available:
                self._health.served(change.stt)
        super().emit(event, *args)

    async def _try_recognize(
        self,
        *,
        stt: _stt.STT[Any],
        buffer: utils.AudioBuffer,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
        recovering: bool = False,
    ) -> _stt.SpeechEvent:
        if not recovering:
            self._health.ensure_askable(stt)
        event = await super()._try_recognize(
            stt=stt,
            buffer=buffer,
            language=language,
            conn_options=conn_options,
            recovering=recovering,
        )
        self._health.served(stt)
        return event

    def _try_recovery(
        self,
        *,
        stt: _stt.STT[Any],
        buffer: utils.AudioBuffer,
        language: NotGivenOr[str],
        conn_options: APIConnectOptions,
    ) -> None:
        # livekit probes after every recognize() the instance did not serve
        # (stt/fallback_adapter.py:230-264, :300): only if the backoff allows.
        if self._needs_probe(stt):
            super()._try_recovery(
                stt=stt, buffer=buffer, language=language, conn_options=conn_options
            )

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> _stt.SpeechEvent:
        try:
            return await super()._recognize_impl(
                buffer, language=language, conn_options=conn_options
            )
        except APIConnectionError as e:
            # Instance errors never leave this loop (:292-300): this is the cause-less
            # "all STTs failed" (:302-304).
            rebuilt, cause = self._health.all_failed(e)
            raise rebuilt from cause

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = _STT_DEFAULT_CONN,
    ) -> _stt.RecognizeStream:
        return _GuardedRecognizeStream(stt=self, language=language, conn_options=conn_options)

    async def aclose(self) -> None:
        await super().aclose()
        for instance, listener in self._listeners:
            instance.off("error", listener)


class _GuardedRecognizeStream(FallbackRecognizeStream):
    def __init__(
        self,
        *,
        stt: FallbackSTT,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(stt=stt, language=language, conn_options=conn_options)
        self._fallback = stt

    def _try_recovery(self, stt: _stt.STT[Any]) -> None:
        # livekit opens a probe stream after every stream the instance did not serve
        # (stt/fallback_adapter.py:459, :470-527): only if the backoff allows.
        if self._fallback._needs_probe(stt):
            super()._try_recovery(stt)

    async def _run(self) -> None:
        try:
            await super()._run()
        except APIConnectionError as e:
            # Instance errors never leave this loop (:451-459): this is the cause-less
            # "all STTs failed" (:466-468).
            rebuilt, cause = self._fallback._health.all_failed(e)
            raise rebuilt from cause
