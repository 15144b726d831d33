"""The in-process fleet breaker with real sessions, the real openai plugin and real HTTP.

Every count of provider requests comes from the simulator's own log (``sim.requests``):
a refused request must never reach it. livekit's token-free connection prewarm
(``GET /v1/`` and ``/v1/models`` at session start) is not a billed request and is not
counted: only chat completions (``llm``) and speech (``tts``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
import tenacity
from livekit.agents import Agent, AgentSession, APIConnectOptions, CloseReason, llm
from livekit.plugins import openai

from agent_guard import Category, GuardPolicy, guard
from agent_guard._audio import preload
from agent_guard._policy import DEFAULT_FAREWELL_AUDIO
from agent_guard.fallback import FallbackLLM
from agent_guard.fleet import FleetBreaker, FleetOpenError
from agent_guard.testing import (
    GatewaySimulator,
    HttpError,
    QuotaExceeded,
    RateLimited,
    Reply,
    Unauthorized,
)
from tests.helpers import SECRET_KEY, make_session, start

OTHER_KEY = "sk-proj-OTHERSECRET9876543210zyxwvuZYXWVU"


def chat(base_url: str, key: str = SECRET_KEY) -> openai.LLM:
    return openai.LLM(model="gpt-4o-mini", base_url=base_url, api_key=key)


def billed(sim: GatewaySimulator, since: int = 0) -> list[str]:
    """Billed requests since ``since``: chat completions, not the farewell's speech (the
    gateway's ``quota_type`` says only the LLM quota ran out, so TTS still serves)."""
    return [r.endpoint for r in sim.requests[since:] if r.endpoint == "llm"]


def policy(breaker: FleetBreaker | None, cooldown: float = 60.0) -> GuardPolicy:
    # A short farewell: the simulator speaks at the pace of real speech.
    return GuardPolicy(fleet=breaker, fleet_cooldown=cooldown, error_message="Bye.")


async def exhaust(sim: GatewaySimulator, pol: GuardPolicy) -> None:
    """One session meets the exhausted account (the fleet's one paid discovery)."""
    sim.llm.default = QuotaExceeded(category="MaxGatewayCredits")
    session = make_session(sim)
    g = guard(session, pol)
    await start(session)
    session.generate_reply(user_input="hello")
    ev = await asyncio.wait_for(g.wait_closed(), 5)
    assert ev.reason is CloseReason.ERROR


async def start_text(session: AgentSession[Any]) -> None:
    """Start a session that has no TTS: no audio output either."""
    await session.start(Agent(instructions="Be brief."))


def end_cooldown(breaker: FleetBreaker) -> None:
    """Make every open breaker half-open now, as its cool-down ending would."""
    for key, state in breaker.states.items():
        breaker.remote_opened(key, dataclasses.replace(state, until=time.time()))


async def reply_or_close(session: AgentSession[Any]) -> None:
    handle = session.generate_reply(user_input="hello")
    await asyncio.wait_for(handle.wait_for_playout(), 5.0)


