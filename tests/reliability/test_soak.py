"""Soak: thousands of error events over many sequential guarded sessions, memory stays flat.

A worker runs session after session in one process. Whatever the guard keeps per
session (verdict history, failure timestamps, background tasks, the registry of guarded
sessions) must go away with the session, and its process-wide caches must stay
bounded. 50 sessions x 100 error events each, half of them closed by the guard on a
terminal error (farewell played), half by the user after a transient storm.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai as openai_sdk
import pytest
import structlog
from livekit import rtc
from livekit.agents import Agent, AgentSession, CloseReason, llm
from livekit.agents._exceptions import APIError
from livekit.plugins import openai

from agent_guard import Guard, GuardPolicy, guard
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
)
from tests.helpers import client_cancel, rate_limit

SESSIONS = 50
EVENTS = 100
WARMUP = 10
#: Allowed growth of traced memory from the end of warm-up to the end, for 40 sessions.
#: Measured: ~0 KB once sessions are freed, ~270 KB *per session* when they leak (the
#: session, its history and error events, the guard and its verdicts). 128 KB catches a
#: leak of 3 KB per session.
TOLERANCE = 128 * 1024

#: A short farewell, so the guard's closes take milliseconds with a non-realtime output.
FAREWELL = (rtc.AudioFrame(b"\x00\x00" * 480, 24000, 1, 480),) * 5


def credits() -> APIError:
    return APIError(
        "inference quota exceeded",
        body={
            "type": "inference_quota_exceeded",
            "category": "MaxGatewayCredits",
            "quota_type": "llm",
            "error": "quota exceeded, category: MaxGatewayCredits",
        },
        retryable=False,
    )


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    # 5,000 verdicts logged at INFO through structlog's console renderer would make this
    # test about log formatting speed; a worker that keeps INFO gets the same guard.
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**previous)


@pytest.fixture
async def client(sim: GatewaySimulator) -> AsyncIterator[openai_sdk.AsyncClient]:
    # One SDK client for every session's LLM: each AsyncClient builds an SSL context
    # (~25 ms), and a worker can share one; it is not what this test is about.
    c = openai_sdk.AsyncClient(api_key="sk-soak", base_url=sim.base_url, max_retries=0)
    yield c
    await c.close()


async def one_session(
    client: openai_sdk.AsyncClient, i: int, guards: weakref.WeakSet[Guard]
) -> AgentSession[Any]:
    session: AgentSession[Any] = AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", client=client),
        vad=None,
        turn_handling={"turn_detection": "manual"},
    )
    g = guard(session, GuardPolicy(farewell_audio=FAREWELL, farewell_timeout=2.0))
    guards.add(g)
    session.output.audio = CaptureAudioOutput(realtime=False)
    await session.start(Agent(instructions="Be brief."))
    model = session.llm
    assert isinstance(model, llm.LLM)
    terminal = i % 2 == 0
    for n in range(EVENTS):
        # Through the real path, as retrying LLM streams emit: rate-limited attempts,
        # turns that ended in a client cancel (never counted, so the storm alone never
        # closes), and for half the sessions a terminal error at the end.
        error: Exception
        if terminal and n == EVENTS - 1:
            error, recoverable = credits(), True
        elif n % 4 == 3:
            error, recoverable = client_cancel(), False
        else:
            error, recoverable = rate_limit(), True
        model.emit(
            "error",
            llm.LLMError(
                timestamp=time.time(),
                label="soak",
                error=error,
                recoverable=recoverable,
            ),
        )
        if n % 25 == 0:
            await asyncio.sleep(0)
    if not terminal:
        await session.aclose()
    async with asyncio.timeout(5):
        ev = await g.wait_closed()
    assert ev.reason is (CloseReason.ERROR if terminal else CloseReason.USER_INITIATED)
    return session


async def test_memory_stays_flat(
    sim: GatewaySimulator, client: openai_sdk.AsyncClient, quiet_logs: None
) -> None:
    """After warm-up, 40 more sessions (4,000 events) leave traced memory flat.

    The sessions stay in the guard's registry until they are freed: it holds them weakly,
    as the guard holds its session. Every guard freed with the registry untouched shows
    that no task, cache or listener of the guard retains anything across sessions (a
    second soak that dropped the registry entries by hand could only free more).
    """
    guards: weakref.WeakSet[Guard] = weakref.WeakSet()
    samples: list[int] = []
    tracemalloc.start()
    try:
        for i in range(SESSIONS):
            session = await one_session(client, i, guards)
            del session
            # The simulator logs each request (the LLM's connection prewarm): harness
            # memory, not the guard's.
            sim.requests.clear()
            await asyncio.sleep(0)
            # A full collection is ~0.1 s under tracemalloc: sample at a few points only.
            if i in (WARMUP - 1, (WARMUP + SESSIONS) // 2, SESSIONS - 1):
                gc.collect()
                samples.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # Sharper than the byte count: every guard (and with it its session) was freed.
    gc.collect()
    assert len(guards) == 0, f"{len(guards)} of {SESSIONS} guards (and sessions) still alive"
    growth = samples[-1] - samples[0]
    assert growth < TOLERANCE, f"grew {growth / 1024:.0f} KB over {SESSIONS - WARMUP} sessions"
    pending = [
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("agent_guard.") and not t.done()
    ]
    assert pending == []
