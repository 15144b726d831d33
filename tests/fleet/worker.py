"""A worker process for the cross-process tests: guarded sessions on demand.

:func:`serve` runs in a process of its own (``tests/fleet/test_redis.py`` forks each from
a ``multiprocessing`` fork server that imported this module once: the imports are most of
a worker's start) and answers each command received on its end of a pipe:

* ``{"cmd": "session", "base_url", "key", "cooldown"}``: one guarded session (the real
  openai LLM and TTS over HTTP) asked for one reply; how it ended;
* ``{"cmd": "state"}``: this process's breaker (open accounts, store connection) and how
  often each fleet event was logged;
* ``{"cmd": "quit"}``, or the pipe closed.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Mapping, MutableMapping
from multiprocessing.connection import Connection
from typing import Any

import structlog
from livekit.agents import Agent, AgentSession, APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import openai

from agent_guard import GuardPolicy, guard
from agent_guard._audio import preload
from agent_guard._policy import DEFAULT_FAREWELL_AUDIO
from agent_guard.fleet import FleetOpenError, breaker_for
from agent_guard.fleet._account import FLEET_KEY_ENV
from agent_guard.testing import CaptureAudioOutput

EVENTS: collections.Counter[str] = collections.Counter()


def _count(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    EVENTS[str(event.get("event"))] += 1
    raise structlog.DropEvent


async def session(url: str, base_url: str, key: str, cooldown: float) -> dict[str, Any]:
    conn = APIConnectOptions(max_retry=0, timeout=5.0)
    s: AgentSession[Any] = AgentSession(
        llm=openai.LLM(model="gpt-4o-mini", base_url=base_url, api_key=key),
        tts=openai.TTS(model="gpt-4o-mini-tts", voice="alloy", base_url=base_url, api_key=key),
        vad=None,
        turn_handling={"turn_detection": "manual"},
        conn_options=SessionConnectOptions(llm_conn_options=conn, tts_conn_options=conn),
    )
    # A short farewell: the simulator speaks at the pace of real speech.
    g = guard(s, GuardPolicy(fleet=url, fleet_cooldown=cooldown, error_message="Bye."))
    # Played out as soon as captured: the tests measure the first frame, never the playout,
    # and a refusal's farewell is the packaged recording (4.7 s in real time).
    out = CaptureAudioOutput(realtime=False)
    s.output.audio = out
    await s.start(Agent(instructions="Be brief."))
    asked = time.monotonic()
    handle = s.generate_reply(user_input="hello")
    await asyncio.wait_for(handle.wait_for_playout(), 5)
    if g.decision is None:
        await s.aclose()  # served: end it as a caller hanging up would
    ev = await asyncio.wait_for(g.wait_closed(), 5)
    error = ev.error.error if ev.error is not None else None
    return {
        "closed": ev.reason.value,
        "decided": g.decision is not None,
        "refused": isinstance(error, FleetOpenError),
        "first_frame": out.frames[0].at - asked if out.frames else None,
        "source": g.farewell.source if g.farewell is not None else None,
    }


def state(url: str) -> dict[str, Any]:
    breaker = breaker_for(url)
    assert breaker is not None
    store = breaker._store
    return {
        "open": {k: v.until for k, v in breaker.states.items()},
        "connected": bool(store is not None and store.connected),
        "events": dict(EVENTS),
    }


async def main(url: str, conn: Connection) -> None:
    structlog.configure(processors=[_count])
    breaker = breaker_for(url)
    assert breaker is not None
    breaker.start()
    # As a worker's prewarm would (GuardPolicy(farewell_audio=...) is preloaded at session
    # start): the first refused session must not pay for decoding the recording.
    await preload(DEFAULT_FAREWELL_AUDIO)
    conn.send({"ready": True})
    while True:
        try:
            cmd = await asyncio.to_thread(conn.recv)
        except EOFError:  # the test's end was closed
            break
        if cmd["cmd"] == "quit":
            break
        try:
            if cmd["cmd"] == "session":
                answer = await session(url, cmd["base_url"], cmd["key"], cmd["cooldown"])
            else:
                answer = state(url)
        except Exception as e:
            answer = {"error": f"{type(e).__name__}: {e}"}
        conn.send(answer)


def serve(url: str, conn: Connection, fleet_key: str) -> None:
    """A worker's process: the fleet's shared key, livekit's stray log lines dropped."""
    os.environ[FLEET_KEY_ENV] = fleet_key
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    asyncio.run(main(url, conn))
