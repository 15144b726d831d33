"""Step 4b of the data path: playing the farewell through the session, bounded.

The farewell goes through ``session.say(..., allow_interruptions=False,
add_to_chat_ctx=False)``: with ``audio=`` no TTS is involved at all, which is how a
recording (or a pre-synthesised farewell) is heard when TTS is what died.

Nothing here may keep the caller in silence or the close waiting past the deadline:

* a recording that fails before its first frame (a file that no longer decodes, a
  factory that raises, a source with no frame within a second) is replaced by the next
  candidate — the words through TTS, then the packaged recording; a synthesised
  farewell whose TTS fails is replaced by the packaged recording;
* a recording that is not in memory reaches livekit through a pump of our own, so a
  source that ignores cancellation cannot hold livekit's speech task (and with it the
  close); frames in memory (prepared ahead by :func:`prepare`) are handed over as they
  are, so the first one reaches the audio output with no task of ours or resampler
  in between;
* an audio output that never reports a cut segment finished is reported for
  (:func:`agent_guard._seams.finish_playback`) a moment after the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice import SpeechHandle

from agent_guard import _seams, fleet
from agent_guard._audio import (
    in_memory,
    is_ready,
    load_audio,
    preload,
    presynthesize,
    presynthesized,
)
from agent_guard._log import log
from agent_guard._message import static_texts
from agent_guard._policy import Farewell, GuardPolicy
from agent_guard._verdict import Kind, Verdict

__all__ = ["FarewellResult", "FarewellSource", "choose", "needs_preparing", "play", "prepare"]

FarewellSource: TypeAlias = Literal["tts", "presynthesized", "recording", "default", "text"]
"""Where the farewell's sound came from: synthesised by TTS now, pre-synthesised while TTS
was healthy, the policy's recording, the packaged ``Farewell.DEFAULT`` recording, or
nowhere (``"text"``: the session has no audio output, only the transcript carried it)."""

#: Frames buffered between a recording and livekit (a second of 20 ms frames).
_PUMP_FRAMES = 50
#: How long a recording that is not in memory may take to yield its first frame (at
#: most half the time left) before the next candidate is tried: decoding one takes
#: milliseconds, so a source this slow is broken, and the caller is waiting.
_FIRST_FRAME_WAIT = 1.0
#: How long an audio output may take to report a cut segment finished, before the guard
#: reports it (livekit itself waits 5 s).
_OUTPUT_GRACE = 0.03


@dataclass(frozen=True, slots=True)
class FarewellResult:
    """How the farewell went (times are ``loop.time()``)."""

    started_at: float
    finished_at: float
    completed: bool
    """Played to its end (not cut by the timeout, an error or a concurrent close)."""
    timed_out: bool
    fell_back: bool = False
    """What was chosen first could not be played, and a later candidate was."""
    text: str | None = None
    """The words of what was played (its transcript): ``None`` if nothing was."""
    source: FarewellSource | None = None
    """Where its sound came from (see :data:`FarewellSource`); ``None`` if nothing was
    played."""


def tts_cannot_speak(session: AgentSession[Any], verdict: Verdict) -> bool:
    """Whether a synthesised farewell would be inaudible.

    True when TTS is what failed, when the gateway says the TTS quota is gone, or when
    the session has no TTS at all (a realtime model cannot be asked to speak a fixed
    text through a dead connection).
    """
    if verdict.kind is Kind.TTS:
        return True
    if fleet.is_refusal(verdict):
        # Refused by the fleet breaker at the first reply: ready audio plays at once,
        # where a synthesis would keep the caller waiting.
        return True
    if verdict.quota is not None and verdict.quota.quota_type == "tts":
        return True
    return _seams.speaking_tts(session) is None


@dataclass(frozen=True, slots=True)
class _Candidate:
    farewell: Farewell
    source: FarewellSource


def choose(session: AgentSession[Any], farewell: Farewell, verdict: Verdict) -> Farewell:
    """The farewell as it will be tried first: ``audio`` set means a recording, else TTS."""
    return next(_candidates(session, farewell, verdict)).farewell


def _candidates(
    session: AgentSession[Any],
    farewell: Farewell,
    verdict: Verdict,
    last_resort: Farewell = Farewell.DEFAULT,
) -> Iterator[_Candidate]:
    """What to try, in order: the policy's recording, the farewell pre-synthesised in the
    agent's voice, TTS now (unless TTS cannot speak), and last the packaged recording
    (with its own words: the transcript never shows what the caller did not hear)."""
    if session.output.audio is None:
        # Nothing can be heard (a text-mode session, a test): the transcript alone carries
        # the farewell, so it shows the words configured rather than a recording's.
        yield _Candidate(Farewell._of_policy(farewell.text, None), "text")
        return
    mute = tts_cannot_speak(session, verdict)
    if farewell.audio is not None and farewell is not last_resort:
        yield _Candidate(farewell, "recording")
    engine = _seams.speaking_tts(session)
    if engine is not None and (cached := presynthesized(engine, farewell.text)) is not None:
        yield _Candidate(Farewell._of_policy(farewell.text, cached), "presynthesized")
    if not mute:
        yield _Candidate(Farewell._of_policy(farewell.text, None), "tts")
    yield _Candidate(last_resort, "default")


def needs_preparing(session: AgentSession[Any], policy: GuardPolicy) -> bool:
    """Whether :func:`prepare` has anything to do for this session.

    Mostly not, past a worker's first session: recordings are kept per worker. A task
    spawned for nothing would outlive a session closed at once by a loop iteration or two.
    """
    output = session.output.audio
    rate = output.sample_rate if output is not None else None
    if policy.farewell_audio is not None:
        if not is_ready(policy.farewell_audio, rate=rate):
            return True
    elif policy.presynthesize and _seams.speaking_tts(session) is not None:
        return True
    return output is not None and not is_ready(Farewell.DEFAULT.audio, rate=rate)


async def prepare(session: AgentSession[Any], policy: GuardPolicy) -> None:
    """Make every farewell this session may play ready before any failure.

    The policy's recording (or, without one, the farewell texts synthesised in the
    agent's voice), then the packaged recording, the last resort when TTS cannot speak:
    decoded once per worker, and kept at the audio output's sample rate, so that at
    failure time a farewell's first frame is in memory and needs no resampling.
    """
    output = session.output.audio
    rate = output.sample_rate if output is not None else None
    failed: Exception | None = None
    try:
        if policy.farewell_audio is not None:
            await preload(policy.farewell_audio, rate=rate)
        elif policy.presynthesize and (engine := _seams.speaking_tts(session)) is not None:
            # With farewell_audio set, the recording is what plays: no TTS request for it.
            await presynthesize(engine, static_texts(policy), limit=30.0, rate=rate)
    except Exception as e:
        failed = e  # the last resort is prepared all the same, then this is reported
    if output is not None:
        await preload(Farewell.DEFAULT.audio, rate=rate)
    if failed is not None:
        raise failed


async def play(
    session: AgentSession[Any],
    farewell: Farewell,
    verdict: Verdict,
    *,
    deadline: float,
    tts_failed: asyncio.Event | None = None,
    last_resort: Farewell = Farewell.DEFAULT,
    signal: Callable[[], None] | None = None,
) -> FarewellResult:
    """Play ``farewell`` now, giving up at ``deadline`` (a ``loop.time()``).

    Candidates are tried in order (see :func:`_candidates`) until one plays, ending with
    ``last_resort``, a packaged recording that needs nothing but the audio output. A failed
    TTS ``say`` resolves its handle as if all went well, so TTS failures during the
    farewell are read from ``tts_failed`` (set by the guard on each TTS error).
    ``signal`` (starting the frontend signal) is called once: when the first ``say()``
    has been queued, or before the playback first waits for anything (an interruption,
    a recording's first frame), so its room calls never hold back a ready first frame.

    Never raises (except ``CancelledError``): every failure is logged and reported as an
    incomplete farewell, because the close must follow whatever happens here.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    handle: SpeechHandle | None = None
    source: _Frames | _Pump | None = None
    played: _Candidate | None = None
    tried = 0
    completed = timed_out = False
    start_signal = _once(signal)
    try:
        async with asyncio.timeout_at(deadline):
            # Interrupt first: a farewell queues behind the current speech, including an
            # LLM generation that is still retrying. Interrupting after say() would cut
            # the farewell too (interrupt walks the whole queue). Not awaited before a
            # recording: livekit's scheduler starts the farewell as soon as the
            # interrupted speech is over, while the recording gets ready meanwhile.
            interrupted: asyncio.Future[None] | None = None
            with contextlib.suppress(RuntimeError):
                interrupted = session.interrupt(force=True)
            output = session.output.audio
            rate = output.sample_rate if output is not None else None
            for candidate in _candidates(session, farewell, verdict, last_resort):
                tried += 1
                text, audio = candidate.farewell.text, candidate.farewell.audio
                if audio is None:
                    # A synthesised first frame is tens of milliseconds away: the room
                    # calls cost it nothing.
                    start_signal()
                    if interrupted is not None:
                        await interrupted
                        interrupted = None
                        if tts_failed is not None:
                            # Only TTS failures of the farewell itself matter from here
                            # on, not late ones from the reply that was just interrupted.
                            tts_failed.clear()
                    handle = session.say(text, allow_interruptions=False, add_to_chat_ctx=False)
                    await _playout_or(handle, tts_failed)
                    if tts_failed is not None and tts_failed.is_set():
                        log.warning("agent_guard.farewell_tts_failed", fallback="recording")
                        handle.interrupt(force=True)
                        continue
                else:
                    if source is not None:
                        source.close()
                    source = await _open(audio, rate, start_signal, deadline)
                    if source is None:
                        continue
                    handle = session.say(
                        text, audio=source, allow_interruptions=False, add_to_chat_ctx=False
                    )
                    start_signal()
                    await handle.wait_for_playout()
                played = candidate
                break
            # livekit resolves a say() whose audio source or TTS failed like a finished
            # one (not interrupted), so "completed" also needs the source to have run dry.
            completed = (
                played is not None
                and handle is not None
                and not handle.interrupted
                and (source is None or played.farewell.audio is None or source.exhausted)
            )
    except TimeoutError:
        timed_out = True
        log.warning("agent_guard.farewell_timed_out", after=round(loop.time() - started, 3))
    except Exception as e:
        log.warning("agent_guard.farewell_failed", error_type=type(e).__name__)
    finally:
        if source is not None:
            source.close()
        if handle is not None and not handle.done():
            # wait_for_playout is shielded: the speech keeps going unless told to stop.
            handle.interrupt(force=True)
            _let_go(handle, session.output.audio)
    if played is None and handle is not None and timed_out:
        # Cut by the deadline while playing: what was playing is what the caller heard.
        played = _last_tried(session, farewell, verdict, last_resort, tried)
    return FarewellResult(
        started_at=started,
        finished_at=loop.time(),
        completed=completed,
        timed_out=timed_out,
        fell_back=played is not None and tried > 1,
        text=None if played is None else played.farewell.text,
        source=None if played is None else played.source,
    )


def _once(callback: Callable[[], None] | None) -> Callable[[], None]:
    """``callback`` called at most once, never raising."""
    pending = [callback] if callback is not None else []

    def call() -> None:
        while pending:
            try:
                pending.pop()()
            except Exception as e:
                log.warning("agent_guard.signal_failed", error_type=type(e).__name__)

    return call


def _last_tried(
    session: AgentSession[Any],
    farewell: Farewell,
    verdict: Verdict,
    last_resort: Farewell,
    tried: int,
) -> _Candidate | None:
    candidates = _candidates(session, farewell, verdict, last_resort)
    for n, candidate in enumerate(candidates, start=1):
        if n == tried:
            return candidate
    return None


def _let_go(handle: SpeechHandle, output: Any) -> None:
    """Make sure an interrupted farewell ends soon even if the audio output hangs."""
    if output is None:
        return

    def check() -> None:
        if not handle.done():
            with contextlib.suppress(Exception):
                _seams.finish_playback(output)

    asyncio.get_running_loop().call_later(_OUTPUT_GRACE, check)


_END: Any = object()


async def _open(
    audio: Any, rate: int | None, waiting: Callable[[], None], deadline: float
) -> _Frames | _Pump | None:
    """The recording as livekit will read it, with its first frame ready; None (logged)
    if it has none. ``waiting`` is called before waiting for a first frame."""
    try:
        frames = in_memory(audio, rate)
    except Exception as e:
        log.warning("agent_guard.farewell_audio_failed", error_type=type(e).__name__)
        return None
    if frames is not None:
        return _Frames(frames)
    waiting()
    remaining = deadline - asyncio.get_running_loop().time()
    return await _Pump.open(audio, within=min(_FIRST_FRAME_WAIT, remaining / 2))


class _Frames:
    """Frames already in memory, handed to livekit as they are: nothing to wait for, and
    nothing that can fail or ignore a cancellation (so no pump)."""

    def __init__(self, frames: Sequence[rtc.AudioFrame]) -> None:
        self._frames = frames
        self.exhausted = False

    async def __aiter__(self) -> AsyncIterator[rtc.AudioFrame]:
        for frame in self._frames:
            yield frame
        self.exhausted = True

    def close(self) -> None:
        return None


class _Pump:
    """Frames from a recording, handed to livekit through a queue of our own.

    The source is iterated by a task of ours; livekit iterates the queue. When livekit
    cancels its speech, it stops at once, whatever the source does with the
    cancellation; the pump task is then cancelled and never awaited.
    """

    def __init__(self, frames: AsyncIterable[rtc.AudioFrame]) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_PUMP_FRAMES)
        self._first = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(frames), name="agent_guard.farewell_audio"
        )
        self._task.add_done_callback(_retrieve)
        self.error: BaseException | None = None
        self.got_frame = False
        self.exhausted = False
        self._closed = False

    @classmethod
    async def open(cls, audio: Any, *, within: float) -> _Pump | None:
        """A pump that has its first frame ready, or ``None`` (logged) if it has none
        within ``within`` seconds (a source that hangs must leave time for the next)."""
        try:
            pump = cls(await load_audio(audio))
        except Exception as e:
            log.warning("agent_guard.farewell_audio_failed", error_type=type(e).__name__)
            return None
        try:
            async with asyncio.timeout(within):
                await pump._first.wait()
        except TimeoutError:
            pump.close()
            log.warning("agent_guard.farewell_audio_failed", error_type="TimeoutError")
            return None
        if not pump.got_frame:
            pump.close()
            error_type = type(pump.error).__name__ if pump.error is not None else "empty"
            log.warning("agent_guard.farewell_audio_failed", error_type=error_type)
            return None
        return pump

    async def _run(self, frames: AsyncIterable[rtc.AudioFrame]) -> None:
        try:
            async for frame in frames:
                if self._closed:
                    return  # a source that swallowed our cancellation is asked no more
                self.got_frame = True
                self._first.set()
                await self._queue.put(frame)
        except (Exception, asyncio.CancelledError) as e:
            task = asyncio.current_task()
            if isinstance(e, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # closed by us: nobody reads the queue any more
            self.error = e  # the source failed (a CancelledError of its own included)
        finally:
            self._first.set()
        await self._queue.put(_END)

    async def __aiter__(self) -> AsyncIterator[rtc.AudioFrame]:
        while True:
            item = await self._queue.get()
            if item is _END:
                self.exhausted = self.error is None
                return
            yield item

    def close(self) -> None:
        self._closed = True
        self._task.cancel()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


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
