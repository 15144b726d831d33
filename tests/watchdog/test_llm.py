"""LLM stalls: a provider that accepts the request and never answers, or answers nothing."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import Agent, CloseReason, llm

from agent_guard import Category, GuardPolicy, Kind, Reason, StallError, guard
from agent_guard._policy import DEFAULT_STALL_MESSAGE
from agent_guard.testing import (
    CaptureAudioOutput,
    ClientCancelled,
    GatewaySimulator,
    Hang,
    HttpError,
    RateLimited,
    RecordedRequest,
    Reply,
    StreamError,
)
from agent_guard.testing._simulator import LLMResponse
from tests.helpers import chat_texts, make_session, spoken
from tests.watchdog.helpers import (
    BOUND,
    SHORT_NOTICE,
    STALL,
    guarded_session,
    heard_after,
    heard_since,
    say_turn,
    wait_until,
)


class TestOneOffStall:
    """A single stalled request costs the caller a notice and a retry, not the turn."""

    @pytest.mark.parametrize(
        "fault",
        [Hang(after_headers=True), Hang(), Reply(""), ClientCancelled()],
        ids=["hang-after-headers", "hang-before-headers", "empty-completion", "swallowed-499"],
    )
    async def test_notice_then_retried_reply(
        self, sim: GatewaySimulator, fault: LLMResponse
    ) -> None:
        """The caller hears the notice within the bound, then the retried reply."""
        sim.llm.script(fault, Reply("Here is your answer."))
        session, g, out = await guarded_session(sim)

        at = say_turn(session, "hi")
        await wait_until(lambda: "Here is your answer." in chat_texts(session))

        waited = heard_after(out, at)
        assert waited is not None and waited < BOUND
        assert [v.category for v in g.verdicts] == [Category.STALLED]
        assert g.verdicts[0].kind is Kind.LLM
        assert g.verdicts[0].counts
        assert len(sim.requests_for("llm")) == 2  # the stalled one and one retry
        # The notice is the packaged recording (no TTS request for it), not in the chat.
        assert DEFAULT_STALL_MESSAGE not in " ".join(chat_texts(session))
        assert g.decision is None
        await session.aclose()

    async def test_stall_retry_off(self, sim: GatewaySimulator) -> None:
        """``stall_retry=False``: the notice, and no second request."""
        sim.llm.script(Hang(after_headers=True))
        session, _g, out = await guarded_session(sim, stall_retry=False)

        at = say_turn(session, "hi")
        await wait_until(lambda: out.segments and out.segments[-1].finished_at is not None)
        await asyncio.sleep(0.3)

        assert (waited := heard_after(out, at)) is not None and waited < BOUND
        assert len(sim.requests_for("llm")) == 1
        await session.aclose()

    async def test_no_notice_still_cancels(self, sim: GatewaySimulator) -> None:
        """``stall_message=None``: silence, but the stuck request is cancelled and retried."""
        sim.llm.script(Hang(after_headers=True), Reply("Back again."))
        session, _g, out = await guarded_session(sim, stall_message=None)

        say_turn(session, "hi")
        await wait_until(lambda: "Back again." in chat_texts(session))

        assert len(out.segments) == 1  # only the retried reply was heard
        assert len(sim.requests_for("llm")) == 2
        await session.aclose()


class TestPersistentStall:
    """A provider that hangs on every request ends the call on the 3rd stalled turn."""

    async def test_third_stalled_turn_closes_with_error(self, sim: GatewaySimulator) -> None:
        """Turn 1: stall, retry stalls; turn 2: stall (no retry); turn 3: farewell, close."""
        sim.llm.default = Hang(after_headers=True)
        session, g, out = await guarded_session(
            sim, error_message="Goodbye.", stall_message=SHORT_NOTICE
        )

        for turn in range(1, 4):
            at = say_turn(session, f"hello {turn}")
            await wait_until(heard_since(out, at))
            assert (waited := heard_after(out, at)) is not None and waited < BOUND
            if turn < 3:
                await wait_until(lambda: out.segments and out.segments[-1].finished_at is not None)
                await wait_until(lambda: session.current_speech is None, within=5)

        async with asyncio.timeout(10):
            ev = await g.wait_closed()

        assert ev.reason is CloseReason.ERROR
        assert isinstance(ev.error, llm.LLMError)
        assert isinstance(ev.error.error, StallError)
        assert ev.error.recoverable is False
        assert g.decision is not None
        assert g.decision.reason is Reason.TOLERANCE_EXCEEDED
        assert g.decision.verdict.category is Category.STALLED
        assert [v.category for v in g.verdicts] == [Category.STALLED] * 4
        # 3 user turns, one retry: 4 requests, each cut off by the watchdog.
        assert len(sim.requests_for("llm")) == 4
        assert g.farewell is not None and g.farewell.completed
        assert "Goodbye." in spoken(sim)


class TestRetriedFailures:
    """Failures livekit reports and retries: the caller hears the notice, the turn counts once."""

    async def test_rate_limit_storm_counts_turns_not_stalls(self, sim: GatewaySimulator) -> None:
        """3 rate-limited turns: 3 notices, 3 counted failures, no close (as without it)."""
        sim.llm.default = RateLimited()
        session, g, out = await guarded_session(sim, stall_message=SHORT_NOTICE)

        for turn in range(3):
            at = say_turn(session, f"turn {turn}")
            await wait_until(heard_since(out, at))
            assert (waited := heard_after(out, at)) is not None and waited < BOUND
            await wait_until(lambda: session.current_speech is None, within=5)

        counted = [v for v in g.verdicts if v.counts and not v.recoverable]
        assert [v.category for v in counted] == [Category.STALLED] * 3
        assert all("retrying after rate_limited" in v.detail for v in counted)
        # livekit's first attempt and its 0.1 s retry per turn; the 2 s retry is cut off.
        assert len(sim.requests_for("llm")) == 6
        assert g.decision is None
        await session.aclose()

    async def test_a_failure_reported_before_the_stall_is_heard(
        self, sim: GatewaySimulator
    ) -> None:
        """livekit gives up on the reply (no retries left) before the stall: the turn counts
        as that failure, once, and the caller, who heard nothing, hears the notice."""
        sim.llm.script(HttpError(500), Reply("Back again."))
        session = make_session(sim, max_retry=0)
        g = guard(session, GuardPolicy(stall_timeout=STALL, presynthesize=False))
        out = CaptureAudioOutput(realtime=True)
        session.output.audio = out
        await session.start(Agent(instructions="Be brief."))

        at = say_turn(session, "hi")
        await wait_until(heard_since(out, at))
        assert (waited := heard_after(out, at)) is not None and waited < BOUND
        assert [(v.category, v.counts) for v in g.verdicts] == [(Category.SERVER_ERROR, True)]
        assert g.decision is None
        assert len(sim.requests_for("llm")) == 1  # the notice is no retry
        await session.aclose()

    async def test_mid_stream_499_storm_is_heard_but_never_counts(
        self, sim: GatewaySimulator
    ) -> None:
        """Cancellations never count; the caller still hears the notice instead of silence."""
        sim.llm.default = StreamError(
            after_chunks=0, body={"message": "Client closed request", "code": 499}
        )
        session, g, out = await guarded_session(sim)

        for turn in range(2):
            at = say_turn(session, f"turn {turn}")
            await wait_until(heard_since(out, at))
            assert (waited := heard_after(out, at)) is not None and waited < BOUND
            await wait_until(lambda: session.current_speech is None, within=5)

        stalls = [v for v in g.verdicts if v.category is Category.STALLED]
        assert len(stalls) == 2
        assert not any(v.counts for v in g.verdicts)
        assert len(sim.requests_for("llm")) == 4  # no retry of the guard's own
        assert g.decision is None
        await session.aclose()


class TestRetryAsksTheSame:
    """The retry of a stalled ``generate_reply()`` asks what the app asked."""

    @staticmethod
    def messages(request: RecordedRequest) -> list[tuple[str, str]]:
        assert request.json is not None
        return [(m["role"], str(m["content"])) for m in request.json["messages"]]

    async def test_instructions_are_asked_again(self, sim: GatewaySimulator) -> None:
        sim.llm.script(Hang(after_headers=True), Reply("Hello Ada."))
        session, g, _out = await guarded_session(sim)

        session.generate_reply(user_input="who am I?", instructions="Greet the caller as Ada.")
        await wait_until(lambda: "Hello Ada." in chat_texts(session))

        first, retry = sim.requests_for("llm")
        assert self.messages(retry) == self.messages(first)
        assert any("Greet the caller as Ada." in text for _, text in self.messages(retry))
        # The caller's words once: livekit committed them with the stalled reply.
        assert sum("who am I?" in text for _, text in self.messages(retry)) == 1
        assert [v.category for v in g.verdicts] == [Category.STALLED]
        await session.aclose()
