"""What tests share besides fixtures: sessions with the real openai plugin, turns, errors.

Kept out of ``conftest.py``, which pytest's xdist controller imports too before it starts
a worker: these imports (livekit, the openai plugin) cost it ~5 s it waits for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from livekit import rtc
from livekit.agents import (
    NOT_GIVEN,
    Agent,
    AgentSession,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    llm,
)
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import openai

from agent_guard import Guard
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    openai_status_error,
    openai_stream_error,
)

#: A key-shaped secret: tests assert it never leaks anywhere.
SECRET_KEY = "sk-proj-TESTSECRET0123456789abcdefABCDEF"


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
            openai.TTS(
                model="gpt-4o-mini-tts", voice="alloy", base_url=sim.base_url, api_key=SECRET_KEY
            )
            if tts
            else NOT_GIVEN
        ),
        stt=stt,
        vad=None,
        turn_handling={"turn_detection": "manual"},
        conn_options=SessionConnectOptions(llm_conn_options=conn, tts_conn_options=conn),
    )


async def start(session: AgentSession[Any], *, realtime: bool = False) -> CaptureAudioOutput:
    """Attach a capturing audio output and start ``session`` with a brief agent."""
    out = CaptureAudioOutput(realtime=realtime)
    session.output.audio = out
    await session.start(Agent(instructions="Be brief."))
    return out


TURN_TIMEOUT = 15.0


async def turn(session: AgentSession[Any], text: str) -> None:
    """One user turn; a failing turn may raise, the test looks at effects instead."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(TURN_TIMEOUT):
            await session.run(user_input=text)


async def never_starts() -> AsyncIterator[rtc.AudioFrame]:
    """A farewell recording (a factory's frames) whose first frame never comes."""
    await asyncio.Event().wait()
    yield rtc.AudioFrame(bytes(640), 16000, 1, 320)


def chat_texts(session: AgentSession[Any]) -> list[str]:
    return [m.text_content or "" for m in session.history.items if isinstance(m, llm.ChatMessage)]


def spoken(sim: GatewaySimulator, *, after: float = 0.0) -> str:
    """What TTS was asked to say after ``after`` (livekit sends one request per sentence)."""
    return " ".join(
        str((r.json or {}).get("input")) for r in sim.requests_for("tts") if r.at > after
    )


def heard(g: Guard) -> str | None:
    """The words of the farewell the caller heard (``None``: nothing was played).

    Whether they came from TTS, the pre-synthesis cache or a recording:
    ``g.farewell.source`` says which.
    """
    return None if g.farewell is None else g.farewell.text


def gateway_quota_error(quota_type: str = "llm") -> APIError:
    """A gateway credits error as the realtime/STT websocket paths deliver it (body kept)."""
    return APIError(
        "inference quota exceeded",
        body={
            "type": "inference_quota_exceeded",
            "category": "MaxGatewayCredits",
            "quota_type": quota_type,
            "error": "quota exceeded, category: MaxGatewayCredits",
        },
        retryable=False,
    )


def rate_limit() -> APIStatusError:
    """The gateway's transient RPM 429, as livekit's openai plugin emits it."""
    return openai_status_error(
        429,
        json={
            "type": "inference_quota_exceeded",
            "category": "MaxConcurrentGatewayLLMRpm",
            "quota_type": "llm",
            "error": "request/min rate limit exceeded",
        },
    )


def client_cancel() -> APIConnectionError:
    """A mid-stream 499 as livekit emits it: the SSE error on ``__cause__``."""
    return openai_stream_error({"message": "Client closed request", "code": 499}, retryable=True)
