"""The guard end to end: a real AgentSession, the real openai plugin and SDK over HTTP."""

from __future__ import annotations

import asyncio
import math
import struct
import time
import wave
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import CloseReason, llm
from livekit.agents._exceptions import APIStatusError
from structlog.testing import capture_logs

from agent_guard import Category, GuardError, GuardPolicy, Reason, guard
from agent_guard._policy import DEFAULT_ERROR_MESSAGE
from agent_guard.testing import (
    GatewaySimulator,
    Hang,
    HttpError,
    QuotaExceeded,
    RateLimited,
    Reply,
)
from tests.helpers import chat_texts, heard, make_session, start, turn


class TestCreditsExhausted:
    """LiveKit Inference credits run out mid-conversation."""

    async def test_farewell_in_first_failing_turn_then_error_close(
        self, sim: GatewaySimulator
    ) -> None:
        """One provider request, the apology is heard, the close carries the 429."""
        sim.llm.script(Reply("Hello there."))
        sim.llm.default = QuotaExceeded(category="MaxGatewayCredits")
        session = make_session(sim)
        g = guard(session)
        out = await start(session)

        await turn(session, "hi")
        assert (g.decision, g.verdicts) == (None, ())  # a tuple: no narrowing for mypy
        await turn(session, "are you there?")
        async with asyncio.timeout(10):
            ev = await g.wait_closed()

        llm_requests = sim.requests_for("llm")
        assert [r.status for r in llm_requests] == [200, 429]  # asked once, never retried
        assert ev.reason is CloseReason.ERROR
        assert isinstance(ev.error, llm.LLMError)
        assert isinstance(ev.error.error, APIStatusError)
        assert ev.error.error.status_code == 429
        assert ev.error.recoverable is False

        assert g.decision is not None
        assert g.decision.reason is Reason.TERMINAL
        assert g.decision.verdict.category is Category.QUOTA_EXHAUSTED
        assert g.decision.verdict.terminal
        assert g.farewell is not None and g.farewell.completed

        # The apology was synthesised and played after the quota response.
        quota_at = llm_requests[-1].responded_at
        assert quota_at is not None
        assert heard(g) == DEFAULT_ERROR_MESSAGE
        after = [f for f in out.frames if f.at > quota_at]
        assert after, "no farewell audio after the quota response"
        assert after[0].at - quota_at < 1.0

        # The farewell is not part of the conversation.
        assert DEFAULT_ERROR_MESSAGE not in chat_texts(session)
        assert "Hello there." in chat_texts(session)

    async def test_close_happens_exactly_once(self, sim: GatewaySimulator) -> None:
        """A second failing kind during the farewell does not close a second time."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        closes: list[Any] = []
        session.on("close", closes.append)
        g = guard(session)
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()
        await asyncio.sleep(0.2)
        assert len(closes) == 1


class TestRestart:
    """livekit lets a closed session start again: the guard decides afresh."""

    async def test_restarted_session_replies_and_is_guarded_again(
        self, sim: GatewaySimulator
    ) -> None:
        """After a guard close: the next run replies, and a new failure closes it again."""
        from livekit.agents import Agent

        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        closes: list[Any] = []
        session.on("close", closes.append)
        # No fleet breaker: it would (rightly) refuse the exhausted account's next request.
        g = guard(session, GuardPolicy(fleet=None))
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()

        sim.llm.script(Reply("Hello again."))
        await session.start(Agent(instructions="Be brief."))
        assert (g.decision, g.close_event) == (None, None)  # a tuple: no narrowing for mypy
        await turn(session, "are you back?")
        assert "Hello again." in chat_texts(session)

        await turn(session, "still there?")  # credits are still gone
        async with asyncio.timeout(10):
            ev = await g.wait_closed()
        assert ev.reason is CloseReason.ERROR
        assert len(closes) == 2
        assert g.decision is not None
        assert g.decision.verdict.category is Category.QUOTA_EXHAUSTED


class TestTransient:
    """Transient failures keep stock behaviour: retried, tolerated."""

    async def test_rate_limit_category_is_retried_not_terminal(self, sim: GatewaySimulator) -> None:
        """A gateway rate-limit 429 is retried by livekit and does not close the session."""
        sim.llm.default = RateLimited()
        session = make_session(sim, retry_interval=0.05)
        g = guard(session)
        await start(session)
        await turn(session, "hi")

        assert len(sim.requests_for("llm")) == 4  # 1 + max_retry=3, as stock livekit
        assert g.decision is None
        assert g.close_event is None
        assert [v.category for v in g.verdicts] == [Category.RATE_LIMITED] * 4
        assert not any(v.terminal for v in g.verdicts)
        await session.aclose()

    async def test_history_keeps_the_latest_and_counts_all(self, sim: GatewaySimulator) -> None:
        """`recent_verdicts` bounds the history; `verdict_counts` counts every verdict."""
        sim.llm.default = RateLimited()
        session = make_session(sim, retry_interval=0.05)
        g = guard(session, GuardPolicy(recent_verdicts=3))
        await start(session)
        await turn(session, "hi")

        assert len(sim.requests_for("llm")) == 4
        assert [v.category for v in g.verdicts] == [Category.RATE_LIMITED] * 3
        assert [v.recoverable for v in g.verdicts] == [True, True, False]  # the last three
        assert g.verdict_counts == {"llm.rate_limited": 4}
        await session.aclose()

    @pytest.mark.parametrize(
        "body",
        [
            b"<html>502 bad gateway</html>",
            b'{"type": "inference_quota_exceeded", "category": ["MaxGatewayCredits"], "hint": 5}',
            b'{"error": 42, "type": 7}',
            b"\xff\xfe not utf-8",
        ],
        ids=["not-json", "category-list", "wrong-types", "not-utf8"],
    )
    async def test_malformed_bodies_never_crash(self, sim: GatewaySimulator, body: bytes) -> None:
        """Bodies that are not JSON, or JSON with wrong types, are classified, not raised."""
        sim.llm.default = HttpError(status=429, body=body)
        session = make_session(sim, retry_interval=0.01)
        g = guard(session)
        await start(session)
        with capture_logs() as logs:
            await turn(session, "hi")
        assert not [e for e in logs if e["event"] == "agent_guard.hook_failed"]
        assert len(g.verdicts) == 4
        assert all(v.category is Category.RATE_LIMITED for v in g.verdicts)
        assert g.decision is None
        await session.aclose()


class TestPolicy:
    """Each farewell knob changes what is heard."""

    async def test_error_message_none_closes_silently(self, sim: GatewaySimulator) -> None:
        """error_message=None: no TTS request, no audio, still an ERROR close."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message=None))
        out = await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            ev = await g.wait_closed()
        assert ev.reason is CloseReason.ERROR
        assert sim.requests_for("tts") == []
        assert out.frames == []
        assert g.farewell is None

    async def test_custom_message_is_spoken(self, sim: GatewaySimulator) -> None:
        """A str error_message is what TTS is asked to say."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(error_message="We'll call you back."))
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert heard(g) == "We'll call you back."

    async def test_farewell_audio_file_replaces_tts(
        self, sim: GatewaySimulator, tmp_path: Path
    ) -> None:
        """farewell_audio: the file's samples are played and TTS is never called."""
        path = tmp_path / "sorry.wav"
        samples = _write_tone(path, seconds=0.5, rate=24000)
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_audio=path))
        out = await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            ev = await g.wait_closed()
        assert ev.reason is CloseReason.ERROR
        assert sim.requests_for("tts") == []
        played = out.pcm()
        assert played[: len(samples)] == samples
        assert len(played) >= len(samples)

    async def test_hanging_tts_is_bounded_by_farewell_timeout(self, sim: GatewaySimulator) -> None:
        """TTS that never answers: the close still comes within farewell_timeout + margin."""
        sim.llm.default = QuotaExceeded()
        sim.tts.default = Hang()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_timeout=1.0))
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()
        closed_at = time.monotonic()
        assert g.decision is not None
        assert closed_at - g.decision.at < 1.0 + 0.5
        assert g.farewell is not None and g.farewell.timed_out


