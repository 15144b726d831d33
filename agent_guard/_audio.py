"""Farewell audio: decoding files completely, and the two per-worker caches.

Decoding on the failure path would add latency exactly when the caller is waiting, so
files are decoded ahead (:func:`preload`) and kept per worker, keyed by (path, mtime,
size); farewells synthesised while TTS was healthy are kept per (text, voice)
(:func:`presynthesize`). Both caches are bounded.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import av
from livekit import rtc
from livekit.agents import tts

from agent_guard._log import log
from agent_guard._policy import FarewellAudio

__all__ = ["load_audio", "preload", "presynthesize", "presynthesized"]

_FRAME_MS = 20
_DECODED: OrderedDict[tuple[str, int, int], tuple[rtc.AudioFrame, ...]] = OrderedDict()
_DECODED_MAX = 16


async def load_audio(audio: FarewellAudio) -> AsyncIterable[rtc.AudioFrame]:
    """A fresh async iterable of frames for one playback of ``audio``."""
    if isinstance(audio, str | os.PathLike):
        frames = await _decode_file(Path(audio))
        return _iterate(frames)
    if isinstance(audio, AsyncIterable):
        return audio
    if callable(audio):
        return audio()
    return _iterate(audio)


async def preload(audio: FarewellAudio | None) -> None:
    """Decode a farewell file ahead of time (no-op for other sources)."""
    if isinstance(audio, str | os.PathLike):
        await _decode_file(Path(audio))


async def _iterate(frames: Sequence[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for frame in frames:
        yield frame


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


async def _decode_file(path: Path) -> tuple[rtc.AudioFrame, ...]:
    # A stat() is microseconds; it keeps the cache honest when the file is replaced.
    key = _file_key(path)
    if (cached := _DECODED.get(key)) is not None:
        _DECODED.move_to_end(key)
        return cached
    frames = await asyncio.to_thread(_decode, path)
    if not frames:
        raise ValueError(f"farewell audio file holds no audio: {path}")
    _DECODED[key] = frames
    while len(_DECODED) > _DECODED_MAX:
        _DECODED.popitem(last=False)
    return frames


def _decode(path: Path) -> tuple[rtc.AudioFrame, ...]:
    """Decode any format PyAV reads to 16-bit mono frames of 20 ms, completely.

    livekit's ``audio_frames_from_file`` drops the end of a file (64 ms of a WAV, up to
    96 ms of a FLAC, measured) because its resampler is never flushed. Decoding with
    PyAV directly and flushing the resampler keeps every sample, which matters for a
    farewell whose last word is "goodbye".
    """
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"farewell audio file has no audio stream: {path}")
        rate = container.streams.audio[0].rate or 48000
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        pcm = bytearray()
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                pcm += out.to_ndarray().tobytes()
        for out in resampler.resample(None):
            pcm += out.to_ndarray().tobytes()
    step = rate * _FRAME_MS // 1000 * 2
    return tuple(
        rtc.AudioFrame(
            data=bytes(pcm[i : i + step]),
            sample_rate=rate,
            num_channels=1,
            samples_per_channel=len(pcm[i : i + step]) // 2,
        )
        for i in range(0, len(pcm) - 1, step)
    )


# -- pre-synthesis ------------------------------------------------------------------------

# Per worker process: (text, provider, model, label, voice) -> frames. Bounded by total
# audio bytes so a misconfigured policy cannot grow memory without limit.
_PRESYNTH: OrderedDict[tuple[str, ...], tuple[rtc.AudioFrame, ...]] = OrderedDict()
PRESYNTH_MAX_BYTES = 16 * 1024 * 1024


def _voice_key(engine: tts.TTS[Any], text: str) -> tuple[str, ...]:
    # No public "voice" on tts.TTS: most plugins keep it in _opts.voice. Two voices of
    # one model must not share a cache entry, so include it when it can be found.
    voice = getattr(getattr(engine, "_opts", None), "voice", None)
    return (text, engine.provider, engine.model, engine.label, str(voice))


def presynthesized(engine: tts.TTS[Any], text: str) -> tuple[rtc.AudioFrame, ...] | None:
    """The cached audio of ``text`` in ``engine``'s voice, if any."""
    key = _voice_key(engine, text)
    frames = _PRESYNTH.get(key)
    if frames is not None:
        _PRESYNTH.move_to_end(key)
    return frames


async def presynthesize(engine: tts.TTS[Any], texts: Sequence[str], *, limit: float) -> None:
    """Synthesise each of ``texts`` once (per worker) and cache the frames.

    Each synthesis is given at most ``limit`` seconds.
    """
    for text in dict.fromkeys(texts):
        if presynthesized(engine, text) is not None:
            continue
        try:
            async with asyncio.timeout(limit), engine.synthesize(text) as stream:
                frames = tuple([ev.frame async for ev in stream])
        except Exception as e:
            log.warning("agent_guard.presynthesis_failed", error_type=type(e).__name__)
            return
        if frames:
            _store(_voice_key(engine, text), frames)
            log.debug("agent_guard.presynthesized", chars=len(text), frames=len(frames))


def _store(key: tuple[str, ...], frames: tuple[rtc.AudioFrame, ...]) -> None:
    _PRESYNTH[key] = frames
    while sum(len(f.data) * 2 for fs in _PRESYNTH.values() for f in fs) > PRESYNTH_MAX_BYTES:
        _PRESYNTH.popitem(last=False)
