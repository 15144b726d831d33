"""STT stalls: the caller spoke (the VAD heard it), no transcript ever came."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice import io
from livekit.plugins import openai, silero

from agent_guard import Category, GuardPolicy, Kind, guard
from agent_guard._audio import decode_file
from agent_guard._policy import DEFAULT_STALL_AUDIO
from agent_guard.testing import CaptureAudioOutput, GatewaySimulator, Hang, Reply, Transcript
from tests.helpers import SECRET_KEY, chat_texts
from tests.watchdog.helpers import BOUND, STALL, heard_after, wait_until

_FRAME = 0.02
_RATE = 16_000


class Microphone(io.AudioInput):
    """A caller's microphone in real time: 20 ms frames of silence, or of queued speech."""

    def __init__(self) -> None:
        super().__init__(label="Microphone")
        self._queue: collections.deque[rtc.AudioFrame] = collections.deque()
        self._next: float | None = None
        self.spoken_until: float | None = None

    def speak(self, frames: Iterable[rtc.AudioFrame]) -> None:
        self._queue.extend(frames)

    async def __anext__(self) -> rtc.AudioFrame:
        self._next = (self._next or time.monotonic()) + _FRAME
        await asyncio.sleep(max(0.0, self._next - time.monotonic()))
        if self._queue:
            frame = self._queue.popleft()
            if not self._queue:
                self.spoken_until = time.monotonic()
            return frame
        samples = int(_RATE * _FRAME)
        return rtc.AudioFrame(b"\x00\x00" * samples, _RATE, 1, samples)


async def stt_session(
    sim: GatewaySimulator, **policy: Any
) -> tuple[AgentSession[Any], Any, CaptureAudioOutput, Microphone]:
    """A guarded session hearing a microphone: silero VAD, the real openai STT over HTTP."""
    session: AgentSession[Any] = AgentSession(
        stt=openai.STT(base_url=sim.base_url, api_key=SECRET_KEY),
        llm=openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key=SECRET_KEY),
        tts=openai.TTS(base_url=sim.base_url, api_key=SECRET_KEY),
        vad=silero.VAD.load(),
    )
    g = guard(session, GuardPolicy(**{"stall_timeout": STALL, **policy}))
    mic = Microphone()
    session.input.audio = mic
    out = CaptureAudioOutput(realtime=True)
    session.output.audio = out
    await session.start(Agent(instructions="Be brief."))
    return session, g, out, mic


def speech() -> tuple[rtc.AudioFrame, ...]:
    """1.5 s of real (synthetic) speech: the packaged "Sorry, one moment." recording."""
    return decode_file(DEFAULT_STALL_AUDIO)


async def test_transcribed_speech_is_not_a_stall(sim: GatewaySimulator) -> None:
    """The STT answers: the caller's words reach the chat, no verdict."""
    sim.stt.default = Transcript("What time is it?")
    sim.llm.default = Reply("It is noon.")
    session, g, _out, mic = await stt_session(sim)

    mic.speak(speech())
    await wait_until(lambda: "It is noon." in chat_texts(session), within=15)

    assert "What time is it?" in chat_texts(session)
    assert g.verdicts == ()
    await session.aclose()


async def test_stt_that_never_answers_is_a_stall(sim: GatewaySimulator) -> None:
    """VAD heard speech, the transcription request hangs: an ``stt`` stall, and a notice."""
    sim.stt.default = Hang(after_headers=True)
    session, g, out, mic = await stt_session(sim)

    mic.speak(speech())
    await wait_until(lambda: len(g.verdicts) > 0, within=15)
    await wait_until(lambda: out.frames, within=5)

    assert [(v.kind, v.category) for v in g.verdicts] == [(Kind.STT, Category.STALLED)]
    assert len(sim.requests_for("stt")) == 1
    assert mic.spoken_until is not None
    # The notice is heard within the bound of the end of speech, plus the ~0.55 s of
    # silence silero needs to call the end of speech.
    waited = heard_after(out, mic.spoken_until)
    assert waited is not None and waited < BOUND + 0.6
    assert g.decision is None
    await session.aclose()


async def test_empty_transcript_is_an_answer(sim: GatewaySimulator) -> None:
    """The STT answers with nothing (a cough, not words): alive, not a stall."""
    sim.stt.default = Transcript("")
    session, g, out, mic = await stt_session(sim)

    mic.speak(speech())
    await wait_until(lambda: len(sim.requests_for("stt")) == 1, within=10)
    await asyncio.sleep(2 * STALL)

    assert g.verdicts == ()
    assert out.frames == []
    await session.aclose()