class TestClassifiersKnob:
    """GuardPolicy.classifiers: the user's chain decides before the generic rules."""

    async def test_custom_classifier_runs_first(self, sim: GatewaySimulator) -> None:
        """A classifier calling every 503 terminal closes in the first failing turn."""
        from agent_guard import Verdict
        from agent_guard.classifiers import DEFAULT_CLASSIFIERS, ErrorFacts

        def outage_is_final(facts: ErrorFacts) -> Verdict | None:
            if facts.status_code == 503:
                return facts.verdict(Category.OVERLOADED, provider="acme", terminal=True)
            return None

        sim.llm.default = HttpError(status=503, body={"error": {"message": "down"}})
        session = make_session(sim)
        g = guard(session, GuardPolicy(classifiers=(outage_is_final, *DEFAULT_CLASSIFIERS)))
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert len(sim.requests_for("llm")) == 1
        assert g.decision is not None
        assert g.decision.verdict.provider == "acme"
        assert g.decision.reason is Reason.TERMINAL


class TestGuardCall:
    """guard() itself: misuse gets a clear error."""

    async def test_after_start_is_refused(self, sim: GatewaySimulator) -> None:
        """Attaching after start() would let livekit's counter run first."""
        session = make_session(sim)
        await start(session)
        with pytest.raises(GuardError, match=r"before session\.start"):
            guard(session)
        await session.aclose()

    async def test_idempotent_per_session(self, sim: GatewaySimulator) -> None:
        """The same session gets the same guard; a different policy is refused."""
        session = make_session(sim)
        policy = GuardPolicy()
        g = guard(session, policy)
        assert guard(session) is g
        assert guard(session, policy) is g
        with pytest.raises(GuardError, match="different policy"):
            guard(session, GuardPolicy(error_message=None))

    def test_rejects_non_sessions(self) -> None:
        """A clear TypeError, not an AttributeError deep inside."""
        with pytest.raises(TypeError, match="AgentSession"):
            guard(object())  # type: ignore[arg-type]


def _write_tone(path: Path, *, seconds: float, rate: int) -> bytes:
    n = int(seconds * rate)
    data = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(n)
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)
    return data
