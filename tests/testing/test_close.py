"""Testing the livekit way: guarded_close, CaptureTextOutput and what FarewellResult says."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import Agent, AgentSession, CloseReason, RunResult
from livekit.plugins import openai

from agent_guard import Category, Farewell, GuardPolicy, Reason, guard
from agent_guard import _audio as audio_cache
from agent_guard._policy import DEFAULT_FAREWELL_AUDIO
from agent_guard.testing import (
    CaptureTextOutput,
    GatewaySimulator,
    HttpError,
    QuotaExceeded,
    RateLimited,
    Reply,
    guarded_close,
)
from tests.helpers import SECRET_KEY, make_session, start, turn

SORRY = "We are out of minutes today."


def text_session(sim: GatewaySimulator) -> AgentSession[None]:
    """A session as livekit's own testing docs build one: an LLM, nothing else."""
    return AgentSession(llm=openai.LLM(base_url=sim.base_url, api_key=SECRET_KEY))


class TestGuardedClose:
    """guarded_close() waits for the guard's close after a session.run() and says how."""

    async def test_after_run_in_a_text_session(self, sim: GatewaySimulator) -> None:
        """The failing run returns empty; the farewell is the configured text, as text."""
        sim.llm.default = QuotaExceeded()
        session = text_session(sim)
        guard(session, GuardPolicy(error_message=SORRY))
        transcript = CaptureTextOutput()
        session.output.transcription = transcript
        await session.start(Agent(instructions="Be brief."))

        result: RunResult[None] = await session.run(user_input="Book a table")
        assert result.events == []  # the farewell comes after the run, outside it
        closed = await guarded_close(session)

        assert (closed.said, closed.source, closed.reason) == (SORRY, "text", CloseReason.ERROR)
        assert closed.verdict is not None and closed.verdict.category is Category.QUOTA_EXHAUSTED
        assert closed.decision is not None and closed.decision.reason is Reason.TERMINAL
        assert closed.farewell is not None and closed.farewell.completed
        assert closed.close.error is not None and closed.close.error.type == "llm_error"
        assert transcript.segments == [SORRY]
        assert SORRY not in [m.text_content for m in session.history.messages()]

    async def test_not_guarded(self, sim: GatewaySimulator) -> None:
        """A session without a guard is a test bug, said at once."""
        with pytest.raises(AssertionError, match="not guarded"):
            await guarded_close(text_session(sim))

    async def test_no_close_within_the_bound(self, sim: GatewaySimulator) -> None:
        """A tolerated failure does not close: the assertion names what was seen."""
        sim.llm.default = RateLimited()
        session = make_session(sim, max_retry=0)
        guard(session)
        await start(session)
        await turn(session, "hi")
        with pytest.raises(AssertionError, match=r"llm/rate_limited; no decision"):
            await guarded_close(session, within=0.2)
        await session.aclose()

    async def test_closed_by_someone_else(self, sim: GatewaySimulator) -> None:
        """The user's own close: no verdict, no farewell, livekit's reason."""
        session = make_session(sim)
        guard(session)
        await start(session)
        await session.aclose()
        closed = await guarded_close(session)
        assert (closed.reason, closed.verdict, closed.said, closed.source) == (
            CloseReason.USER_INITIATED,
            None,
            None,
            None,
        )


class TestFarewellSource:
    """FarewellResult names the farewell's words and where its sound came from."""

    async def test_tts(self, sim: GatewaySimulator) -> None:
        """A healthy TTS speaks the configured text."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        guard(session, GuardPolicy(error_message=SORRY))
        await start(session)
        await turn(session, "hi")
        closed = await guarded_close(session)
        assert (closed.said, closed.source) == (SORRY, "tts")

    async def test_recording(self, sim: GatewaySimulator) -> None:
        """The policy's recording, with the configured text as its transcript."""
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        guard(session, GuardPolicy(error_message=SORRY, farewell_audio=str(DEFAULT_FAREWELL_AUDIO)))
        await start(session)
        await turn(session, "hi")
        closed = await guarded_close(session)
        assert (closed.said, closed.source) == (SORRY, "recording")

    async def test_default_when_tts_is_what_failed(self, sim: GatewaySimulator) -> None:
        """TTS out of credits: the packaged recording, and its own words."""
        sim.llm.default = Reply("Sure, one moment.")
        sim.tts.default = QuotaExceeded(quota_type="tts")
        session = make_session(sim)
        guard(session, GuardPolicy(error_message=SORRY))
        await start(session)
        await turn(session, "hi")
        closed = await guarded_close(session)
        assert (closed.said, closed.source) == (Farewell.DEFAULT.text, "default")

    async def test_default_when_tts_fails_during_the_farewell(self, sim: GatewaySimulator) -> None:
        """The synthesised farewell breaks: the recording stands in, and says so."""
        sim.llm.default = QuotaExceeded()
        sim.tts.default = HttpError(status=500)
        session = make_session(sim, max_retry=0)
        guard(session, GuardPolicy(error_message=SORRY))
        await start(session)
        await turn(session, "hi")
        closed = await guarded_close(session)
        assert closed.farewell is not None and closed.farewell.fell_back
        assert (closed.said, closed.source) == (Farewell.DEFAULT.text, "default")

    async def test_presynthesized(self, sim: GatewaySimulator) -> None:
        """Synthesised while TTS was healthy: the cached audio plays."""
        text = "Presynthesised goodbye for the source test."
        sim.llm.default = QuotaExceeded()
        session = make_session(sim)
        guard(session, GuardPolicy(error_message=text, presynthesize=True))
        await start(session)
        async with asyncio.timeout(10):
            while not any(key[0] == text for key in audio_cache._PRESYNTH):
                await asyncio.sleep(0.02)
        await turn(session, "hi")
        closed = await guarded_close(session)
        assert (closed.said, closed.source) == (text, "presynthesized")


class TestCaptureTextOutput:
    """The transcript sink keeps one segment per speech."""

    async def test_segments(self) -> None:
        """Flushed text becomes a segment; empty flushes leave none."""
        out = CaptureTextOutput()
        await out.capture_text("Hello")
        await out.capture_text(" there.")
        assert (out.pending, out.last) == ("Hello there.", None)
        out.flush()
        out.flush()
        await out.capture_text("Goodbye.")
        out.flush()
        assert out.segments == ["Hello there.", "Goodbye."]
        assert (out.pending, out.last) == ("", "Goodbye.")
