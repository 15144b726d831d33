"""CaptureAudioOutput: the playback contract AgentSession relies on, and what it records."""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice.io import PlaybackFinishedEvent, PlaybackStartedEvent

from agent_guard.testing import CaptureAudioOutput


def tone(seconds: float, *, sample_rate: int = 24_000, frame_ms: int = 10) -> list[rtc.AudioFrame]:
    """A 440 Hz tone cut into ``frame_ms`` frames."""
    count = round(seconds * sample_rate)
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(count) / sample_rate)).astype("<i2")
    step = sample_rate * frame_ms // 1000
    return [
        rtc.AudioFrame(
            data=samples[start : start + step].tobytes(),
            sample_rate=sample_rate,
            num_channels=1,
            samples_per_channel=len(samples[start : start + step]),
        )
        for start in range(0, count, step)
    ]


async def feed(frames: Iterable[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for frame in frames:
        yield frame


def finished_events(sink: CaptureAudioOutput) -> list[PlaybackFinishedEvent]:
    events: list[PlaybackFinishedEvent] = []
    sink.on("playback_finished", events.append)
    return events


async def capture(sink: CaptureAudioOutput, frames: Iterable[rtc.AudioFrame]) -> None:
    for frame in frames:
        await sink.capture_frame(frame)


def text_session() -> AgentSession[None]:
    return AgentSession(vad=None, turn_handling={"turn_detection": "manual"})


class TestPlaybackContract:
    """Every captured segment is reported finished exactly once, flushed or cleared."""

    async def test_flush_finishes_the_segment(self) -> None:
        sink = CaptureAudioOutput(realtime=False)
        started: list[PlaybackStartedEvent] = []
        sink.on("playback_started", started.append)
        events = finished_events(sink)

        await capture(sink, tone(0.2))
        sink.flush()

        assert len(started) == 1
        assert [(e.interrupted, round(e.playback_position, 3)) for e in events] == [(False, 0.2)]
        async with asyncio.timeout(0.1):
            assert await sink.wait_for_playout() is events[0]

    async def test_realtime_playout_lasts_the_audio_duration(self) -> None:
        sink = CaptureAudioOutput()
        await capture(sink, tone(0.3))
        sink.flush()
        started = time.monotonic()
        async with asyncio.timeout(2):
            event = await sink.wait_for_playout()
        assert 0.25 <= time.monotonic() - started < 0.5
        assert not event.interrupted
        assert event.playback_position == pytest.approx(0.3)

    async def test_clear_buffer_reports_what_was_played(self) -> None:
        sink = CaptureAudioOutput()
        events = finished_events(sink)
        await capture(sink, tone(1.0))
        sink.flush()
        await asyncio.sleep(0.2)
        sink.clear_buffer()

        (event,) = events
        assert event.interrupted
        assert 0.15 <= event.playback_position < 0.4
        assert sink.segments[0].interrupted
        await asyncio.sleep(0)
        sink.clear_buffer()  # livekit clears twice on interruption: nothing left to report
        assert len(events) == 1

    async def test_clear_before_flush_finishes_once(self, caplog: pytest.LogCaptureFixture) -> None:
        sink = CaptureAudioOutput(realtime=False)
        events = finished_events(sink)
        await capture(sink, tone(0.2))
        sink.clear_buffer()
        await capture(sink, tone(0.1))  # kept, though never "played"
        sink.flush()

        with caplog.at_level(logging.WARNING):
            async with asyncio.timeout(0.1):
                await sink.wait_for_playout()
        assert [(e.interrupted, round(e.playback_position, 3)) for e in events] == [(True, 0.2)]
        assert "more times than playback segments" not in caplog.text
        assert sink.duration == pytest.approx(0.3)

    async def test_flush_without_audio_reports_nothing(self) -> None:
        sink = CaptureAudioOutput()
        events = finished_events(sink)
        sink.flush()
        sink.clear_buffer()
        async with asyncio.timeout(0.1):
            await sink.wait_for_playout()
        assert events == []
        assert sink.segments == []


class TestRecording:
    """Frames, segments, timestamps, PCM and WAV are kept as captured."""

    async def test_frames_and_segments(self) -> None:
        sink = CaptureAudioOutput(realtime=False)
        first, second = tone(0.1), tone(0.05)
        before = time.monotonic()
        await capture(sink, first)
        sink.flush()
        await capture(sink, second)
        sink.flush()

        assert [c.frame for c in sink.frames] == first + second
        assert [[c.frame for c in s.frames] for s in sink.segments] == [first, second]
        assert [s.duration for s in sink.segments] == pytest.approx([0.1, 0.05])
        assert sink.duration == pytest.approx(0.15)
        assert sink.first_frame_at is not None
        assert before <= sink.first_frame_at <= sink.segments[1].started_at
        assert all(s.finished_at is not None and not s.interrupted for s in sink.segments)

    async def test_pcm_and_wav(self, tmp_path: Path) -> None:
        frames = tone(0.1)
        sink = CaptureAudioOutput(realtime=False)
        await capture(sink, frames)
        sink.flush()

        assert sink.pcm() == b"".join(bytes(f.data) for f in frames)
        sink.write_wav(tmp_path / "out.wav")
        with wave.open(str(tmp_path / "out.wav"), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24_000)
            assert wav.readframes(wav.getnframes()) == sink.pcm()

    async def test_mixed_rates_and_empty_capture_are_refused(self, tmp_path: Path) -> None:
        sink = CaptureAudioOutput(realtime=False)
        assert sink.first_frame_at is None
        with pytest.raises(ValueError, match="no audio"):
            sink.write_wav(tmp_path / "empty.wav")
        assert sink.pcm() == b""
        await capture(sink, tone(0.02, sample_rate=24_000) + tone(0.02, sample_rate=16_000))
        with pytest.raises(ValueError, match="differ"):
            sink.pcm()


class TestWithAgentSession:
    """A room-less AgentSession plays through the sink and can always close."""

    async def test_say_plays_exactly_the_given_frames(self) -> None:
        frames = tone(0.3)
        session = text_session()
        sink = CaptureAudioOutput()
        session.output.audio = sink
        async with asyncio.timeout(5):
            await session.start(Agent(instructions="be brief"))
            handle = session.say("bye", audio=feed(frames), add_to_chat_ctx=False)
            await handle.wait_for_playout()
            await session.aclose()

        assert sink.pcm() == b"".join(bytes(f.data) for f in frames)
        (segment,) = sink.segments
        assert not segment.interrupted
        assert segment.finished_at is not None
        assert segment.finished_at - segment.started_at >= 0.29  # played in real time
        assert all(item.role != "assistant" for item in session.history.messages())

    async def test_sink_rate_is_honoured(self) -> None:
        session = text_session()
        sink = CaptureAudioOutput(sample_rate=48_000, realtime=False)
        session.output.audio = sink
        async with asyncio.timeout(5):
            await session.start(Agent(instructions="be brief"))
            await session.say("bye", audio=feed(tone(0.3)), add_to_chat_ctx=False)
            await session.aclose()

        # livekit resamples to the sink's rate (voice/generation.py, audio forwarding).
        assert {c.frame.sample_rate for c in sink.frames} == {48_000}
        assert sink.duration == pytest.approx(0.3, abs=0.02)

    async def test_interrupted_speech_is_reported(self) -> None:
        session = text_session()
        sink = CaptureAudioOutput()
        playing = asyncio.Event()
        sink.on("playback_started", lambda _: playing.set())
        session.output.audio = sink
        async with asyncio.timeout(5):
            await session.start(Agent(instructions="be brief"))
            handle = session.say("a long goodbye", audio=feed(tone(3.0)), add_to_chat_ctx=False)
            await playing.wait()
            await asyncio.sleep(0.2)
            await session.interrupt(force=True)
            await handle.wait_for_playout()
            started = time.monotonic()
            await session.aclose()

        assert handle.interrupted
        assert time.monotonic() - started < 1.0
        (segment,) = sink.segments
        assert segment.interrupted
        assert segment.playback_position is not None
        assert 0.15 <= segment.playback_position < 1.0