class TestNewSession:
    async def test_farewell_at_first_reply_without_a_request(self, sim: GatewaySimulator) -> None:
        """After one session met the exhausted account, the next plays its farewell at
        its first reply, within 0.1 s, and sends that account nothing."""
        breaker = FleetBreaker("test")
        pol = policy(breaker)
        await exhaust(sim, pol)
        assert billed(sim) == ["llm"]  # the one paid discovery
        assert len(breaker.states) == 1
        before = len(sim.requests)

        # As a worker's prewarm would: the recording decoded once per process (~20-50 ms
        # on the first refusal otherwise, which is not what this bound measures).
        await preload(DEFAULT_FAREWELL_AUDIO)
        session = make_session(sim)
        g = guard(session, pol)
        out = await start(session)
        asked = time.monotonic()
        session.generate_reply(user_input="hello again")
        ev = await asyncio.wait_for(g.wait_closed(), 5)

        assert billed(sim, before) == []
        assert out.frames, "the caller heard nothing"
        assert out.frames[0].at - asked <= 0.1
        assert ev.reason is CloseReason.ERROR
        assert ev.error is not None and isinstance(ev.error.error, FleetOpenError)
        assert g.decision is not None
        assert g.decision.verdict.category is Category.QUOTA_EXHAUSTED
        assert g.farewell is not None and g.farewell.completed

    async def test_without_fleet_every_session_pays(self, sim: GatewaySimulator) -> None:
        """``fleet=None``: the next session sends its request and fails again (stock)."""
        pol = policy(None)
        await exhaust(sim, pol)
        before = len(sim.requests)
        session = make_session(sim)
        g = guard(session, pol)
        await start(session)
        session.generate_reply(user_input="hello again")
        await asyncio.wait_for(g.wait_closed(), 5)
        assert "llm" in billed(sim, before)

    async def test_default_policy_shares_in_process(self, sim: GatewaySimulator) -> None:
        """The default ``fleet="memory"`` shares among the process's guarded sessions."""
        await exhaust(sim, GuardPolicy())
        before = len(sim.requests)
        session = make_session(sim)
        g = guard(session, GuardPolicy())
        await start(session)
        session.generate_reply(user_input="hello again")
        await asyncio.wait_for(g.wait_closed(), 5)
        assert billed(sim, before) == []

    async def test_whole_account_refuses_tts_too(self, sim: GatewaySimulator) -> None:
        """A revoked key (401) is the whole account's: the farewell is not synthesised by
        it either: the recording plays at once, and nothing at all is sent."""
        breaker = FleetBreaker("test")
        pol = policy(breaker)
        sim.llm.default = Unauthorized()
        first = make_session(sim)
        g = guard(first, pol)
        await start(first)
        first.generate_reply(user_input="hello")
        await asyncio.wait_for(g.wait_closed(), 5)
        before = len(sim.requests)
        session = make_session(sim)
        g = guard(session, pol)
        out = await start(session)
        session.generate_reply(user_input="hello")
        await asyncio.wait_for(g.wait_closed(), 5)
        assert [r.endpoint for r in sim.requests[before:] if r.endpoint != "other"] == []
        assert out.frames and g.farewell is not None and g.farewell.completed

    async def test_auth_opens_too(self, sim: GatewaySimulator) -> None:
        """A revoked key (401) is account-scope as well."""
        breaker = FleetBreaker("test")
        sim.llm.default = Unauthorized()
        session = make_session(sim)
        g = guard(session, policy(breaker))
        await start(session)
        session.generate_reply(user_input="hello")
        await asyncio.wait_for(g.wait_closed(), 5)
        assert [s.category for s in breaker.states.values()] == [Category.AUTH]


class TestRunningSession:
    async def test_next_turn_says_goodbye_without_a_request(self, sim: GatewaySimulator) -> None:
        """A session that was fine says goodbye on its next turn once another session
        found the account exhausted, without sending it that turn."""
        breaker = FleetBreaker("test")
        pol = policy(breaker)
        running = make_session(sim)
        g = guard(running, pol)
        await start(running)
        await reply_or_close(running)
        assert g.decision is None

        await exhaust(sim, pol)
        before = len(sim.requests)
        running.generate_reply(user_input="and now?")
        ev = await asyncio.wait_for(g.wait_closed(), 5)
        assert ev.reason is CloseReason.ERROR
        assert billed(sim, before) == []


