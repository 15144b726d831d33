"""Fail-safe: nothing user code, a file or a provider does leaves a decided session open or
silent, and livekit's own contract holds for apps written against stock livekit.

Each test reproduces one way the guard itself used to leave a caller in dead air or break
what livekit users rely on (issue 11), through a real AgentSession and the real openai
plugins over HTTP to the simulator.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from livekit import rtc
from livekit.agents import Agent, AgentSession, CloseReason, ErrorEvent, io, llm
from livekit.agents._exceptions import APIError
from structlog.testing import capture_logs

from agent_guard import (
    Category,
    Farewell,
    FrontendSignal,
    GuardPolicy,
    Kind,
    PolicyError,
    Reason,
    Verdict,
    guard,
)
from agent_guard import _audio as audio_module
from agent_guard import _hooks as hooks_module
from agent_guard import _signal as signal_module
from agent_guard._policy import DEFAULT_ERROR_MESSAGE
from agent_guard.instrumentation import log_verdict
from agent_guard.testing import (
    GatewaySimulator,
    QuotaExceeded,
    RateLimited,
    Reply,
)
from tests.helpers import gateway_quota_error, heard, make_session, start, turn

#: Slack on top of farewell_timeout for the close itself.
BOUND = 0.1


@pytest.fixture(autouse=True)
def _fresh_audio_caches() -> Iterator[None]:
    audio_module._PRESYNTH.clear()
    audio_module._DECODED.clear()
    audio_module._BY_PATH.clear()
    yield
    audio_module._PRESYNTH.clear()
    audio_module._DECODED.clear()
    audio_module._BY_PATH.clear()


def write_wav(path: Path, *, seconds: float, rate: int = 16000) -> Path:
    samples = int(seconds * rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x10\x00\xf0\xff" * (samples // 2))
    return path


def llm_error(error: Exception, *, recoverable: bool) -> llm.LLMError:
    return llm.LLMError(timestamp=time.time(), label="test", error=error, recoverable=recoverable)


async def closed(g: Any, within: float = 10.0) -> Any:
    async with asyncio.timeout(within):
        return await g.wait_closed()


def close_clock(session: AgentSession[Any]) -> list[float]:
    """``time.monotonic()`` of each close event of ``session`` (the decision's clock)."""
    stamps: list[float] = []
    session.on("close", lambda ev: stamps.append(time.monotonic()))
    return stamps


class TestVerdictsAreChecked:
    """Item 1: a Verdict with plain strings is normalised; nothing between decision and close
    can prevent the close."""

    async def test_hook_returning_string_category_closes(self, sim: GatewaySimulator) -> None:
        """v.replace(category="quota_exhausted", terminal=True) makes a terminal verdict."""
        sim.llm.default = RateLimited()
        session = make_session(sim, retry_interval=0.01)
        g = guard(
            session,
            GuardPolicy(
                hooks=(lambda v: v.replace(category="quota_exhausted", terminal=True),),
                farewell_timeout=2.0,
            ),
        )
        await start(session)
        await turn(session, "hi")
        ev = await closed(g)
        assert ev.reason is CloseReason.ERROR
        assert g.decision is not None
        assert g.decision.verdict.category is Category.QUOTA_EXHAUSTED
        assert heard(g) == DEFAULT_ERROR_MESSAGE

    def test_bad_values_are_rejected_where_they_are_made(self) -> None:
        """A wrong kind, category or flag fails in the hook or classifier that built it."""
        v = Verdict(kind="llm", category="auth", terminal=True, counts=True)  # type: ignore[arg-type]
        assert (v.kind, v.category) == (Kind.LLM, Category.AUTH)
        with pytest.raises(ValueError, match="category"):
            v.replace(category="nope")
        with pytest.raises(TypeError, match="terminal"):
            v.replace(terminal=1)
        with pytest.raises(TypeError, match="status_code"):
            v.replace(status_code="429")

    async def test_classifier_building_string_kind_closes(self, sim: GatewaySimulator) -> None:
        """A classifier's Verdict(kind="llm", category="auth") is as good as the enum."""
        sim.llm.default = RateLimited()

        def strings(facts: Any) -> Verdict:
            return Verdict(kind="llm", category="auth", terminal=True, counts=True)  # type: ignore[arg-type]

        session = make_session(sim, retry_interval=0.01)
        g = guard(session, GuardPolicy(classifiers=(strings,), farewell_timeout=2.0))
        await start(session)
        await turn(session, "hi")
        ev = await closed(g)
        assert ev.reason is CloseReason.ERROR
        assert len(sim.requests_for("llm")) == 1

    async def test_log_processor_raising_on_closing_line(self, sim: GatewaySimulator) -> None:
        """A structlog processor that raises on agent_guard.closing cannot keep it open."""

        def explode_on_closing(
            _: Any, __: str, event: MutableMapping[str, Any]
        ) -> MutableMapping[str, Any]:
            if event.get("event") == "agent_guard.closing":
                raise RuntimeError("log shipper down")
            return event

        previous = structlog.get_config()
        structlog.configure(processors=[explode_on_closing, *previous["processors"]])
        try:
            sim.llm.default = QuotaExceeded()
            session = make_session(sim)
            g = guard(session, GuardPolicy(farewell_timeout=2.0))
            await start(session)
            await turn(session, "hi")
            ev = await closed(g)
        finally:
            structlog.configure(**previous)
        assert ev.reason is CloseReason.ERROR
        assert heard(g) == DEFAULT_ERROR_MESSAGE


class TestHooksAreBounded:
    """Items 2 and 3: a hook that never returns, or raises CancelledError, decides nothing."""

    async def test_hook_that_never_returns(self, sim: GatewaySimulator) -> None:
        """The decision waits hook_timeout, then goes on without the hook."""

        async def metrics_post(v: Verdict) -> None:
            await asyncio.Event().wait()  # a POST without a timeout

        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(
            session,
            GuardPolicy(hooks=(metrics_post,), hook_timeout=0.2, farewell_timeout=2.0),
        )
        await start(session)
        with capture_logs() as logs:
            await turn(session, "hi")
            ev = await closed(g)
        assert ev.reason is CloseReason.ERROR
        assert "agent_guard.hook_timed_out" in [e["event"] for e in logs]

    async def test_hook_ignoring_cancellation_cannot_hold_the_chain(
        self, sim: GatewaySimulator
    ) -> None:
        """Even a hook that swallows the timeout's cancellation is left behind."""

        release = asyncio.Event()

        async def stubborn(v: Verdict) -> None:
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue  # swallowed: hook_timeout's cancellation has no effect

        session = make_session(sim)
        g = guard(
            session,
            GuardPolicy(hooks=(stubborn,), hook_timeout=0.1, farewell_timeout=1.0),
        )
        await start(session)
        session.llm.emit("error", llm_error(gateway_quota_error(), recoverable=False))  # type: ignore[union-attr]
        ev = await closed(g, within=5.0)
        assert ev.reason is CloseReason.ERROR
        release.set()  # let the test's loop shut down

    async def test_storm_with_a_stuck_hook_stays_bounded(self, sim: GatewaySimulator) -> None:
        """1,000 terminal errors with a stuck hook: bounded tasks, one close."""
        hung = asyncio.Event()

        async def stuck(v: Verdict) -> None:
            await hung.wait()

        session = make_session(sim)
        g = guard(session, GuardPolicy(hooks=(stuck,), hook_timeout=0.5, farewell_timeout=1.0))
        await start(session)
        model = session.llm
        assert isinstance(model, llm.LLM)
        for _ in range(1000):
            model.emit("error", llm_error(gateway_quota_error(), recoverable=False))
        waiting = [t for t in asyncio.all_tasks() if t.get_name() == "agent_guard._resume"]
        assert 0 < len(waiting) <= hooks_module.MAX_IN_FLIGHT
        ev = await closed(g, within=5.0)
        assert ev.reason is CloseReason.ERROR
        hung.set()

    @pytest.mark.parametrize("flavour", ["sync", "async"])
    async def test_hook_raising_cancelled_error(self, sim: GatewaySimulator, flavour: str) -> None:
        """A hook's CancelledError is the hook's failure: the verdict still decides."""

        def sync_cancel(v: Verdict) -> None:
            raise asyncio.CancelledError

        async def async_cancel(v: Verdict) -> None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.cancel()
            await fut

        hook = sync_cancel if flavour == "sync" else async_cancel
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(hooks=(hook,), farewell_timeout=2.0))
        await start(session)
        await turn(session, "hi")
        ev = await closed(g)
        assert ev.reason is CloseReason.ERROR
        assert g.decision is not None and g.decision.reason is Reason.TERMINAL


