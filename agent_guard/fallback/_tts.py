"""The guarded ``tts.FallbackAdapter`` and its two streams (chunked and streamed)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from livekit.agents import tts as _tts
from livekit.agents import utils
from livekit.agents._exceptions import APIConnectionError
from livekit.agents.tts.fallback_adapter import (
    DEFAULT_FALLBACK_API_CONNECT_OPTIONS,
    FallbackChunkedStream,
    FallbackSynthesizeStream,
)
from livekit.agents.types import APIConnectOptions

from agent_guard._verdict import Category, Kind
from agent_guard.classifiers import Classifier
from agent_guard.fallback._health import (
    DEFAULT_PROBE_WAIT,
    Health,
    Observable,
    ProbeWait,
    probe_wait,
)

__all__ = ["FallbackTTS"]


class FallbackTTS(Observable, _tts.FallbackAdapter):
    """livekit's ``tts.FallbackAdapter`` with the guarantees of
    :class:`~agent_guard.fallback.FallbackLLM`.

    A client cancellation ends the synthesis quietly (as livekit's own 499 handling does)
    without marking the instance unavailable; terminal instances are neither probed nor
    asked again; transient ones are probed per ``probe_backoff``;
    :class:`~agent_guard.fallback.AllFailedError` carries the causes. Note that
    ``max_retry_per_tts`` (livekit's default 2) retries an instance inside its own loop
    before the adapter sees the failure, terminal or not: pass 0 to fail over at once.

    Args:
        tts: The instances, primary first.
        max_retry_per_tts: As livekit's.
        sample_rate: As livekit's.
        classifiers: Classify instance failures; ``None`` for
            :data:`agent_guard.classifiers.DEFAULT_CLASSIFIERS`.
        probe_backoff: How soon a transiently failed instance may be probed: any
            tenacity wait strategy (see :class:`~agent_guard.fallback.FallbackLLM`).
    """

    def __init__(
        self,
        tts: list[_tts.TTS[Any]],
        *,
        max_retry_per_tts: int = 2,
        sample_rate: int | None = None,
        classifiers: Sequence[Classifier] | None = None,
        probe_backoff: ProbeWait = DEFAULT_PROBE_WAIT,
    ) -> None:
        wait = probe_wait(probe_backoff)
        super().__init__(tts, max_retry_per_tts=max_retry_per_tts, sample_rate=sample_rate)
        self._health = Health(
            self._tts_instances, kind=Kind.TTS, classifiers=classifiers, wait=wait
        )
        # Classified while the instance reports it, with the response still on the chain.
        self._witnesses = [(i, self._health.witness(i)) for i in self._tts_instances]
        for instance, witness in self._witnesses:
            instance.on("error", witness)

    async def aclose(self) -> None:
        await super().aclose()
        for instance, witness in self._witnesses:
            instance.off("error", witness)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_FALLBACK_API_CONNECT_OPTIONS
    ) -> FallbackChunkedStream:
        return _GuardedChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_FALLBACK_API_CONNECT_OPTIONS
    ) -> FallbackSynthesizeStream:
        return _GuardedSynthesizeStream(tts=self, conn_options=conn_options)


async def _guarded_synthesis(
    health: Health,
    tts: _tts.TTS[Any],
    attempt: AsyncGenerator[_tts.SynthesizedAudio, None],
    *,
    recovering: bool,
) -> AsyncGenerator[_tts.SynthesizedAudio, None]:
    """One instance's synthesis, as both streams' ``_try_synthesize`` run it."""
    try:
        async for audio in attempt:
            yield audio
    except Exception as e:
        verdict = health.failed(tts, e, probe=recovering)
        if verdict.category is Category.CLIENT_CANCELLED and not recovering:
            # _run would mark the instance unavailable for any exception. End like
            # ChunkedStream's own 499 path. A cancelled probe proves nothing: it fails.
            return
        raise
    health.served(tts)


class _GuardedChunkedStream(FallbackChunkedStream):
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

    def _try_recovery(self, tts: _tts.TTS[Any]) -> None:
        if self._health.may_probe(tts):
            super()._try_recovery(tts)

    async def _run(self, output_emitter: _tts.AudioEmitter) -> None:
        try:
            await super()._run(output_emitter)
        except APIConnectionError as e:
            # Instance errors never leave livekit's _run: this is its cause-less all-failed.
            rebuilt, cause = self._health.all_failed(e)
            raise rebuilt from cause


class _GuardedSynthesizeStream(FallbackSynthesizeStream):
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

    def _try_recovery(self, tts: _tts.TTS[Any]) -> None:
        if self._health.may_probe(tts):
            super()._try_recovery(tts)

    async def _run(self, output_emitter: _tts.AudioEmitter) -> None:
        try:
            await super()._run(output_emitter)
        except APIConnectionError as e:
            # Instance errors never leave livekit's _run: this is its cause-less all-failed.
            rebuilt, cause = self._health.all_failed(e)
            raise rebuilt from cause
