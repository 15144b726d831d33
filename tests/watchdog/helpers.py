"""What the watchdog tests share: a guarded session, and how to wait on what the caller hears."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession

from agent_guard import Farewell, Guard, GuardPolicy, guard
from agent_guard.testing import CaptureAudioOutput, GatewaySimulator
from tests.helpers import make_session

#: Seconds of dead air the tests allow: small, so the suite stays fast.
STALL = 0.8
#: The contract: within stall_timeout + 0.5 s of the turn, the caller hears something.
BOUND = STALL + 0.5
#: A 0.2 s recorded notice, for tests that stall again and again (the packaged one is 1.5 s).
SHORT_NOTICE = Farewell(
    "One moment.", audio=(rtc.AudioFrame(b"\x01\x00" * 480, 24000, 1, 480),) * 10
)


async def guarded_session(
    sim: GatewaySimulator,
    *,
    agent: Agent | None = None,
    tts: bool = True,
    **policy: Any,
) -> tuple[AgentSession[Any], Guard, CaptureAudioOutput]:
    """A started, guarded session with the real openai LLM and TTS over HTTP."""
    session = make_session(sim, tts=tts)
    # No presynthesis by default: the tests script TTS answers request by request.
    g = guard(session, GuardPolicy(**{"stall_timeout": STALL, "presynthesize": False, **policy}))
    out = CaptureAudioOutput(realtime=True)
    session.output.audio = out
    await session.start(agent or Agent(instructions="Be brief."))
    return session, g, out


async def wait_until(condition: Callable[[], object], *, within: float = 10.0) -> None:
    """Poll ``condition`` until it holds (the sink and the guard expose no event for it)."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


def say_turn(session: AgentSession[Any], text: str) -> float:
    """Commit a user turn (as a committed transcript would) and return when it was."""
    at = time.monotonic()
    session.generate_reply(user_input=text)
    return at


def heard_after(out: CaptureAudioOutput, at: float) -> float | None:
    """Seconds from ``at`` to the first agent audio frame after it, if any."""
    frames = [f.at for f in out.frames if f.at > at]
    return frames[0] - at if frames else None


def heard_since(out: CaptureAudioOutput, at: float) -> Callable[[], bool]:
    """A condition for :func:`wait_until`: agent audio was heard after ``at``."""
    return lambda: heard_after(out, at) is not None
