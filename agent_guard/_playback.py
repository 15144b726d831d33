"""Step 4b of the data path: playing the farewell through the session, bounded.

The farewell goes through ``session.say(..., allow_interruptions=False,
add_to_chat_ctx=False)``: with ``audio=`` no TTS is involved at all, which is how a
recording (or a pre-synthesised farewell) is heard when TTS is what died.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from livekit import rtc
from livekit.agents import NOT_GIVEN, AgentSession, NotGivenOr
from livekit.agents.voice import SpeechHandle

from agent_guard import _seams
from agent_guard._audio import load_audio, presynthesized
from agent_guard._log import log
from agent_guard._policy import Farewell
from agent_guard._verdict import Kind, Verdict

__all__ = ["FarewellResult", "FarewellSource", "choose", "play"]

FarewellSource: TypeAlias = Literal["tts", "presynthesized", "recording", "default", "text"]
"""Where the farewell's sound came from: synthesised by TTS now, pre-synthesised while TTS
was healthy, the policy's recording, the packaged ``Farewell.DEFAULT`` recording, or
nowhere (``"text"``: the session has no audio output, only the transcript carried it)."""


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
    text: str = ""
    """The words of the farewell played (the recording's own words when it replaced TTS)."""
    source: FarewellSource = "tts"
    """Where its sound came from (see :data:`FarewellSource`)."""


def tts_cannot_speak(session: AgentSession[Any], verdict: Verdict) -> bool:
    """Whether a synthesised farewell would be inaudible.

    True when TTS is what failed, when the gateway says the TTS quota is gone, or when
    the session has no TTS at all (a realtime model cannot be asked to speak a fixed
    text through a dead connection).
    """
    if verdict.kind is Kind.TTS:
        return True
    if verdict.quota is not None and verdict.quota.quota_type == "tts":
        return True
    return _seams.speaking_tts(session) is None


def choose(session: AgentSession[Any], farewell: Farewell, verdict: Verdict) -> Farewell:
    """The farewell as it will be played: ``audio`` set means a recording, else TTS.

    The policy's recording first, then the farewell pre-synthesised in the agent's
    voice, then TTS now, or the packaged recording (with its own words) when TTS cannot
    speak.
    """
    if session.output.audio is None:
        # Nothing can be heard (a text-mode session, a test): the transcript alone carries
        # the farewell, so it shows the words configured rather than a recording's.
        return Farewell(text=farewell.text)
    if farewell.audio is not None:
        return farewell
    engine = _seams.speaking_tts(session)
    if engine is not None and (cached := presynthesized(engine, farewell.text)) is not None:
        return Farewell(text=farewell.text, audio=cached)
    if tts_cannot_speak(session, verdict):
        return Farewell.DEFAULT
    return farewell


async def play(
    session: AgentSession[Any],
    farewell: Farewell,
    *,
    deadline: float,
    tts_failed: asyncio.Event | None = None,
) -> FarewellResult:
    """Play ``farewell`` now, giving up at ``deadline`` (a ``loop.time()``).

    When the farewell is synthesised and ``tts_failed`` is set while it plays (TTS broke
    during the farewell itself), the packaged recording is played instead: a failed TTS
    ``say`` resolves its handle as if all went well, so the caller would otherwise hear
    nothing.

    Never raises (except ``CancelledError``): every failure is logged and reported as an
    incomplete farewell, because the close must follow whatever happens here.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    handle = None
    synthesised = farewell.audio is None
    completed = timed_out = fell_back = False
    said, origin = farewell.text, _origin(session, farewell)
    try:
        async with asyncio.timeout_at(deadline):
            # Interrupt first: a farewell queues behind the current speech, including an
            # LLM generation that is still retrying. Interrupting after say() would cut
            # the farewell too (interrupt walks the whole queue).
            with contextlib.suppress(RuntimeError):
                await session.interrupt(force=True)
            if tts_failed is not None:
                # Only TTS failures of the farewell itself matter from here on, not late
                # ones from the reply that was just interrupted.
                tts_failed.clear()
            handle, source = await _say(session, farewell)
            await _playout_or(handle, tts_failed if synthesised else None)
            if synthesised and tts_failed is not None and tts_failed.is_set():
                fell_back = True
                log.warning("agent_guard.farewell_tts_failed", fallback="recording")
                if not handle.done():
                    handle.interrupt(force=True)
                handle, source = await _say(session, Farewell.DEFAULT)
                said, origin = Farewell.DEFAULT.text, "default"
                await handle.wait_for_playout()
            # livekit resolves a say() whose audio source or TTS failed like a finished
            # one (not interrupted), so "completed" also needs the source to have run dry.
            completed = (
                not handle.interrupted
                and (source is None or source.exhausted)
                and not (synthesised and tts_failed is not None and tts_failed.is_set())
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
        text=said,
        source=origin,
    )


def _origin(session: AgentSession[Any], farewell: Farewell) -> FarewellSource:
    """Where the sound of ``farewell`` (as :func:`choose` returned it) comes from."""
    if farewell.audio is None:
        return "text" if session.output.audio is None else "tts"
    if farewell.audio is Farewell.DEFAULT.audio:
        return "default"
    engine = _seams.speaking_tts(session)
    with contextlib.suppress(Exception):  # a report only: never in the farewell's way
        if engine is not None and farewell.audio is presynthesized(engine, farewell.text):
            return "presynthesized"
    return "recording"


async def _say(
    session: AgentSession[Any], farewell: Farewell
) -> tuple[SpeechHandle, _Tracked | None]:
    audio: NotGivenOr[AsyncIterable[rtc.AudioFrame]] = NOT_GIVEN
    source = None
    if farewell.audio is not None:
        source = _Tracked(await load_audio(farewell.audio))
        audio = source
    handle = session.say(
        farewell.text, audio=audio, allow_interruptions=False, add_to_chat_ctx=False
    )
    return handle, source


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
