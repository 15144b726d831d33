"""The farewell is heard in every failure mode, and never delays teardown past its bound."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import CloseReason, llm, stt
from livekit.agents._exceptions import APIStatusError
from livekit.plugins import openai

from agent_guard import Category, Farewell, GuardPolicy, Kind, Verdict, guard
from agent_guard import _audio as audio_module
from agent_guard._policy import DEFAULT_ERROR_MESSAGE, DEFAULT_FAREWELL_AUDIO
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    Hang,
    HttpError,
    QuotaExceeded,
    Reply,
    SilentSpeech,
    Speech,
)
from tests.helpers import (
    SECRET_KEY,
    chat_texts,
    gateway_quota_error,
    heard,
    make_session,
    never_starts,
    start,
    turn,
)

BOUND_MARGIN = 0.5


@pytest.fixture(autouse=True)
def _fresh_presynthesis_cache() -> Iterator[None]:
    audio_module._PRESYNTH.clear()
    yield
    audio_module._PRESYNTH.clear()


def recording_pcm(path: Path = DEFAULT_FAREWELL_AUDIO) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


async def closed_within(g: Any, bound: float) -> Any:
    async with asyncio.timeout(10):
        ev = await g.wait_closed()
    assert g.decision is not None
    assert time.monotonic() - g.decision.at < bound + BOUND_MARGIN
    return ev


class TestEveryKind:
    """For each failing kind, the farewell is heard and the close comes within the bound."""

    async def test_llm(self, sim: GatewaySimulator) -> None:
        """LLM credits: synthesised through the (healthy) TTS."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_timeout=3.0))
        out = await start(session)
        await turn(session, "hi")
        ev = await closed_within(g, 3.0)
        assert ev.reason is CloseReason.ERROR
        assert heard(g) == DEFAULT_ERROR_MESSAGE
        assert out.duration > 0.5

    async def test_tts(self, sim: GatewaySimulator) -> None:
        """TTS credits: the packaged recording is played; TTS is not asked again."""
        sim.llm.default = Reply("Sure, one moment.")
        sim.tts.default = QuotaExceeded(quota_type="tts")
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_timeout=3.0))
        out = await start(session)
        await turn(session, "hi")
        ev = await closed_within(g, 3.0)
        assert ev.reason is CloseReason.ERROR
        assert isinstance(ev.error, type(ev.error)) and ev.error is not None
        assert ev.error.type == "tts_error"
        assert g.decision is not None and g.decision.verdict.kind is Kind.TTS
        assert len(sim.requests_for("tts")) == 1  # the failed reply only
        expected = recording_pcm()
        assert out.pcm()[: len(expected)] == expected

    async def test_tts_with_custom_message_sends_the_recordings_words(
        self, sim: GatewaySimulator
    ) -> None:
        """The transcript matches what is heard: the packaged recording's own words."""
        sim.llm.default = Reply("Sure, one moment.")
        sim.tts.default = QuotaExceeded(quota_type="tts")
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message="We are out of minutes today."))
        out = await start(session)
        said: list[str] = []
        original_say = session.say

        def recording_say(text: Any, **kw: Any) -> Any:
            said.append(text)
            return original_say(text, **kw)

        session.say = recording_say  # type: ignore[method-assign]
        await turn(session, "hi")
        await closed_within(g, 8.0)
        assert said == [DEFAULT_ERROR_MESSAGE]
        assert out.pcm().startswith(recording_pcm()[:4800])

    async def test_stt(self, sim: GatewaySimulator) -> None:
        """STT auth failure: the session's healthy TTS speaks the apology."""
        recognizer = openai.STT(base_url=sim.base_url, api_key=SECRET_KEY)
        session = make_session(sim, stt=recognizer)
        g = guard(session, GuardPolicy(farewell_timeout=3.0))
        await start(session)
        recognizer.emit(
            "error",
            stt.STTError(
                timestamp=0.0,
                label=recognizer.label,
                recoverable=False,
                error=APIStatusError("Incorrect API key", status_code=401, body=None),
            ),
        )
        ev = await closed_within(g, 3.0)
        assert ev.reason is CloseReason.ERROR
        assert ev.error is not None and ev.error.type == "stt_error"
        assert g.decision is not None and g.decision.verdict.category is Category.AUTH
        assert heard(g) == DEFAULT_ERROR_MESSAGE

    async def test_realtime_without_tts(self, sim: GatewaySimulator) -> None:
        """A realtime model with no TTS: the recording is played through audio=."""
        session = make_session(sim, tts=False)
        g = guard(session, GuardPolicy(farewell_timeout=3.0))
        out = await start(session)
        model = session.llm
        assert isinstance(model, llm.LLM)
        model.emit(
            "error",
            llm.RealtimeModelError(
                timestamp=0.0,
                label="openai.realtime",
                recoverable=False,
                error=gateway_quota_error(),
            ),
        )
        ev = await closed_within(g, 3.0)
        assert ev.reason is CloseReason.ERROR
        assert ev.error is not None and ev.error.type == "realtime_model_error"
        expected = recording_pcm()
        assert out.pcm()[: len(expected)] == expected
        assert sim.requests_for("tts") == []


