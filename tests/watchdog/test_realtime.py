"""Realtime stalls: the model creates the response and never sends audio."""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import Agent, AgentSession, CloseReason, llm
from livekit.plugins.openai import realtime

from agent_guard import Category, GuardPolicy, Kind, Reason, StallError, guard
from agent_guard.testing import CaptureAudioOutput, GatewaySimulator, RealtimeHang, RealtimeReply
from tests.helpers import SECRET_KEY
from tests.watchdog.helpers import (
    BOUND,
    SHORT_NOTICE,
    STALL,
    heard_after,
    heard_since,
    say_turn,
    wait_until,
)


async def realtime_session(
    sim: GatewaySimulator, **policy: Any
) -> tuple[AgentSession[Any], Any, CaptureAudioOutput]:
    """A started, guarded session on the real openai realtime client over a websocket."""
    session: AgentSession[Any] = AgentSession(
        llm=realtime.RealtimeModel(base_url=sim.base_url, api_key=SECRET_KEY),
        vad=None,
        turn_handling={"turn_detection": "manual"},
    )
    g = guard(session, GuardPolicy(**{"stall_timeout": STALL, **policy}))
    out = CaptureAudioOutput(realtime=True)
    session.output.audio = out
    await session.start(Agent(instructions="Be brief."))
    return session, g, out


async def test_healthy_reply_is_not_a_stall(sim: GatewaySimulator) -> None:
    """The simulator's realtime model speaks: heard, no verdict."""
    sim.realtime.default = RealtimeReply("Hi there.", seconds=0.4)
    session, g, out = await realtime_session(sim)

    at = say_turn(session, "hi")
    await wait_until(heard_since(out, at))

    assert g.verdicts == ()
    assert len(sim.requests_for("realtime")) == 1
    await session.aclose()


async def test_silent_model_notice_then_retry(sim: GatewaySimulator) -> None:
    """No audio from the model: a ``realtime`` stall, the recorded notice, then the retry."""
    sim.realtime.script(RealtimeHang(), RealtimeReply("Here I am.", seconds=0.4))
    session, g, out = await realtime_session(sim)

    at = say_turn(session, "hi")
    await wait_until(lambda: len(out.segments) >= 2 and out.segments[-1].finished_at is not None)

    assert (waited := heard_after(out, at)) is not None and waited < BOUND
    assert [(v.kind, v.category) for v in g.verdicts] == [(Kind.REALTIME, Category.STALLED)]
    assert len(sim.requests_for("realtime")) == 2
    assert g.decision is None
    await session.aclose()


async def test_silent_model_closes_on_the_third_turn(sim: GatewaySimulator) -> None:
    """A realtime model that never speaks: the tolerance, not the first stall, closes."""
    sim.realtime.default = RealtimeHang()
    session, g, out = await realtime_session(sim, farewell_timeout=1.0, stall_message=SHORT_NOTICE)

    for turn in range(3):
        at = say_turn(session, f"turn {turn}")
        await wait_until(heard_since(out, at))
        if g.decision is None:
            await wait_until(lambda: session.current_speech is None, within=5)

    async with asyncio.timeout(5):
        ev = await g.wait_closed()
    assert ev.reason is CloseReason.ERROR
    assert isinstance(ev.error, llm.RealtimeModelError)
    assert isinstance(ev.error.error, StallError)
    assert g.decision is not None and g.decision.reason is Reason.TOLERANCE_EXCEEDED
