"""The guarded ``stt.FallbackAdapter`` and its recognize stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from livekit.agents import stt as _stt
from livekit.agents import utils
from livekit.agents._exceptions import APIConnectionError
from livekit.agents.stt.fallback_adapter import (
    DEFAULT_FALLBACK_API_CONNECT_OPTIONS,
    FallbackRecognizeStream,
)
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.vad import VAD

from agent_guard._verdict import Kind
from agent_guard.classifiers import Classifier
from agent_guard.fallback._health import (
    DEFAULT_PROBE_WAIT,
    Health,
    Observable,
    ProbeWait,
    probe_wait,
)

__all__ = ["FallbackSTT"]


class FallbackSTT(Observable, _stt.FallbackAdapter):
    """livekit's ``stt.FallbackAdapter`` with the guarantees of
    :class:`~agent_guard.fallback.FallbackLLM`.

    Failures are read from the instances' own ``"error"`` events: the streaming path opens
    and consumes instance streams inline in livekit's ``FallbackRecognizeStream._run``,
    with no per-instance method to wrap. A client cancellation (livekit's STT, unlike LLM
    and TTS, does not swallow a 499) does not mark the instance unavailable; the request
    goes on to the next instance, as for any failure. A terminal instance is never probed,
    nor asked again by ``recognize()``; a stream opened while every instance is down still
    opens one on it (that loop, again, has no seam).

    Args:
        stt: The instances, primary first.
        vad: As livekit's.
        attempt_timeout: As livekit's.
        max_retry_per_stt: As livekit's.
        retry_interval: As livekit's.
        classifiers: Classify instance failures; ``None`` for
            :data:`agent_guard.classifiers.DEFAULT_CLASSIFIERS`.
        probe_backoff: How soon a transiently failed instance may be probed: any
            tenacity wait strategy (see :class:`~agent_guard.fallback.FallbackLLM`).
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
        probe_backoff: ProbeWait = DEFAULT_PROBE_WAIT,
    ) -> None:
        wait = probe_wait(probe_backoff)
        super().__init__(
            stt,
            vad=vad,
            attempt_timeout=attempt_timeout,
            max_retry_per_stt=max_retry_per_stt,
            retry_interval=retry_interval,
        )
        # After super(): livekit may have wrapped non-streaming instances in StreamAdapters,
        # and those are the instances its loops and events name.
        self._health = Health(
            self._stt_instances, kind=Kind.STT, classifiers=classifiers, wait=wait
        )
        self._listeners = [(s, self._health.listener(s)) for s in self._stt_instances]
        for instance, listener in self._listeners:
            instance.on("error", listener)

    def _needs_probe(self, stt: _stt.STT[Any]) -> bool:
        """Whether livekit's recovery probe may go to ``stt`` now.

        Unlike LLM and TTS, a cancelled STT request is a failure livekit goes on from, so
        it asks for a probe of an instance that :meth:`emit` kept available: a probe could
        only confirm that.
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

        Both STT paths set ``available = False`` and publish it in one synchronous step,
        right after the instance reported the failure through its ``"error"`` event; this
        is the one place both pass through.
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
            # Instance errors never leave livekit's loop: this is its cause-less all-failed.
            rebuilt, cause = self._health.all_failed(e)
            raise rebuilt from cause

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_FALLBACK_API_CONNECT_OPTIONS,
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
        if self._fallback._needs_probe(stt):
            super()._try_recovery(stt)

    async def _run(self) -> None:
        try:
            await super()._run()
        except APIConnectionError as e:
            # Instance errors never leave livekit's loop: this is its cause-less all-failed.
            rebuilt, cause = self._fallback._health.all_failed(e)
            raise rebuilt from cause
