"""An audio sink that records what an ``AgentSession`` plays, for room-less tests.

A text-mode session has no room and so no audio output: set
``session.output.audio = CaptureAudioOutput()`` and every frame the agent speaks (TTS or
``say(audio=...)``) lands here, timestamped, ready to be measured or written to a WAV file.
"""

from __future__ import annotations

import asyncio
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from livekit import rtc
from livekit.agents.voice import io

__all__ = ["CaptureAudioOutput", "CapturedFrame", "Segment"]


@dataclass(frozen=True)
class CapturedFrame:
    """One frame handed to the sink.

    Attributes:
        frame: The frame exactly as livekit passed it.
        at: ``time.monotonic()`` when it arrived.
    """

    frame: rtc.AudioFrame
    at: float


@dataclass(eq=False)
class Segment:
    """One playback segment: the frames between two flushes (one speech, in practice).

    Attributes:
        frames: The segment's frames, in order.
        started_at: ``time.monotonic()`` of its first frame, when "playback" started.
        finished_at: ``time.monotonic()`` when playback was reported finished, else None.
        interrupted: Whether ``clear_buffer`` cut it short.
        playback_position: The seconds reported as played, once finished.
    """

    frames: list[CapturedFrame]
    started_at: float
    finished_at: float | None = None
    interrupted: bool = False
    playback_position: float | None = None

    @property
    def duration(self) -> float:
        """Seconds of audio in the segment."""
        return sum(captured.frame.duration for captured in self.frames)


class CaptureAudioOutput(io.AudioOutput):
    """An ``AudioOutput`` that keeps every frame and plays nothing.

    It honours the contract ``AgentSession`` relies on: ``on_playback_started`` on a
    segment's first frame, and exactly one ``on_playback_finished`` per segment, whether it is
    flushed (``interrupted=False``, position = its duration) or cleared (``interrupted=True``,
    position = what had "played"). A sink that skips one leaves ``wait_for_playout()``, and
    with it ``AgentSession.aclose()``, waiting forever.

    Args:
        sample_rate: The rate the sink requires; livekit resamples to it
            (``voice/generation.py``, audio forwarding). None accepts any rate unchanged.
        realtime: If True, a segment finishes once its audio duration has elapsed since its
            first frame, as a speaker would, so ``SpeechHandle.wait_for_playout()`` reflects
            audio length. If False, it finishes as soon as it is flushed.
        label: The sink's label in livekit logs.

    Attributes:
        frames: Every frame captured, across segments.
        segments: Every segment, in order.
    """

    def __init__(
        self,
        *,
        sample_rate: int | None = None,
        realtime: bool = True,
        label: str = "CaptureAudioOutput",
    ) -> None:
        super().__init__(
            label=label,
            # Without pause support the session logs that it cannot resume false
            # interruptions; a capture sink has nothing to pause.
            capabilities=io.AudioOutputCapabilities(pause=False),
            sample_rate=sample_rate,
        )
        self.frames: list[CapturedFrame] = []
        self.segments: list[Segment] = []
        self._realtime = realtime
        self._capturing: Segment | None = None
        self._playing: dict[Segment, asyncio.TimerHandle] = {}

    @property
    def first_frame_at(self) -> float | None:
        """``time.monotonic()`` of the first frame captured, None if there is none."""
        return self.frames[0].at if self.frames else None

    @property
    def duration(self) -> float:
        """Seconds of audio captured, across segments."""
        return sum(captured.frame.duration for captured in self.frames)

    def pcm(self, *, since: float | None = None) -> bytes:
        """All captured samples (captured after ``since``, if given), as 16-bit LE PCM.

        The samples are at the frames' own rate and channel count: ``sample_rate`` if given,
        else whatever the source produced (24 kHz mono for OpenAI TTS, the frames' rate for
        ``say(audio=...)``). Nothing is resampled.

        Raises:
            ValueError: Frames of different rates or channel counts were captured.
        """
        self._format()
        return b"".join(
            bytes(captured.frame.data)
            for captured in self.frames
            if since is None or captured.at > since
        )

    def write_wav(self, path: str | Path, *, since: float | None = None) -> None:
        """Write the captured samples (after ``since``, if given) to a 16-bit PCM WAV file.

        Raises:
            ValueError: Nothing was captured, or frames of different rates or channel counts.
        """
        fmt = self._format()
        if fmt is None:
            raise ValueError("no audio captured")
        sample_rate, num_channels = fmt
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(num_channels)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(self.pcm(since=since))

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Record ``frame``; the first one after a flush starts a segment."""
        # The base class counts segments here; wait_for_playout() compares against that count.
        await super().capture_frame(frame)
        captured = CapturedFrame(frame=frame, at=time.monotonic())
        self.frames.append(captured)
        if self._capturing is None:
            self._capturing = Segment(frames=[captured], started_at=captured.at)
            self.segments.append(self._capturing)
            self.on_playback_started(created_at=time.time())
        else:
            # Frames after a clear_buffer but before the flush are kept, though never "played".
            self._capturing.frames.append(captured)

    def flush(self) -> None:
        """End the current segment; it finishes now, or once its audio has had time to play."""
        super().flush()
        segment, self._capturing = self._capturing, None
        if segment is None or segment.finished_at is not None:
            return  # nothing captured since the last flush, or clear_buffer already finished it
        if not self._realtime:
            self._finish(segment, interrupted=False, position=segment.duration)
            return
        remaining = segment.started_at + segment.duration - time.monotonic()
        self._playing[segment] = asyncio.get_running_loop().call_later(
            max(remaining, 0.0), self._finish_played, segment
        )

    def clear_buffer(self) -> None:
        """Stop "playback": every unfinished segment finishes as interrupted."""
        now = time.monotonic()
        playing, self._playing = self._playing, {}
        for segment, timer in playing.items():
            timer.cancel()
            self._finish(segment, interrupted=True, position=_played(segment, now))
        # livekit flushes before clearing (voice/generation.py, _audio_forwarding_task), but a
        # clear while still capturing must finish the segment too, or its playout never ends.
        capturing = self._capturing
        if capturing is not None and capturing.finished_at is None:
            position = _played(capturing, now) if self._realtime else capturing.duration
            self._finish(capturing, interrupted=True, position=position)

    def _finish_played(self, segment: Segment) -> None:
        del self._playing[segment]
        self._finish(segment, interrupted=False, position=segment.duration)

    def _finish(self, segment: Segment, *, interrupted: bool, position: float) -> None:
        segment.finished_at = time.monotonic()
        segment.interrupted = interrupted
        segment.playback_position = position
        self.on_playback_finished(playback_position=position, interrupted=interrupted)

    def _format(self) -> tuple[int, int] | None:
        formats = {(c.frame.sample_rate, c.frame.num_channels) for c in self.frames}
        if len(formats) > 1:
            raise ValueError(f"captured frames differ in (sample_rate, channels): {formats}")
        return formats.pop() if formats else None


def _played(segment: Segment, now: float) -> float:
    """How much of ``segment`` a real-time speaker would have played by ``now``."""
    return min(max(now - segment.started_at, 0.0), segment.duration)