class TestMessages:
    """error_message as a callable, per-kind/category overrides, the hint opt-in."""

    async def test_callable_gets_the_verdict(self, sim: GatewaySimulator) -> None:
        """The factory's text is spoken; it saw the closing verdict."""
        seen: list[Verdict] = []

        def message(v: Verdict) -> str:
            seen.append(v)
            return f"Sorry, the {v.kind.value} service is unavailable."

        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message=message))
        await start(session)
        await turn(session, "hi")
        await closed_within(g, 8.0)
        assert heard(g) == "Sorry, the llm service is unavailable."
        assert [v.category for v in seen] == [Category.QUOTA_EXHAUSTED]

    async def test_callable_can_return_audio(self, sim: GatewaySimulator) -> None:
        """A Farewell with frames is played as given, without TTS."""
        frame = rtc.AudioFrame(b"\x10\x00" * 480, 24000, 1, 480)
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message=lambda v: Farewell("bye", audio=[frame])))
        out = await start(session)
        await turn(session, "hi")
        await closed_within(g, 8.0)
        assert sim.requests_for("tts") == []
        assert out.pcm()[: len(frame.data.tobytes())] == frame.data.tobytes()

    @pytest.mark.parametrize(
        ("factory", "expected"),
        [
            (lambda v: None, None),
            (lambda v: 1 / 0, DEFAULT_ERROR_MESSAGE),
            (lambda v: 42, DEFAULT_ERROR_MESSAGE),
        ],
        ids=["none-is-silent", "raising-falls-back", "junk-falls-back"],
    )
    async def test_callable_edge_cases(
        self, sim: GatewaySimulator, factory: Any, expected: str | None
    ) -> None:
        """None is silence; a broken factory never silences the farewell."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message=factory))
        await start(session)
        await turn(session, "hi")
        await closed_within(g, 8.0)
        assert heard(g) == expected

    async def test_category_beats_kind_beats_error_message(self, sim: GatewaySimulator) -> None:
        """messages[category] wins over messages[kind], which wins over error_message."""
        sim.llm.default = QuotaExceeded()
        policy = GuardPolicy(
            error_message="generic",
            messages={Kind.LLM: "kind message", Category.QUOTA_EXHAUSTED: "category message"},
        )
        session = make_session(sim)
        g = guard(session, policy)
        await start(session)
        await turn(session, "hi")
        await closed_within(g, 8.0)
        assert heard(g) == "category message"

    async def test_kind_override_can_silence(self, sim: GatewaySimulator) -> None:
        """messages={kind: None} closes that kind silently."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(messages={"llm": None}))
        await start(session)
        await turn(session, "hi")
        ev = await closed_within(g, 8.0)
        assert ev.reason is CloseReason.ERROR
        assert g.farewell is None
        assert heard(g) is None

    @pytest.mark.parametrize("speak_hint", [False, True])
    async def test_gateway_hint_is_spoken_only_on_opt_in(
        self, sim: GatewaySimulator, speak_hint: bool
    ) -> None:
        """The hint is developer text: spoken only with speak_hint=True, sanitised."""
        sim.llm.default = QuotaExceeded(hint="Wait for the <b>next</b> billing cycle.")
        session = make_session(sim)
        g = guard(session, GuardPolicy(speak_hint=speak_hint))
        await start(session)
        await turn(session, "hi")
        await closed_within(g, 8.0)
        said = heard(g)
        if speak_hint:
            assert said == "Wait for the next billing cycle."
        else:
            assert said == DEFAULT_ERROR_MESSAGE


