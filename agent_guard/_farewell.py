"""The farewell: what the caller hears before a guarded session closes, and how it is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from livekit import rtc
from livekit.agents import NOT_GIVEN, AgentSession, NotGivenOr, tts
from livekit.agents.voice import SpeechHandle

from agent_guard._log import log
from agent_guard._policy import Farewell, FarewellAudio, GuardPolicy, MessageFactory
from agent_guard._verdict import Kind, Verdict
from agent_guard.fleet import _gate as fleet  # fleet:

__all__ = [
    "DEFAULT_ERROR_MESSAGE",
    "DEFAULT_FAREWELL_AUDIO",
    "FarewellResult",
    "audio_for",
    "play_farewell",
    "presynthesize",
    "resolve",
]


#: Spoken on a terminal verdict when the policy leaves ``error_message`` NOT_GIVEN.
#: Generic on purpose: provider text (hints, error messages) is for developers.
DEFAULT_ERROR_MESSAGE = "Sorry, I can't continue right now. Please try again later. Goodbye."

#: A recording of DEFAULT_ERROR_MESSAGE (16 kHz mono WAV, 4.7 s), played when TTS cannot
#: speak and nothing else was configured. Made with:
#: ``espeak-ng -v en-us -s 180 -w raw.wav "<DEFAULT_ERROR_MESSAGE>"`` then
#: ``sox raw.wav -r 16000 -c 1 -b 16 farewell.wav silence 1 0.02 0.5% reverse
#: silence 1 0.02 0.5% reverse pad 0.05 0.25 norm -3``.
DEFAULT_FAREWELL_AUDIO = Path(__file__).parent / "assets" / "farewell.wav"

_FRAME_MS = 20
# Decoded files are cached per (path, mtime, size): decoding on the failure path would
# add latency exactly when the caller is waiting. Small bound: farewells are few.
_DECODED: OrderedDict[tuple[str, int, int], tuple[rtc.AudioFrame, ...]] = OrderedDict()
_DECODED_MAX = 16


@dataclass(frozen=True, slots=True)
class FarewellResult:
    """How the farewell went (times are ``loop.time()``)."""

    started_at: float
    finished_at: float
    completed: bool
    """Played to its end (not cut by the timeout, an error or a concurrent close)."""
    timed_out: bool
    fell_back: bool = False
    """TTS failed during the synthesised farewell and the recording was played instead."""


def resolve(policy: GuardPolicy, verdict: Verdict, *, final: bool = False) -> Farewell | None:
    """The farewell for a close caused by ``verdict``; ``None`` means close silently.

    Precedence: ``messages[category]``, ``messages[kind]``, then ``error_message``.
    ``final`` marks a close that is as final as a terminal verdict (the model gave up):
    the default apology is spoken for it too.
    """
    for key in (verdict.category, verdict.kind):
        if key in policy.messages:
            text = policy.messages[key]
            return None if text is None else Farewell(text=text, audio=policy.farewell_audio)
    msg = policy.error_message
    if msg is None:
        return None
    if isinstance(msg, str):
        return Farewell(text=msg, audio=policy.farewell_audio)
    if callable(msg):
        return _from_factory(msg, verdict, policy)
    if not (verdict.terminal or final):
        return None
    if policy.speak_hint and verdict.hint:
        # Opt-in only: the hint is gateway text (sanitised, bounded) meant for developers.
        return Farewell(text=verdict.hint, audio=policy.farewell_audio)
    return Farewell(text=DEFAULT_ERROR_MESSAGE, audio=policy.farewell_audio)


def _from_factory(
    factory: MessageFactory, verdict: Verdict, policy: GuardPolicy
) -> Farewell | None:
    try:
        out = factory(verdict)
    except Exception as e:
        # A broken factory must not make the close silent: fall back to the default.
        log.warning("agent_guard.message_factory_failed", error_type=type(e).__name__)
        return Farewell(text=DEFAULT_ERROR_MESSAGE, audio=policy.farewell_audio)
    if out is None or isinstance(out, Farewell):
        return out
    if isinstance(out, str) and out.strip():
        return Farewell(text=out, audio=policy.farewell_audio)
    log.warning("agent_guard.message_factory_invalid", returned=type(out).__name__)
    return Farewell(text=DEFAULT_ERROR_MESSAGE, audio=policy.farewell_audio)


def tts_cannot_speak(session: AgentSession[Any], verdict: Verdict) -> bool:
    """Whether a synthesised farewell would be inaudible.

    True when TTS is what failed, when the gateway says the TTS quota is gone, or
    when the session has no TTS at all (a realtime model cannot be asked to speak a
    fixed text through a dead connection).
    """
    if verdict.kind is Kind.TTS:
        return True
    if fleet.is_refusal(verdict):  # fleet: a caller refused at once must not wait for TTS
        return True
    if verdict.quota is not None and verdict.quota.quota_type == "tts":
        return True
    return _session_tts(session) is None


def _session_tts(session: AgentSession[Any]) -> tts.TTS[Any] | None:
    agent_tts: Any = None
    with contextlib.suppress(Exception):
        # Agent(tts=...) overrides the session's TTS for that agent.
        agent_tts = session.current_agent.tts
    if isinstance(agent_tts, tts.TTS):
        return agent_tts
    return session.tts


def audio_for(
    session: AgentSession[Any], farewell: Farewell, verdict: Verdict
) -> FarewellAudio | None:
    """Which recording to play for ``farewell`` (``None``: synthesise it now)."""
    if farewell.audio is not None:
        return farewell.audio
    engine = _session_tts(session)
    if engine is not None and (cached := presynthesized(engine, farewell.text)) is not None:
        return cached
    if tts_cannot_speak(session, verdict):
        return DEFAULT_FAREWELL_AUDIO
    return None


def transcript_for(farewell: Farewell, recording: FarewellAudio | None) -> str:
    """The text sent with the audio: the packaged recording says DEFAULT_ERROR_MESSAGE."""
    return DEFAULT_ERROR_MESSAGE if recording is DEFAULT_FAREWELL_AUDIO else farewell.text


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

    livekit's ``audio_frames_from_file`` drops the end of a file (notes §4: 64 ms of a
    WAV; measured here, up to 96 ms of a FLAC) because its resampler is never flushed.
    Decoding with PyAV directly and flushing the resampler keeps every sample, which
    matters for a farewell whose last word is "goodbye".
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
            data=bytes(pcm[i : i + step]), sample_rate=rate, num_channels=1,
            samples_per_channel=len(pcm[i : i + step]) // 2,
        )
        for i in range(0, len(pcm) - 1, step)
    )  # fmt: skip


async def play_farewell(
    session: AgentSession[Any],
    farewell: Farewell,
    *,
    recording: FarewellAudio | None,
    deadline: float,
    tts_failed: asyncio.Event | None = None,
) -> FarewellResult:
    """Play ``farewell`` now (from ``recording`` if given), giving up at ``deadline``.

    ``deadline`` is a ``loop.time()``. When the farewell is synthesised and
    ``tts_failed`` is set while it plays (TTS broke during the farewell itself), the
    packaged recording is played instead: a failed TTS ``say`` resolves its handle as
    if all went well (notes §4), so the caller would otherwise hear nothing.

    Never raises (except ``CancelledError``): every failure is logged and reported as
    an incomplete farewell, because the close must follow whatever happens here.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    handle = None
    completed = timed_out = fell_back = False
    try:
        async with asyncio.timeout_at(deadline):
            # Interrupt first: a farewell queues behind the current speech, including
            # an LLM generation that is still retrying (4 attempts, ~4 s by default).
            # Interrupting after say() would cut the farewell too (AgentActivity.interrupt
            # walks the whole queue).
            with contextlib.suppress(RuntimeError):
                await session.interrupt(force=True)
            audio: NotGivenOr[AsyncIterable[rtc.AudioFrame]] = NOT_GIVEN
            source: _Tracked | None = None
            if recording is not None:
                # With audio= livekit skips TTS entirely (agent_activity.py:1738).
                source = _Tracked(await load_audio(recording))
                audio = source
            if tts_failed is not None:
                # Only TTS failures of the farewell itself matter from here on, not late
                # ones from the reply that was just interrupted.
                tts_failed.clear()
            handle = session.say(
                transcript_for(farewell, recording),
                audio=audio,
                allow_interruptions=False,
                add_to_chat_ctx=False,
            )
            # Never raises: a failed TTS resolves the handle normally (notes §4).
            await _playout_or(handle, tts_failed if recording is None else None)
            if tts_failed is not None and tts_failed.is_set() and recording is None:
                fell_back = True
                log.warning("agent_guard.farewell_tts_failed", fallback="recording")
                if not handle.done():
                    handle.interrupt(force=True)
                source = _Tracked(await load_audio(DEFAULT_FAREWELL_AUDIO))
                handle = session.say(
                    DEFAULT_ERROR_MESSAGE,
                    audio=source,
                    allow_interruptions=False,
                    add_to_chat_ctx=False,
                )
                await handle.wait_for_playout()
            # livekit resolves a say() whose audio source or TTS failed like a finished one
            # (not interrupted), so "completed" also needs the source to have run dry.
            completed = (
                not handle.interrupted
                and (source is None or source.exhausted)
                and not (tts_failed is not None and tts_failed.is_set() and not fell_back)
            )
    except TimeoutError:
        timed_out = True
        log.warning("agent_guard.farewell_timed_out", after=round(loop.time() - started, 3))
    except Exception as e:
        log.warning("agent_guard.farewell_failed", error_type=type(e).__name__)
    finally:
        # wait_for_playout is shielded: the speech keeps going unless told to stop.
        if handle is not None and not handle.done():
            handle.interrupt(force=True)
    return FarewellResult(
        started_at=started,
        finished_at=loop.time(),
        completed=completed,
        timed_out=timed_out,
        fell_back=fell_back,
    )


class _Tracked:
    """Wraps a frame source to tell whether it was played to its end without error."""

    def __init__(self, frames: AsyncIterable[rtc.AudioFrame]) -> None:
        self._frames = frames
        self.exhausted = False

    async def __aiter__(self) -> AsyncIterator[rtc.AudioFrame]:
        async for frame in self._frames:
            yield frame
        self.exhausted = True


async def _playout_or(handle: SpeechHandle, event: asyncio.Event | None) -> None:
    """Until ``handle`` has played out or ``event`` is set, whichever comes first."""
    playout = asyncio.ensure_future(handle.wait_for_playout())
    if event is None:
        await playout
        return
    broke = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({playout, broke}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        playout.cancel()
        broke.cancel()
        if playout.done() and not playout.cancelled() and (exc := playout.exception()):
            # Retrieved here (no "Task exception was never retrieved"); the caller logs it.
            raise exc


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