class TestAccounts:
    async def test_another_key_on_the_same_endpoint_is_not_blocked(
        self, sim: GatewaySimulator
    ) -> None:
        breaker = FleetBreaker("test")
        pol = policy(breaker)
        await exhaust(sim, pol)
        sim.llm.default = Reply("Still here.")
        before = len(sim.requests)
        session: AgentSession[Any] = AgentSession(
            llm=chat(sim.base_url, OTHER_KEY),
            vad=None,
            turn_handling={"turn_detection": "manual"},
        )
        g = guard(session, pol)
        await start_text(session)
        await reply_or_close(session)
        assert billed(sim, before) == ["llm"]
        assert g.decision is None
        await session.aclose()

    async def test_a_transient_failure_opens_nothing(self, sim: GatewaySimulator) -> None:
        breaker = FleetBreaker("test")
        sim.llm.default = QuotaExceeded(category="MaxConcurrentGatewayLLMRpm")  # a rate limit
        session = make_session(sim, max_retry=0)
        guard(session, policy(breaker))
        await start(session)
        await reply_or_close(session)
        assert breaker.states == {}
        await session.aclose()

    async def test_the_policys_retry_horizon_judges_the_account(
        self, sim: GatewaySimulator
    ) -> None:
        """A rate limit whose Retry-After is past the policy's horizon is exhausted credits
        for the guard, and for the breaker too: the gate judges with the same horizon."""
        breaker = FleetBreaker("test")
        sim.llm.default = RateLimited(retry_after=30)
        session = make_session(sim, max_retry=0)
        pol = dataclasses.replace(policy(breaker), retry_horizon=5.0)
        g = guard(session, pol)
        await start(session)
        session.generate_reply(user_input="hello")
        await asyncio.wait_for(g.wait_closed(), 5)
        assert g.decision is not None
        assert g.decision.verdict.category is Category.QUOTA_EXHAUSTED
        assert len(breaker.states) == 1


class TestHalfOpen:
    async def test_one_probe_then_reopen_then_recovery(self, sim: GatewaySimulator) -> None:
        """After the cool-down exactly one of many sessions probes; a failed probe
        re-opens for another cool-down; a served one closes the breaker."""
        breaker = FleetBreaker("test")
        pol = policy(breaker, cooldown=0.3)
        await exhaust(sim, pol)
        await asyncio.sleep(0.35)

        async def one_session() -> None:
            session = make_session(sim)
            g = guard(session, pol)
            await start(session)
            session.generate_reply(user_input="hi")
            await asyncio.wait_for(g.wait_closed(), 5)

        before = len(sim.requests)
        await asyncio.gather(*(one_session() for _ in range(5)))
        assert billed(sim, before) == ["llm"]  # the probe, failed: still exhausted
        state = next(iter(breaker.states.values()))
        assert state.until > time.time()  # re-opened

        await asyncio.sleep(0.35)
        sim.llm.default = Reply("Back.")
        before = len(sim.requests)
        session = make_session(sim)
        g = guard(session, pol)
        await start(session)
        await reply_or_close(session)
        assert g.decision is None
        assert breaker.states == {}  # closed by the served probe
        assert billed(sim, before)[0] == "llm"
        await session.aclose()

    async def test_retry_after_sets_the_cooldown(self, sim: GatewaySimulator) -> None:
        breaker = FleetBreaker("test")
        sim.llm.default = QuotaExceeded(category="MaxGatewayCredits", retry_after=120)
        session = make_session(sim)
        g = guard(session, policy(breaker, cooldown=1.0))
        await start(session)
        session.generate_reply(user_input="hello")
        await asyncio.wait_for(g.wait_closed(), 5)
        (state,) = breaker.states.values()
        assert 110 < state.until - time.time() <= 120


async def consume(stream: llm.LLMStream) -> str:
    """Read a chat stream to its end, as livekit's llm_node does; the text it carried."""
    async with stream:
        return "".join(c.delta.content or "" for c in [c async for c in stream] if c.delta)


def ask(session: AgentSession[Any]) -> llm.LLMStream:
    """A request through the session's (gated) LLM, with livekit's retries kept short."""
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="hello")
    conn = APIConnectOptions(max_retry=3, retry_interval=0.05, timeout=5.0)
    model = session.llm
    assert isinstance(model, llm.LLM)
    return model.chat(chat_ctx=ctx, conn_options=conn)