class TestFiles:
    """Farewell files in any format are played completely (livekit's decoder drops the end)."""

    @pytest.mark.parametrize(("fmt", "codec"), [("flac", "flac"), ("ogg", "libopus")])
    async def test_compressed_file_is_played_to_the_end(
        self, sim: GatewaySimulator, tmp_path: Path, fmt: str, codec: str
    ) -> None:
        """A 1.0 s recording yields 1.0 s of audio (livekit's own decoder: 0.90-0.98 s)."""
        import av
        import numpy as np

        rate = 24000
        tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.int16)
        path = tmp_path / f"bye.{fmt}"
        with av.open(str(path), "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=rate)
            assert isinstance(stream, av.AudioStream)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in (*stream.encode(frame), *stream.encode(None)):
                container.mux(packet)
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_audio=path))
        out = await start(session)
        await turn(session, "hi")
        await closed_within(g, 8.0)
        assert out.duration == pytest.approx(1.0, abs=0.01)
        if fmt == "flac":  # lossless: the very samples
            assert out.pcm() == tone.tobytes()


class TestPresynthesis:
    """The farewell synthesised while TTS was healthy is played when it is not."""

    async def test_cached_voice_is_played_after_tts_dies(self, sim: GatewaySimulator) -> None:
        """One synthesis per worker; the failing session plays it with no TTS request."""
        sim.llm.default = Reply("Sure, one moment.")
        session = make_session(sim)
        g = guard(session, GuardPolicy(presynthesize=True))
        out = await start(session)
        async with asyncio.timeout(5):
            while not audio_module._PRESYNTH:
                await asyncio.sleep(0.01)
        presynth_requests = len(sim.requests_for("tts"))
        assert presynth_requests == 1  # the whole text, once
        cached = next(iter(audio_module._PRESYNTH.values()))

        sim.tts.default = QuotaExceeded(quota_type="tts")  # TTS credits run out
        await turn(session, "hi")
        await closed_within(g, 8.0)
        assert g.decision is not None and g.decision.verdict.kind is Kind.TTS
        # Only the failed reply asked TTS; the farewell came from the cache.
        assert len(sim.requests_for("tts")) == presynth_requests + 1
        expected = b"".join(f.data.tobytes() for f in cached)
        assert out.pcm()[: len(expected)] == expected

    async def test_a_failed_presynthesis_is_not_the_sessions_failure(
        self, sim: GatewaySimulator
    ) -> None:
        """TTS fails the guard's own request at start: livekit reports it on the TTS's
        "error" event as it would a reply's, but nothing is counted, and the caller's
        first turn is not taken for one that already failed (it gets the stall notice)."""
        sim.tts.default = SilentSpeech()
        sim.llm.default = Reply("Sure, one moment.")
        session = make_session(sim)
        reported: list[Any] = []
        session.on("error", reported.append)  # what the app sees: livekit's events
        g = guard(session, GuardPolicy(presynthesize=True, stall_timeout=1.0))
        await start(session)
        async with asyncio.timeout(5):
            while not reported:  # the presynthesis, reported by livekit, failed
                await asyncio.sleep(0.01)
        assert len(sim.requests_for("tts")) == 1
        await asyncio.sleep(0.2)
        assert list(g.verdicts) == [] and dict(g.verdict_counts) == {}
        await turn(session, "hi")
        async with asyncio.timeout(5):
            while not any(v.category is Category.STALLED for v in g.verdicts):
                await asyncio.sleep(0.02)
        await session.aclose()

    async def test_cache_is_shared_across_sessions(self, sim: GatewaySimulator) -> None:
        """A second session with the same text and voice does not synthesise again."""
        for _ in range(2):
            session = make_session(sim)
            guard(session, GuardPolicy(presynthesize=True))
            await start(session)
            async with asyncio.timeout(5):
                while not audio_module._PRESYNTH:
                    await asyncio.sleep(0.01)
            await session.aclose()
        assert len(sim.requests_for("tts")) == 1


async def tts_dies_and_plays(
    sim: GatewaySimulator,
    session: Any,
    g: Any,
    out: CaptureAudioOutput,
    ready: Sequence[rtc.AudioFrame],
    *,
    source: str,
) -> None:
    """TTS quota runs out on the next reply: the farewell from ``source`` plays, and what
    reaches the output are the very ``ready`` frames prepared ahead."""
    sim.tts.default = QuotaExceeded(quota_type="tts")
    sim.llm.default = Reply("Let me check.")
    await turn(session, "hi")
    await closed_within(g, 8.0)
    assert g.farewell is not None and g.farewell.source == source
    played = [f.frame for f in out.frames]
    assert played and all(a is b for a, b in zip(played, ready, strict=True))


