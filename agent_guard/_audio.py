"""Farewell audio: decoding files as they play, and the per-worker caches.

Files are decoded in a worker thread a second at a time, so the first frame of even a
long recording is ready in milliseconds, and a busy event loop never waits for a whole
file. A file decoded completely (by :func:`preload` ahead of any failure, or by a
playback that ran to its end) is kept per worker, keyed by (path, mtime, size) and
bounded by bytes; it stays playable if the file is deleted or becomes unreadable later.
Farewells synthesised while TTS was healthy are kept per (text, voice)
(:func:`presynthesize`), bounded by bytes too.

Audio that is ready ahead is also kept at the audio output's sample rate (a room's is
24 kHz; the packaged recordings are 16 kHz): livekit resamples at play time otherwise,
and its resampler holds back the first frame until a second one arrives, after a setup
that costs milliseconds the first time in a process (:func:`in_memory`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
from livekit import rtc
from livekit.agents import APIConnectOptions, tts

from agent_guard._log import log

if TYPE_CHECKING:
    from agent_guard._policy import FarewellAudio

__all__ = [
    "DECODED_MAX_BYTES",
    "PRESYNTH_MAX_BYTES",
    "check_file",
    "decode_file",
    "in_memory",
    "load_audio",
    "preload",
    "presynthesize",
    "presynthesized",
]

_FRAME_MS = 20
#: Frames handed over per trip to the decoding thread (one second of audio).
_CHUNK_FRAMES = 50
#: Packets :func:`check_file` may read before it must have found audio.
_CHECK_PACKETS = 64

#: Bound of the decoded-file cache, in bytes of PCM (a 60 s 48 kHz mono file is 5.8 MB).
DECODED_MAX_BYTES = 16 * 1024 * 1024
_DECODED: OrderedDict[tuple[str, int, int], tuple[rtc.AudioFrame, ...]] = OrderedDict()
# The newest cached key of each path: a deleted or replaced file still plays what it held.
_BY_PATH: dict[str, tuple[str, int, int]] = {}


def check_file(path: Path) -> str | None:
    """Why ``path`` cannot be played as a farewell, or ``None`` when it can.

    Opens the file and decodes until the first audio samples (a few packets), so a
    missing, empty, corrupt, non-audio or header-only file is caught when the policy is
    built rather than when a caller is waiting.
    """
    if not path.is_file():
        return "no such file"
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return "it has no audio stream"
            for n, frame in enumerate(container.decode(audio=0)):
                if frame.samples > 0:
                    return None
                if n >= _CHECK_PACKETS:
                    break
    except Exception as e:
        return f"it does not decode ({type(e).__name__})"
    return "it holds no audio samples"


async def load_audio(audio: FarewellAudio) -> AsyncIterable[rtc.AudioFrame]:
    """A fresh async iterable of frames for one playback of ``audio``."""
    if isinstance(audio, str | os.PathLike):
        return _file_frames(Path(audio))
    if isinstance(audio, AsyncIterable):
        return audio
    if callable(audio):
        return audio()
    return _iterate(audio)


async def preload(audio: FarewellAudio | None, *, rate: int | None = None) -> None:
    """Have ``audio`` ready to play, at ``rate`` if given, before any failure.

    A file is decoded completely; it and a sequence of frames are also resampled to
    ``rate`` (the audio output's). Other sources (factories, iterables) are left alone:
    they are made fresh for each playback.

    The work is the worker's, done once whoever asks first: a session closed at once
    stops waiting for it (its task is cancelled), not the work the next session needs.
    """
    if audio is None or is_ready(audio, rate=rate):
        return
    if isinstance(audio, str | os.PathLike):
        path = Path(audio)
        source: object = _cached(path)[0] or str(path)
    else:
        source = id(audio)  # the work holds `audio`: the id is not reused while it runs
    await _shared(("preload", source, rate), functools.partial(_preload, audio, rate))


async def _preload(audio: FarewellAudio, rate: int | None) -> None:
    if isinstance(audio, str | os.PathLike) and _frames_of(audio) is None:
        async for _ in _file_frames(Path(audio)):  # decoded and kept (see _file_frames)
            pass
    frames = _frames_of(audio)
    if frames and rate is not None:
        await _prepare_rate(frames, rate)


def is_ready(audio: FarewellAudio | None, *, rate: int | None = None) -> bool:
    """Whether :func:`preload` would have nothing to do for ``audio`` (and ``rate``)."""
    if audio is None:
        return True
    frames = in_memory(audio, rate)
    if frames is None:  # a file not decoded yet; other sources are made fresh each time
        return not isinstance(audio, str | os.PathLike)
    return not frames or rate is None or frames[0].sample_rate == rate


def in_memory(audio: FarewellAudio, rate: int | None) -> Sequence[rtc.AudioFrame] | None:
    """``audio``'s frames if they are all in memory (at ``rate`` when prepared), else None.

    In-memory frames start playing without waiting for anything: no decoding, no
    thread, no resampling when they were prepared at the output's rate.
    """
    frames = _frames_of(audio)
    if not frames:
        return None
    if rate is not None and frames[0].sample_rate != rate:
        entry = _AT_RATE.get((id(frames), rate))
        if entry is not None and entry[0] is frames:
            _AT_RATE.move_to_end((id(frames), rate))
            return entry[1]
    return frames


async def _iterate(frames: Sequence[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for frame in frames:
        yield frame


def _cached(path: Path) -> tuple[tuple[str, int, int] | None, tuple[rtc.AudioFrame, ...] | None]:
    """The file's cache key now (``None`` if it cannot be read) and its cached frames."""
    # abspath, not resolve(): no syscall per path component on the failure path (stat()
    # below follows a symlink to the file it points to, so a swapped link is a new key).
    name = os.path.abspath(path)
    try:
        st = path.stat()
    except OSError:
        # Deleted (or unreadable) after it was decoded: play what it held.
        known = _BY_PATH.get(name)
        return None, (_DECODED.get(known) if known is not None else None)
    key = (name, st.st_mtime_ns, st.st_size)
    frames = _DECODED.get(key)
    if frames is not None:
        _DECODED.move_to_end(key)
    return key, frames


async def _file_frames(path: Path) -> AsyncIterator[rtc.AudioFrame]:
    key, cached = _cached(path)
    if cached is not None:
        for frame in cached:
            yield frame
        return
    decoder = _Decoder(path)
    kept: list[rtc.AudioFrame] | None = []
    size = 0
    try:
        while True:
            chunk = await asyncio.to_thread(decoder.next_chunk)
            if not chunk:
                break
            if kept is not None:
                size += sum(len(f.data) for f in chunk) * 2
                if size > DECODED_MAX_BYTES:
                    kept = None  # too large to keep: decoded again on each playback
                else:
                    kept.extend(chunk)
            for frame in chunk:
                yield frame
    finally:
        decoder.close()  # possibly while a chunk is still decoding in a thread
    if not decoder.produced:
        raise ValueError(f"farewell audio file holds no audio: {path}")
    if kept is not None and key is not None:
        _store(key, tuple(kept))


def decode_file(path: Path) -> tuple[rtc.AudioFrame, ...]:
    """All of ``path``'s audio as 20 ms frames, decoded here and now (blocking)."""
    decoder = _Decoder(path)
    frames: list[rtc.AudioFrame] = []
    try:
        while chunk := decoder.next_chunk():
            frames.extend(chunk)
    finally:
        decoder._close()
    return tuple(frames)


def _frames_of(audio: FarewellAudio) -> Sequence[rtc.AudioFrame] | None:
    """The frames of a file decoded and cached, or of a sequence; None for other sources."""
    if isinstance(audio, str | os.PathLike):
        return _cached(Path(audio))[1]
    if isinstance(audio, AsyncIterable) or callable(audio):
        return None
    return audio


# -- at the output's rate -------------------------------------------------------------------

# (id(frames), rate) -> (frames, the same audio at rate). The source is kept in the entry:
# its id stays its own while the entry lives. Bounded by the bytes of both.
_AT_RATE: OrderedDict[
    tuple[int, int], tuple[Sequence[rtc.AudioFrame], tuple[rtc.AudioFrame, ...]]
] = OrderedDict()
AT_RATE_MAX_BYTES = 16 * 1024 * 1024


async def _prepare_rate(frames: Sequence[rtc.AudioFrame], rate: int) -> None:
    if frames[0].sample_rate == rate:
        return
    entry = _AT_RATE.get((id(frames), rate))
    if entry is not None and entry[0] is frames:
        return
    # CPU work (about 10 ms for the 4.7 s packaged recording): off the event loop.
    converted = await asyncio.to_thread(resample, frames, rate)
    _AT_RATE[(id(frames), rate)] = (frames, converted)
    while len(_AT_RATE) > 1 and _at_rate_bytes() > AT_RATE_MAX_BYTES:
        _AT_RATE.popitem(last=False)


async def _shared(key: tuple[object, ...], work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work()`` once per worker for ``key``, whoever asks first, and wait for it."""
    loop = asyncio.get_running_loop()
    task = _WORK.get(key)
    if task is None or task.get_loop() is not loop:
        task = loop.create_task(work(), name=f"agent_guard.{key[0]}")
        _WORK[key] = task
        task.add_done_callback(functools.partial(_work_done, key))
    await asyncio.shield(task)


def _work_done(key: tuple[object, ...], task: asyncio.Task[None]) -> None:
    if _WORK.get(key) is task:
        del _WORK[key]
    if not task.cancelled():
        task.exception()  # retrieved: every asker may have stopped waiting


# Preparations under way, shared by the sessions of a worker (see _shared).
_WORK: dict[tuple[object, ...], asyncio.Task[None]] = {}


def _at_rate_bytes() -> int:
    return sum(
        _pcm_bytes(source) + _pcm_bytes(converted) for source, converted in _AT_RATE.values()
    )


def _pcm_bytes(frames: Sequence[rtc.AudioFrame]) -> int:
    return sum(len(f.data) * 2 for f in frames)


def resample(frames: Sequence[rtc.AudioFrame], rate: int) -> tuple[rtc.AudioFrame, ...]:
    """``frames`` at ``rate``, as 20 ms frames, every sample kept (the resampler flushed).

    livekit's own resampler (the one it would use at play time), so what is heard is
    the same, only ready ahead.
    """
    channels = frames[0].num_channels
    resampler = rtc.AudioResampler(
        input_rate=frames[0].sample_rate, output_rate=rate, num_channels=channels
    )
    pcm = bytearray()
    for frame in frames:
        for out in resampler.push(frame):
            pcm += out.data.tobytes()
    for out in resampler.flush():
        pcm += out.data.tobytes()
    step = rate * _FRAME_MS // 1000 * 2 * channels
    return tuple(
        rtc.AudioFrame(
            data=bytes(pcm[i : i + step]),
            sample_rate=rate,
            num_channels=channels,
            samples_per_channel=len(pcm[i : i + step]) // (2 * channels),
        )
        for i in range(0, len(pcm) - 1, step)
    )


def _store(key: tuple[str, int, int], frames: tuple[rtc.AudioFrame, ...]) -> None:
    _DECODED[key] = frames
    _BY_PATH[key[0]] = key
    while _decoded_bytes() > DECODED_MAX_BYTES and len(_DECODED) > 1:
        old, _ = _DECODED.popitem(last=False)
        if _BY_PATH.get(old[0]) == old:
            del _BY_PATH[old[0]]


def _decoded_bytes() -> int:
    return sum(len(f.data) * 2 for frames in _DECODED.values() for f in frames)


class _Decoder:
    """Decodes any format PyAV reads to 16-bit mono 20 ms frames, a chunk per call.

    livekit's ``audio_frames_from_file`` drops the end of a file (64 ms of a WAV, up to
    96 ms of a FLAC, measured) because its resampler is never flushed. Decoding with
    PyAV directly and flushing the resampler keeps every sample, which matters for a
    farewell whose last word is "goodbye". Chunks are decoded in worker threads, one at a
    time; :meth:`close` may come from the event loop while one is still decoding (the
    playback was cut), so the container is only ever touched under a lock, and closed
    from a worker thread that waits for it.
    """

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._resampler: Any = None
        self._rate = 48000
        self._pcm = bytearray()
        self._done = False
        self._closed = False
        self.produced = False

    def _open(self) -> None:
        self._container = av.open(str(self._path))
        if not self._container.streams.audio:
            raise ValueError(f"farewell audio file has no audio stream: {self._path}")
        self._rate = self._container.streams.audio[0].rate or 48000
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self._rate)
        self._frames = iter(self._container.decode(audio=0))

    def next_chunk(self) -> list[rtc.AudioFrame]:
        with self._lock:
            if self._closed or (self._done and not self._pcm):
                return []
            return self._next_chunk()

    def _next_chunk(self) -> list[rtc.AudioFrame]:
        if self._container is None:
            self._open()
        assert self._frames is not None
        step = self._rate * _FRAME_MS // 1000 * 2
        want = step * _CHUNK_FRAMES
        while not self._done and not self._closed and len(self._pcm) < want:
            frame = next(self._frames, None)
            if frame is None:
                self._done = True
                for out in self._resampler.resample(None):
                    self._pcm += out.to_ndarray().tobytes()
                break
            for out in self._resampler.resample(frame):
                self._pcm += out.to_ndarray().tobytes()
        cut = len(self._pcm) if self._done else (len(self._pcm) // step) * step
        pcm, self._pcm = bytes(self._pcm[:cut]), self._pcm[cut:]
        chunk = [
            rtc.AudioFrame(
                data=pcm[i : i + step],
                sample_rate=self._rate,
                num_channels=1,
                samples_per_channel=len(pcm[i : i + step]) // 2,
            )
            for i in range(0, len(pcm) - 1, step)
        ]
        self.produced = self.produced or bool(chunk)
        return chunk

    def close(self) -> None:
        """Close the file without waiting (never from under a decoding chunk)."""
        self._closed = True
        asyncio.get_running_loop().run_in_executor(None, self._close)

    def _close(self) -> None:
        with self._lock:
            if self._container is not None:
                self._container.close()
                self._container = None


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


# One request per text: a presynthesis failure is reported like any TTS failure (a dead
# key ends the session at start, with the packaged recording), and retries would only
# spend more of a quota that may be the problem.
_ONE_ATTEMPT = APIConnectOptions(max_retry=0)


def presynthesized(engine: tts.TTS[Any], text: str) -> tuple[rtc.AudioFrame, ...] | None:
    """The cached audio of ``text`` in ``engine``'s voice, if any."""
    key = _voice_key(engine, text)
    frames = _PRESYNTH.get(key)
    if frames is not None:
        _PRESYNTH.move_to_end(key)
    return frames


async def presynthesize(
    engine: tts.TTS[Any], texts: Sequence[str], *, limit: float, rate: int | None = None
) -> None:
    """Synthesise each of ``texts`` once (per worker) and cache the frames.

    Each synthesis is given at most ``limit`` seconds. With ``rate`` (the audio
    output's), the frames are also kept resampled to it. The failures livekit reports
    for these requests are the guard's, not the session's (:data:`OWN_REQUEST`).
    """
    OWN_REQUEST.set(True)  # this task's context, inherited by the streams it opens
    for text in dict.fromkeys(texts):
        if (cached := presynthesized(engine, text)) is not None:
            if rate is not None:
                await _prepare_rate(cached, rate)
            continue
        try:
            async with (
                asyncio.timeout(limit),
                engine.synthesize(text, conn_options=_ONE_ATTEMPT) as stream,
            ):
                frames = tuple([ev.frame async for ev in stream])
        except Exception as e:
            log.warning("agent_guard.presynthesis_failed", error_type=type(e).__name__)
            return
        if frames:
            _store_presynthesized(_voice_key(engine, text), frames)
            log.debug("agent_guard.presynthesized", chars=len(text), frames=len(frames))
            if rate is not None:
                await _prepare_rate(frames, rate)


#: True in the tasks of a request the guard makes of the session's models itself (the
#: presynthesis): livekit reports its failures on the model's "error" event as it would a
#: reply's, from a task that inherits this context. They are not the session's failures:
#: they neither count toward a tolerance nor stand for a reply the caller is owed.
OWN_REQUEST: ContextVar[bool] = ContextVar("agent_guard_own_request", default=False)


def _store_presynthesized(key: tuple[str, ...], frames: tuple[rtc.AudioFrame, ...]) -> None:
    _PRESYNTH[key] = frames
    while sum(len(f.data) * 2 for fs in _PRESYNTH.values() for f in fs) > PRESYNTH_MAX_BYTES:
        _PRESYNTH.popitem(last=False)
