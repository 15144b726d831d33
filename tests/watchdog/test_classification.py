"""A hung stream's read timeout is a timeout, whatever it cancelled inside.

httpcore's read timeout works by cancelling the read (anyio ``fail_after``), so the
``APITimeoutError`` livekit emits carries ``httpx.ReadTimeout -> TimeoutError ->
CancelledError`` down its chain; it used to be classified ``client_cancelled`` and never
counted, so a guarded session whose LLM hangs never closed (livekit's own counter being
off under the guard).
"""

from __future__ import annotations

import asyncio

from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectOptions,
    APITimeoutError,
    CloseReason,
    llm,
)
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import openai

from agent_guard import Category, GuardPolicy, Kind, Tolerance, classify, guard
from agent_guard.testing import CaptureAudioOutput, GatewaySimulator, Hang, raised
from tests.helpers import SECRET_KEY


def test_timeout_above_a_cancellation_is_a_timeout() -> None:
    """The chain of a hung stream's read timeout, built the way httpcore raises it."""
    error = raised(APITimeoutError(), cause=raised(TimeoutError(), cause=asyncio.CancelledError()))
    verdict = classify(error, kind=Kind.LLM)
    assert (verdict.category, verdict.counts) == (Category.TIMEOUT, True)


def test_cancellation_alone_is_still_a_cancellation() -> None:
    """A CancelledError with no timeout above it stays ``client_cancelled``."""
    error = raised(RuntimeError("x"), cause=asyncio.CancelledError())
    verdict = classify(error, kind=Kind.LLM)
    assert (verdict.category, verdict.counts) == (Category.CLIENT_CANCELLED, False)


async def test_hang_after_headers_counts_and_closes(sim: GatewaySimulator) -> None:
    """Real openai plugin, a 200 that never sends a token: each turn times out and counts."""
    sim.llm.default = Hang(after_headers=True)
    conn = APIConnectOptions(max_retry=0, timeout=0.3)
    session: AgentSession[object] = AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key=SECRET_KEY),
        vad=None,
        turn_handling={"turn_detection": "manual"},
        conn_options=SessionConnectOptions(llm_conn_options=conn),
    )
    # The watchdog off: this is the error path on its own.
    g = guard(
        session,
        GuardPolicy(stall_timeout=None, tolerances={"llm": Tolerance.allow(1)}, signal=None),
    )
    session.output.audio = CaptureAudioOutput(realtime=False)
    await session.start(Agent(instructions="Be brief."))

    for text in ("hi", "hello?"):
        handle = session.generate_reply(user_input=text)
        async with asyncio.timeout(5):
            await handle.wait_for_playout()

    async with asyncio.timeout(5):
        ev = await g.wait_closed()
    assert [r.status for r in sim.requests_for("llm")] == [200, 200]
    assert [(v.category, v.counts) for v in g.verdicts] == [(Category.TIMEOUT, True)] * 2
    assert ev.reason is CloseReason.ERROR
    assert isinstance(ev.error, llm.LLMError)