async def prepared(audio: Any, rate: int) -> Sequence[rtc.AudioFrame]:
    """``audio``'s frames once the guard's preparation has them at ``rate`` (bounded)."""
    async with asyncio.timeout(5):
        while (frames := audio_module.in_memory(audio, rate)) is None or (
            frames[0].sample_rate != rate
        ):
            await asyncio.sleep(0.01)
    return frames


async def start_at(session: Any, rate: int) -> CaptureAudioOutput:
    """Start ``session`` with an output that takes ``rate`` only, as a room's does."""
    from livekit.agents import Agent

    out = CaptureAudioOutput(realtime=False, sample_rate=rate)
    session.output.audio = out
    await session.start(Agent(instructions="Be brief."))
    return out


class TestReadyAhead:
    """What the farewell can play is ready before any failure, at the audio output's rate:
    at failure time nothing is decoded, synthesised or resampled before the first frame."""

    @pytest.fixture(autouse=True)
    def _fresh_caches(self) -> Iterator[None]:
        for cache in (audio_module._DECODED, audio_module._BY_PATH, audio_module._AT_RATE):
            cache.clear()
        yield
        for cache in (audio_module._DECODED, audio_module._BY_PATH, audio_module._AT_RATE):
            cache.clear()

    async def test_recording_plays_as_prepared_at_the_output_rate(
        self, sim: GatewaySimulator
    ) -> None:
        """A 16 kHz recording, a 24 kHz output: the very frames resampled at start reach
        the output (livekit would otherwise resample at play time), every sample kept."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_audio=DEFAULT_FAREWELL_AUDIO))
        out = await start_at(session, 24000)
        ready = await prepared(DEFAULT_FAREWELL_AUDIO, 24000)
        await turn(session, "hi")
        await closed_within(g, 8.0)
        assert g.farewell is not None and g.farewell.completed
        assert g.farewell.source == "recording"
        played = [f.frame for f in out.frames]
        assert len(played) == len(ready)
        assert all(a is b for a, b in zip(played, ready, strict=True))
        samples = len(recording_pcm()) // 2
        assert sum(f.samples_per_channel for f in ready) == pytest.approx(samples * 1.5, abs=1)
        assert {f.samples_per_channel for f in ready[:-1]} == {480}  # 20 ms frames

    async def test_packaged_recording_is_ready_before_tts_dies(self, sim: GatewaySimulator) -> None:
        """Nothing configured, no presynthesis: the packaged recording, the last resort,
        is decoded and resampled at start, and is what plays when TTS quota runs out."""
        session = make_session(sim)
        g = guard(session, GuardPolicy(presynthesize=False))
        out = await start_at(session, 24000)
        ready = await prepared(DEFAULT_FAREWELL_AUDIO, 24000)
        await tts_dies_and_plays(sim, session, g, out, ready, source="default")

    async def test_presynthesised_farewell_is_kept_at_the_output_rate(
        self, sim: GatewaySimulator
    ) -> None:
        """OpenAI's 24 kHz voice, a 48 kHz output: the cached farewell is also kept
        resampled, and that is what plays."""
        session = make_session(sim)
        g = guard(session, GuardPolicy(presynthesize=True))
        out = await start_at(session, 48000)
        async with asyncio.timeout(5):
            while not audio_module._PRESYNTH:
                await asyncio.sleep(0.01)
        cached = next(iter(audio_module._PRESYNTH.values()))
        assert cached[0].sample_rate == 24000
        ready = await prepared(cached, 48000)
        await tts_dies_and_plays(sim, session, g, out, ready, source="presynthesized")

    async def test_a_broken_recording_leaves_the_last_resort_ready(
        self, sim: GatewaySimulator, tmp_path: Path
    ) -> None:
        """The policy's file breaks after the policy was built: its preparation fails (and
        is logged), the packaged recording is prepared all the same."""
        path = tmp_path / "bye.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(bytes(16000))
        policy = GuardPolicy(farewell_audio=path)
        path.write_text("overwritten by a deploy script")
        session = make_session(sim)
        guard(session, policy)
        await start_at(session, 24000)
        await prepared(DEFAULT_FAREWELL_AUDIO, 24000)
        assert audio_module.in_memory(path, 24000) is None
        await session.aclose()

    async def test_a_session_closed_at_once_leaves_the_recording_prepared(
        self, sim: GatewaySimulator
    ) -> None:
        """Decoding and resampling are the worker's, not the session's: a session closed
        before they finish stops waiting for them, the next session finds them done, and
        its guard starts no preparation at all (no task outlives its session)."""
        first = make_session(sim)
        guard(first, GuardPolicy(presynthesize=False))
        await start_at(first, 24000)
        await first.aclose()  # at once: its preparation is cancelled
        async with asyncio.timeout(5):
            while not audio_module.is_ready(DEFAULT_FAREWELL_AUDIO, rate=24000):
                await asyncio.sleep(0.01)
        second = make_session(sim)
        g = guard(second, GuardPolicy(presynthesize=False))
        await start_at(second, 24000)
        assert not g._preparing and not g._tasks
        await second.aclose()

    async def test_sessions_preparing_at_once_share_one_decoding(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        decoded: list[object] = []
        real = audio_module._Decoder

        def counting(path: Path) -> Any:
            decoded.append(path)
            return real(path)

        monkeypatch.setattr(audio_module, "_Decoder", counting)
        await asyncio.gather(
            *(audio_module.preload(DEFAULT_FAREWELL_AUDIO, rate=24000) for _ in range(5))
        )
        assert len(decoded) == 1 and len(audio_module._AT_RATE) == 1
        assert audio_module.is_ready(DEFAULT_FAREWELL_AUDIO, rate=24000)

    @pytest.mark.parametrize(("rate", "channels"), [(24000, 1), (48000, 2), (8000, 1)])
    def test_resample_keeps_every_sample(self, rate: int, channels: int) -> None:
        """One second at 16 kHz is one second at any rate, in 20 ms frames, channels kept."""
        one = b"\x10\x00\xf0\xff" * (160 * channels)
        frames = [
            rtc.AudioFrame(one, sample_rate=16000, num_channels=channels, samples_per_channel=320)
            for _ in range(50)
        ]
        out = audio_module.resample(frames, rate)
        assert {(f.sample_rate, f.num_channels) for f in out} == {(rate, channels)}
        assert sum(f.samples_per_channel for f in out) == pytest.approx(rate, abs=1)
        assert {f.samples_per_channel for f in out[:-1]} == {rate // 50}

    def test_kept_at_rate_within_a_byte_budget(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Many sources prepared: the oldest are let go past the budget (never the last)."""
        monkeypatch.setattr(audio_module, "AT_RATE_MAX_BYTES", 200_000)
        sources = [
            tuple(
                rtc.AudioFrame(
                    bytes(640), sample_rate=16000, num_channels=1, samples_per_channel=320
                )
                for _ in range(50)
            )
            for _ in range(4)
        ]

        async def prepare_all() -> None:
            for frames in sources:
                await audio_module.preload(frames, rate=24000)

        asyncio.run(prepare_all())
        # Each: 32 KB at 16 kHz + 48 KB at 24 kHz.
        assert 0 < audio_module._at_rate_bytes() <= 200_000
        assert len(audio_module._AT_RATE) == 2
        newest = audio_module.in_memory(sources[-1], 24000)
        assert newest is not None and newest[0].sample_rate == 24000
        assert audio_module.in_memory(sources[0], 24000) is sources[0]  # livekit resamples


