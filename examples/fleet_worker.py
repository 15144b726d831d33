"""A livekit worker whose calls stop coming while its provider account is exhausted.

    AGENT_GUARD_FLEET_KEY=... REDIS_URL=redis://localhost:6379/0 \\
        python -m examples.fleet_worker start

Every worker of the deployment shares one Redis: the first session to meet an exhausted
account (credits gone, key revoked) opens the account's breaker for all of them; no
session sends that account another request until one probe, after the cool-down,
succeeds. Meanwhile ``fleet_load`` reports the worker as full and ``request_fnc``
rejects jobs, so LiveKit dispatch offers calls to a healthy deployment.
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentSession, JobContext, WorkerOptions, cli
from livekit.plugins import openai

from agent_guard import GuardPolicy, guard
from agent_guard.fleet import depends_on, fleet_load, request_fnc

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")


def models() -> tuple[openai.LLM, openai.TTS]:
    return openai.LLM(model="gpt-4o-mini"), openai.TTS(model="gpt-4o-mini-tts")


async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    chat, voice = models()
    session: AgentSession[None] = AgentSession(llm=chat, tts=voice)
    guard(session, GuardPolicy(fleet=REDIS_URL, fleet_cooldown=60.0))
    await session.start(agent=Agent(instructions="You are a helpful assistant."), room=ctx.room)


def main() -> None:
    # load_fnc and request_fnc run in the worker's main process, not in the job processes:
    # tell it which accounts its sessions use, and let it follow the fleet through Redis.
    depends_on(*models(), fleet=REDIS_URL)
    cli.run_app(
        WorkerOptions(entrypoint_fnc=entrypoint, load_fnc=fleet_load, request_fnc=request_fnc)
    )


if __name__ == "__main__":
    main()