class TestBeforeStart:
    """Item 5: a terminal error emitted before start() leaves no decided-but-open session."""

    async def test_error_before_start(self, sim: GatewaySimulator) -> None:
        """The session starts either undecided, or decided and then closed."""
        session = make_session(sim)
        # fleet=None: the guard's own path (the fleet breaker would, rightly, remember the
        # exhausted account and refuse the first reply).
        g = guard(session, GuardPolicy(farewell_timeout=1.0, fleet=None))
        model = session.llm
        assert isinstance(model, llm.LLM)
        model.emit("error", llm_error(gateway_quota_error(), recoverable=False))
        session.emit(
            "error",
            ErrorEvent(error=llm_error(gateway_quota_error(), recoverable=False), source=model),
        )
        await start(session)
        await asyncio.sleep(0.3)
        if g.decision is not None:
            await closed(g, within=3.0)
        else:
            await turn(session, "hi")
            assert "Hello" in " ".join(
                m.text_content or ""
                for m in session.history.items
                if isinstance(m, llm.ChatMessage)
            )
            await session.aclose()


class TestFarewellFiles:
    """Items 6-8 and 10: files are checked early, survive deletion, play as they decode."""

    @pytest.mark.parametrize("content", ["empty", "corrupt", "text", "header_only"])
    def test_unplayable_file_is_refused_with_the_reason(self, tmp_path: Path, content: str) -> None:
        """PolicyError names the file and why."""
        path = tmp_path / f"{content}.wav"
        if content == "empty":
            path.write_bytes(b"")
        elif content == "corrupt":
            path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
        elif content == "text":
            path.write_text("this is not audio\n" * 100)
        else:
            write_wav(path, seconds=0.0)
        with pytest.raises(PolicyError, match=rf"{path.name}.*cannot be played: \w"):
            GuardPolicy(farewell_audio=path)
        with pytest.raises(PolicyError, match=path.name):
            Farewell("Goodbye.", audio=path)

    async def test_file_broken_at_play_time_falls_back_to_tts(
        self, sim: GatewaySimulator, tmp_path: Path
    ) -> None:
        """Checked at build time, garbage by the time of the farewell: TTS says the words."""
        path = write_wav(tmp_path / "bye.wav", seconds=0.5)
        policy = GuardPolicy(
            farewell_audio=path, error_message="We have to stop here.", farewell_timeout=3.0
        )
        path.write_text("overwritten by a deploy script")
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, policy)
        await start(session)
        await turn(session, "hi")
        await closed(g)
        assert g.farewell is not None
        assert (g.farewell.source, g.farewell.text) == ("tts", "We have to stop here.")
        assert g.farewell.fell_back

    async def test_deleted_file_plays_from_the_cache(
        self, sim: GatewaySimulator, tmp_path: Path
    ) -> None:
        """Preloaded, then deleted: the cached frames play, every one of them."""
        path = write_wav(tmp_path / "bye.wav", seconds=0.4)
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_audio=path, farewell_timeout=3.0))
        out = await start(session)
        async with asyncio.timeout(3):
            while not audio_module._DECODED:
                await asyncio.sleep(0.01)
        path.unlink()
        await turn(session, "hi")
        await closed(g)
        assert g.farewell is not None and g.farewell.completed
        assert g.farewell.source == "recording"
        assert sum(f.frame.samples_per_channel for f in out.frames) == int(0.4 * 16000)

    async def test_long_file_starts_at_once(self, sim: GatewaySimulator, tmp_path: Path) -> None:
        """A 10-minute file with a 1 s bound: its first frame plays well within the bound."""
        path = write_wav(tmp_path / "long.wav", seconds=600.0, rate=48000)
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_audio=path, farewell_timeout=1.0))
        out = await start(session)
        await turn(session, "hi")
        await closed(g)
        assert g.decision is not None and out.frames
        assert g.farewell is not None and g.farewell.timed_out
        first = out.frames[0].at - g.decision.at
        assert first < 0.5, f"first farewell frame {first:.3f} s after the decision"

    def test_decoded_cache_is_bounded_by_bytes(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Many files: the cache keeps what fits its byte budget, not a count."""
        monkeypatch.setattr(audio_module, "DECODED_MAX_BYTES", 100_000)

        async def preload_all() -> None:
            for i in range(6):
                await audio_module.preload(write_wav(tmp_path / f"{i}.wav", seconds=1.0))

        asyncio.run(preload_all())
        assert 0 < audio_module._decoded_bytes() <= 100_000
        assert len(audio_module._DECODED) == 3  # 32 KB each


class TestTheRightWords:
    """Item 9: the user's own words are heard even when TTS is dead; the transcript never
    shows what the caller did not hear."""

    async def test_custom_message_survives_tts_death(self, sim: GatewaySimulator) -> None:
        """Presynthesised at start, played from the cache when TTS quota runs out."""
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message="Our lines are closed. Bye."))
        await start(session)
        async with asyncio.timeout(5):
            while not audio_module._PRESYNTH:
                await asyncio.sleep(0.01)
        sim.tts.default = QuotaExceeded(quota_type="tts")
        sim.llm.default = Reply("Let me check.")
        await turn(session, "hi")
        await closed(g)
        assert g.decision is not None and g.decision.verdict.kind is Kind.TTS
        assert g.farewell is not None
        assert (g.farewell.source, g.farewell.text) == (
            "presynthesized",
            "Our lines are closed. Bye.",
        )

    async def test_packaged_recording_carries_its_own_words(self, sim: GatewaySimulator) -> None:
        """No TTS at all and no presynthesis: the packaged recording, with its text."""
        session = make_session(sim, tts=False)
        g = guard(session, GuardPolicy(error_message="Custom words nobody will hear."))
        await start(session)
        session.llm.emit("error", llm_error(gateway_quota_error(), recoverable=False))  # type: ignore[union-attr]
        await closed(g)
        assert g.farewell is not None
        assert (g.farewell.source, g.farewell.text) == ("default", DEFAULT_ERROR_MESSAGE)

    async def test_no_presynthesis_with_a_recording(
        self, sim: GatewaySimulator, tmp_path: Path
    ) -> None:
        """With farewell_audio set, no TTS request is spent on the farewell."""
        path = write_wav(tmp_path / "bye.wav", seconds=0.3)
        session = make_session(sim)
        guard(session, GuardPolicy(farewell_audio=path))
        await start(session)
        await asyncio.sleep(0.3)
        assert sim.requests_for("tts") == []
        await session.aclose()


class TestFactories:
    """Item 11: async factories are awaited; a blocking one cannot push the close."""

    async def test_async_factory_is_awaited(self, sim: GatewaySimulator) -> None:
        async def lookup(v: Verdict) -> str:
            await asyncio.sleep(0.01)
            return f"Our {v.kind} provider is out of credit."

        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message=lookup, farewell_timeout=3.0))
        await start(session)
        await turn(session, "hi")
        await closed(g)
        assert heard(g) == "Our llm provider is out of credit."

    async def test_blocking_factory_is_bounded(self, sim: GatewaySimulator) -> None:
        """time.sleep(3) in a factory with a 1 s bound: default words, close within bound."""

        def slow(v: Verdict) -> str:
            time.sleep(3)
            return "too late"

        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message=slow, farewell_timeout=1.0))
        stamps = close_clock(session)
        await start(session)
        await turn(session, "hi")
        await closed(g)
        assert g.decision is not None and stamps
        assert heard(g) in (DEFAULT_ERROR_MESSAGE, None)
        assert stamps[0] - g.decision.at < 1.0 + BOUND


class TestLivekitContract:
    """Items 12-15: apps written for stock livekit keep working under the guard."""

    async def test_app_listener_sees_livekits_flag(self, sim: GatewaySimulator) -> None:
        """Retry attempts arrive recoverable, the failed turn final: as without the guard."""
        sim.llm.default = RateLimited()
        session = make_session(sim, retry_interval=0.01)
        guard(session)
        flags: list[bool] = []
        session.on("error", lambda ev: flags.append(ev.error.recoverable))
        await start(session)
        await turn(session, "hi")
        assert flags == [True, True, True, False]
        await session.aclose()

    async def test_app_listener_sees_the_closing_error_final(self, sim: GatewaySimulator) -> None:
        """Terminal on the first attempt: the app sees it as livekit sent it, then final."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_timeout=2.0))
        seen: list[tuple[bool, bool]] = []
        session.on(
            "error", lambda ev: seen.append((ev.error.recoverable, g.close_event is not None))
        )
        await start(session)
        await turn(session, "hi")
        await closed(g)
        assert seen == [(True, False), (False, False)]

    async def test_a_listener_flipping_the_flag_does_not_veto(self, sim: GatewaySimulator) -> None:
        """Item 17, the deliberate difference (README, Policy, hooks): under stock livekit
        `ev.error.recoverable = True` in a listener keeps the session open; under the guard
        the verdict decides, and a hook is the way to veto."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_timeout=2.0))

        def keep_open(ev: Any) -> None:
            ev.error.recoverable = True

        session.on("error", keep_open)
        await start(session)
        await turn(session, "hi")
        ev = await closed(g)
        assert ev.reason is CloseReason.ERROR
        assert g.decision is not None and g.decision.reason is Reason.TERMINAL

    async def test_error_emitted_by_the_app_is_not_a_provider_failure(
        self, sim: GatewaySimulator
    ) -> None:
        """session.emit("error", ...) from application code closes nothing."""
        session = make_session(sim)
        g = guard(session)
        await start(session)
        model = session.llm
        session.emit(
            "error",
            ErrorEvent(error=llm_error(gateway_quota_error(), recoverable=False), source=model),
        )
        await asyncio.sleep(0.3)
        assert (g.decision, g.close_event, g.verdicts) == (None, None, ())
        await session.aclose()

    async def test_restart_hears_the_caller_again(self, sim: GatewaySimulator) -> None:
        """The teardown mutes the caller; a restarted session un-mutes them."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        # fleet=None: the credits come back at once here, sooner than a breaker's cool-down.
        g = guard(session, GuardPolicy(farewell_timeout=1.0, fleet=None))
        session.input.audio = SilentInput()
        await start(session)
        await turn(session, "hi")
        await closed(g)
        sim.llm.default = Reply("Back again.")
        session.input.audio = SilentInput()
        await session.start(Agent(instructions="Be brief."))
        assert session.input.audio_enabled
        await turn(session, "hello?")
        assert g.decision is None
        await session.aclose()

    async def test_turn_during_the_farewell_reaches_no_provider(
        self, sim: GatewaySimulator
    ) -> None:
        """A reply requested while the farewell plays sends no LLM request."""
        sim.llm.script(Reply("Hello there."), QuotaExceeded())
        frames = [rtc.AudioFrame(b"\x00\x00" * 480, 24000, 1, 480)] * 75  # 1.5 s
        session = make_session(sim, max_retry=0)
        g = guard(session, GuardPolicy(farewell_audio=frames, farewell_timeout=3.0))
        await start(session)
        await turn(session, "hi")
        await turn(session, "and now?")  # 429: the farewell starts
        async with asyncio.timeout(3):
            while g.farewell is None and not any(
                t.get_name() == "agent_guard.farewell_audio" for t in asyncio.all_tasks()
            ):
                await asyncio.sleep(0.01)
        session.generate_reply(user_input="are you still there?")
        await closed(g)
        assert [r.status for r in sim.requests_for("llm")] == [200, 429]


class SilentInput(io.AudioInput):
    """A caller's microphone that stays silent (enough to be enabled and disabled)."""

    def __init__(self) -> None:
        super().__init__(label="SilentInput")

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.Event().wait()
        raise StopAsyncIteration


class TestGuardCallAndPolicy:
    """Item 16: equal policies, bad values, coalesced signals."""

    async def test_equal_policy_returns_the_guard(self, sim: GatewaySimulator) -> None:
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_timeout=3.0))
        assert guard(session, GuardPolicy(farewell_timeout=3.0)) is g
        await session.aclose()

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"farewell_timeout": True},
            {"farewell_timeout": 10**400},
            {"hook_timeout": float("nan")},
            {"hooks": log_verdict},
            {"classifiers": lambda facts: None},
            {"hooks": "log_verdict"},
            {"presynthesize": 1},
        ],
        ids=["bool", "huge-int", "nan", "single-hook", "single-classifier", "str", "int-flag"],
    )
    def test_bad_policy_values(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(PolicyError):
            GuardPolicy(**kwargs)

    @pytest.mark.parametrize(
        "kwargs",
        [{"timeout": True}, {"timeout": 10**400}, {"on_tolerated": 1}, {"attribute": 3}],
    )
    def test_bad_signal_values(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(PolicyError):
            FrontendSignal(**kwargs)

    async def test_tolerated_storm_is_coalesced(
        self, sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """5,000 tolerated retries: a handful of room calls, the last one the latest."""
        calls: list[str] = []

        class Participant:
            async def set_attributes(self, attributes: dict[str, str]) -> None:
                calls.append("attr")
                await asyncio.sleep(0.01)

            async def send_text(self, text: str, *, topic: str = "") -> None:
                calls.append("text")

        monkeypatch.setattr(signal_module, "participant_of", lambda session: Participant())
        session = make_session(sim)
        g = guard(session, GuardPolicy(signal=FrontendSignal(on_tolerated=True)))
        await start(session)
        model = session.llm
        assert isinstance(model, llm.LLM)
        error = APIError("busy", body={"code": 503}, retryable=True)
        for _ in range(5000):
            model.emit("error", llm_error(error, recoverable=True))
        await asyncio.sleep(0.2)
        assert g.verdict_counts == {"llm.unknown": 5000}  # all classified and counted
        assert len(g.verdicts) == g.policy.recent_verdicts  # only the latest kept
        assert 2 <= len(calls) <= 6
        await session.aclose()
