"""Shared fixtures: a real AgentSession, the real openai plugin, the bundled simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from livekit.agents import NOT_GIVEN, Agent, AgentSession, APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import openai

from agent_guard.fleet import _registry as fleet_registry
from agent_guard.testing import CaptureAudioOutput, GatewaySimulator

#: A key-shaped secret: tests assert it never leaks anywhere.
SECRET_KEY = "sk-proj-TESTSECRET0123456789abcdefABCDEF"


@pytest.fixture(autouse=True)
def _fresh_fleet() -> Iterator[None]:
    """Every test starts with no fleet breaker: the default ``"memory"`` one is per process."""
    yield
    fleet_registry.reset()


@pytest.fixture
async def sim() -> AsyncIterator[GatewaySimulator]:
    async with GatewaySimulator() as s:
        yield s


def make_session(
    sim: GatewaySimulator,
    *,
    tts: bool = True,
    retry_interval: float = 2.0,
    max_retry: int = 3,
    stt: Any = None,
) -> AgentSession[Any]:
    """A room-less, text-driven session with the real openai LLM and TTS over HTTP."""
    conn = APIConnectOptions(max_retry=max_retry, retry_interval=retry_interval, timeout=5.0)
    return AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key=SECRET_KEY),
        tts=(
            openai.TTS(model="gpt-4o-mini-tts", voice="alloy", base_url=sim.base_url,
                       api_key=SECRET_KEY)
            if tts else NOT_GIVEN
        ),
        stt=stt,
        vad=None,
        turn_handling={"turn_detection": "manual"},
        conn_options=SessionConnectOptions(llm_conn_options=conn, tts_conn_options=conn),
    )  # fmt: skip


async def start(session: AgentSession[Any], *, realtime: bool = False) -> CaptureAudioOutput:
    """Attach a capturing audio output and start ``session`` with a brief agent."""
    out = CaptureAudioOutput(realtime=realtime)
    session.output.audio = out
    await session.start(Agent(instructions="Be brief."))
    return out