class TestRetries:
    """livekit retries a failed request inside its stream, not through ``chat()``: a
    request let through before the account was found exhausted must not be retried into
    it. In a session the guard usually cancels the stream before livekit's first retry
    (0.1 s after the failure); on a loaded worker it does not (the fleet benchmark, with
    each call paying its own TLS set-up, leaked dozens of retries that way). Here the
    stream is read directly, so no guard cancels it."""

    async def test_no_retry_into_the_opening_its_failure_made(self, sim: GatewaySimulator) -> None:
        breaker = FleetBreaker("test")
        session = make_session(sim)
        guard(session, policy(breaker))
        await start(session)
        sim.llm.default = QuotaExceeded(category="MaxGatewayCredits")
        before = len(sim.requests)

        with pytest.raises(FleetOpenError):
            await consume(ask(session))

        assert billed(sim, before) == ["llm"]  # the discovery; not its 3 retries
        assert len(breaker.states) == 1
        await session.aclose()

    async def test_the_probe_retries_a_transient_failure(self, sim: GatewaySimulator) -> None:
        """The probe's own retries are still the probe: after a 500 it tries again, is
        served, and closes the breaker."""
        breaker = FleetBreaker("test")
        pol = policy(breaker, cooldown=60.0)
        await exhaust(sim, pol)
        end_cooldown(breaker)
        sim.llm.script(HttpError(500))
        sim.llm.default = Reply("Back.")
        session = make_session(sim)
        guard(session, pol)
        await start(session)
        before = len(sim.requests)

        assert await consume(ask(session)) == "Back."

        assert billed(sim, before) == ["llm", "llm"]
        assert breaker.states == {}
        await session.aclose()


class TestFallback:
    async def test_guarded_fallback_skips_the_exhausted_instance(self) -> None:
        """The primary's account is open: the adapter goes straight to the backup, and the
        primary gets no request, turn after turn; after the cool-down it is probed and
        serves again."""
        breaker = FleetBreaker("test")
        pol = policy(breaker)
        async with GatewaySimulator() as primary, GatewaySimulator() as backup:
            await exhaust(primary, pol)
            before = len(primary.requests)
            session: AgentSession[Any] = AgentSession(
                llm=FallbackLLM(
                    [chat(primary.base_url), chat(backup.base_url)],
                    probe_backoff=tenacity.wait_none(),
                ),
                vad=None,
                turn_handling={"turn_detection": "manual"},
            )
            g = guard(session, pol)
            await start_text(session)
            for _ in range(2):
                await reply_or_close(session)
            await asyncio.sleep(0.1)  # the adapter's recovery probes, refused
            assert g.decision is None
            assert billed(primary, before) == []
            assert billed(backup) == ["llm", "llm"]

            primary.llm.default = Reply("Primary again.")
            end_cooldown(breaker)
            for _ in range(3):
                await reply_or_close(session)
                await asyncio.sleep(0.05)
            assert breaker.states == {}
            assert billed(primary, before) != []
            assert g.decision is None
            await session.aclose()

    async def test_stock_fallback_adapter_sends_nothing_either(self) -> None:
        """The gate sits on the model: livekit's own adapter is covered too."""
        breaker = FleetBreaker("test")
        pol = policy(breaker)
        async with GatewaySimulator() as primary, GatewaySimulator() as backup:
            await exhaust(primary, pol)
            before = len(primary.requests)
            session: AgentSession[Any] = AgentSession(
                llm=llm.FallbackAdapter([chat(primary.base_url), chat(backup.base_url)]),
                vad=None,
                turn_handling={"turn_detection": "manual"},
            )
            guard(session, pol)
            await start_text(session)
            await reply_or_close(session)
            await asyncio.sleep(0.1)  # livekit's recovery probe, refused
            assert billed(primary, before) == []
            assert billed(backup) == ["llm"]
            await session.aclose()