class TestBounds:
    """Whatever TTS, the audio output or the user do, the close comes, once, in time."""

    async def test_tts_failing_mid_farewell(self, sim: GatewaySimulator) -> None:
        """A TTS error after the first sentence: close within the bound, no stray errors."""
        sim.llm.default = QuotaExceeded()
        sim.tts.script(Speech())  # the first sentence is heard, the rest fails
        sim.tts.default = HttpError(status=500, body={"error": "tts down"})
        session = make_session(sim, max_retry=0)
        closes: list[Any] = []
        session.on("close", closes.append)
        g = guard(session, GuardPolicy(farewell_timeout=2.0))
        await start(session)
        await turn(session, "hi")
        ev = await closed_within(g, 2.0)
        assert ev.reason is CloseReason.ERROR
        assert ev.error is not None and ev.error.type == "llm_error"
        await asyncio.sleep(0.1)
        assert len(closes) == 1

    async def test_tts_hang_is_cut_at_the_bound(self, sim: GatewaySimulator) -> None:
        """A hanging TTS: the farewell is abandoned at farewell_timeout."""
        sim.llm.default = QuotaExceeded()
        sim.tts.default = Hang()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_timeout=0.5))
        await start(session)
        await turn(session, "hi")
        await closed_within(g, 0.5)
        assert g.farewell is not None and g.farewell.timed_out

    async def test_recording_that_never_starts_gives_way(self, sim: GatewaySimulator) -> None:
        """A recording with no first frame (a factory that hangs): after a second, TTS says
        the farewell, instead of the caller hearing nothing until the bound."""

        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_audio=never_starts, farewell_timeout=3.0))
        out = await start(session)
        await turn(session, "hi")
        await closed_within(g, 3.0)
        assert g.farewell is not None and g.farewell.completed and g.farewell.fell_back
        assert g.farewell.source == "tts"
        assert g.decision is not None and out.frames
        assert out.frames[0].at - g.decision.at < 2.0

    async def test_without_audio_output(self, sim: GatewaySimulator) -> None:
        """No audio output at all (text-only session): the close still comes."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_timeout=2.0))
        from livekit.agents import Agent

        await session.start(Agent(instructions="Be brief."))
        await turn(session, "hi")
        ev = await closed_within(g, 2.0)
        assert ev.reason is CloseReason.ERROR

    async def test_user_closes_during_the_farewell(self, sim: GatewaySimulator) -> None:
        """aclose() while the farewell plays: one close, the user's, and no hang."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        closes: list[Any] = []
        session.on("close", closes.append)
        g = guard(session)
        out = CaptureAudioOutput(realtime=True)
        session.output.audio = out
        from livekit.agents import Agent

        await session.start(Agent(instructions="Be brief."))
        await turn(session, "hi")
        async with asyncio.timeout(5):
            while not out.frames:
                await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            await session.aclose()
            await g.wait_closed()
        await asyncio.sleep(0.1)
        assert len(closes) == 1
        assert closes[0].reason is CloseReason.USER_INITIATED
        assert g.farewell is not None and not g.farewell.completed

    async def test_session_already_closing(self, sim: GatewaySimulator) -> None:
        """An error arriving while the session closes plays nothing and closes nothing."""
        session = make_session(sim)
        closes: list[Any] = []
        session.on("close", closes.append)
        g = guard(session)
        await start(session)
        model = session.llm
        assert isinstance(model, llm.LLM)
        session.shutdown(drain=False)
        model.emit(
            "error",
            llm.LLMError(
                timestamp=0.0,
                label="x",
                recoverable=False,
                error=gateway_quota_error(),
            ),
        )
        async with asyncio.timeout(5):
            await g.wait_closed()
        await asyncio.sleep(0.1)
        assert len(closes) == 1 and closes[0].reason is CloseReason.USER_INITIATED
        assert g.farewell is None

    async def test_caller_talking_over_the_farewell_is_not_retried(
        self, sim: GatewaySimulator
    ) -> None:
        """A reply requested during the farewell is cancelled: never retried, never heard.

        livekit starts the reply's LLM request as the speech is created, so one request
        may already be on the wire when the guard cancels it (stock: 4 per turn).
        """
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session)
        out = CaptureAudioOutput(realtime=True)
        session.output.audio = out
        from livekit.agents import Agent

        await session.start(Agent(instructions="Be brief."))
        await turn(session, "hi")
        async with asyncio.timeout(5):
            while not out.frames:
                await asyncio.sleep(0.01)
        reply = session.generate_reply(user_input="hello? are you still there?")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert reply.interrupted
        assert len(sim.requests_for("llm")) <= 2
        assert g.farewell is not None and g.farewell.completed
        assert DEFAULT_ERROR_MESSAGE not in chat_texts(session)

    async def test_no_leaked_tasks_or_unretrieved_exceptions(self, sim: GatewaySimulator) -> None:
        """After the close every guard task is done and nothing was left unretrieved."""
        loop = asyncio.get_running_loop()
        problems: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: problems.append(ctx))
        try:
            sim.llm.default = QuotaExceeded()
            sim.tts.default = HttpError(status=500, body="tts down")
            session = make_session(sim, max_retry=0)
            g = guard(session, GuardPolicy(farewell_timeout=1.0))
            await start(session)
            await turn(session, "hi")
            await closed_within(g, 1.0)
            await asyncio.sleep(0.2)
            import gc

            gc.collect()
            await asyncio.sleep(0)
            pending = [
                t
                for t in asyncio.all_tasks()
                if t.get_name().startswith("agent_guard.") and not t.done()
            ]
            assert pending == []
            assert [p for p in problems if "agent_guard" in repr(p)] == []
        finally:
            loop.set_exception_handler(None)
