"""Testing the guarded agent of ``agent.py`` the livekit way (shown in the README).

Run: ``pytest examples/test_agent.py`` (pytest-asyncio, ``asyncio_mode = "auto"``).
"""

from __future__ import annotations

from livekit.agents import AgentSession, CloseReason, RunResult
from livekit.plugins import openai

from agent_guard import Category, guard
from agent_guard.testing import (
    CaptureTextOutput,
    GatewaySimulator,
    QuotaExceeded,
    Reply,
    guarded_close,
)
from examples.agent import POLICY, Assistant


async def test_out_of_credits_says_goodbye_and_closes() -> None:
    async with GatewaySimulator() as sim:  # an OpenAI-compatible gateway on 127.0.0.1
        sim.llm.script(Reply("Hello! Table for how many?"))
        sim.llm.default = QuotaExceeded()  # then the LiveKit Inference credits run out
        session: AgentSession[None] = AgentSession(
            llm=openai.LLM(base_url=sim.base_url, api_key="test")
        )
        guard(session, POLICY)
        transcript = CaptureTextOutput()
        session.output.transcription = transcript
        await session.start(Assistant())

        result: RunResult[None] = await session.run(user_input="Hi!")
        result.expect.next_event().is_message(role="assistant")

        await session.run(user_input="A table for two tonight, please.")
        closed = await guarded_close(session)
        assert closed.said == POLICY.messages[Category.QUOTA_EXHAUSTED]
        assert closed.reason is CloseReason.ERROR and transcript.last == closed.said
