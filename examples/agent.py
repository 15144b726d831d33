"""A LiveKit voice agent that fails audibly: the file to copy when you start.

Every session of this worker is guarded (``install()`` in ``prewarm``): when a provider
fails for good (credits gone, key revoked) the caller hears why, in a sentence chosen
per category, the web client gets the reason on the ``agent_guard.error`` attribute and
topic, and the call ends, instead of the agent going silent. The LLM falls back from one
model to another without wasting requests on one that is out of credits.

Run it like any livekit worker::

    python examples/agent.py console          # talk to it in the terminal (--text: type)
    python examples/agent.py dev              # join rooms of LIVEKIT_URL, hot reload
    python examples/agent.py start            # production: JSON logs, --log-level

It uses LiveKit Inference (``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET``); nothing is
contacted before the first turn. agent-guard's log lines (``agent_guard.closing``, ...)
come out with livekit's own, at its level and in its format.
"""

from __future__ import annotations

from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    CloseEvent,
    JobContext,
    JobProcess,
    cli,
    inference,
)

import agent_guard
from agent_guard import Category, Farewell, FrontendSignal, GuardPolicy, Kind, Verdict
from agent_guard.fallback import FallbackLLM

#: Pre-recorded: heard even when the TTS is what failed. Replace it with your own
#: recording and its words (any format PyAV reads; WAV is read exactly).
RECORDED = Farewell(text=Farewell.DEFAULT.text, audio=Farewell.DEFAULT.audio)


def farewell(verdict: Verdict) -> str | Farewell | None:
    """For what ``messages`` does not cover: the recording when the close is final."""
    if verdict.terminal:
        return RECORDED
    return "Sorry, something went wrong on our side. Please call again. Goodbye."


POLICY = GuardPolicy(
    # What the caller hears, per category or kind of failure (a category wins).
    messages={
        Category.QUOTA_EXHAUSTED: "We have used up today's minutes. Please call again tomorrow.",
        Category.RATE_LIMITED: "We are very busy right now. Please call again in a few minutes.",
        Kind.STT: "Sorry, I can no longer hear you. Please call again. Goodbye.",
    },
    error_message=farewell,
    # Synthesise the messages while TTS is healthy: heard in the agent's own voice even
    # after the TTS provider has failed.
    presynthesize=True,
    farewell_timeout=8.0,
    # The web client learns why the agent left (and, with on_tolerated, about failures
    # the session survived): read the "agent_guard.error" attribute or text stream.
    signal=FrontendSignal(on_tolerated=True),
)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions=(
                "You are the friendly host of a small restaurant, taking table bookings by "
                "phone. Keep answers short and spoken: no lists, no markdown."
            )
        )


def prewarm(proc: JobProcess) -> None:
    # Once per worker process: every AgentSession started in it is guarded with POLICY.
    agent_guard.install(POLICY)
    proc.userdata["vad"] = inference.VAD()


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session: AgentSession[None] = AgentSession(
        stt=inference.STT("deepgram/nova-3"),
        # A primary and a backup: agent-guard's FallbackLLM never sends another request
        # to a model whose account is out of credits, and names the real cause when
        # both fail.
        llm=FallbackLLM(
            [inference.LLM("openai/gpt-4.1-mini"), inference.LLM("google/gemini-2.5-flash")]
        ),
        tts=inference.TTS("cartesia/sonic-2"),
        vad=ctx.proc.userdata["vad"],
    )

    @session.on("close")
    def _on_close(ev: CloseEvent) -> None:
        # A closed session does not end the job: leave the room once the call is over
        # (after the guard's farewell, when the guard closed it).
        ctx.shutdown(reason=ev.reason.value)

    await session.start(agent=Assistant(), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(server)
