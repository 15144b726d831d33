"""The livekit behaviour the watchdog relies on that no public contract states."""

from __future__ import annotations

import inspect
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.metrics import LLMMetrics
from livekit.agents.voice import SpeechHandle

from agent_guard import _seams
from agent_guard.testing import GatewaySimulator, Reply
from tests.helpers import make_session, start
from tests.watchdog.helpers import guarded_session, wait_until


async def test_llm_metrics_name_their_speech(sim: GatewaySimulator) -> None:
    """``metrics_collected`` still carries LLMMetrics with the speech id (the TTS stage).

    The watchdog tells ``tts`` from ``llm`` stalls by the LLM stream of a speech having
    ended with output; if livekit stops emitting this (it is deprecated), every stall
    would be reported as ``llm``.
    """
    sim.llm.default = Reply("Hello.")
    session, _g, _out = await guarded_session(sim)
    seen: list[Any] = []
    # Registered as the watchdog does: the emitter's own on(), with no deprecation warning.
    super(AgentSession, session).on("metrics_collected", lambda ev: seen.append(ev.metrics))

    handle = session.generate_reply(user_input="hi")
    await handle.wait_for_playout()
    await wait_until(lambda: any(isinstance(m, LLMMetrics) for m in seen))

    metrics = [m for m in seen if isinstance(m, LLMMetrics)]
    assert [m.speech_id for m in metrics] == [handle.id]
    assert metrics[0].ttft >= 0
    await session.aclose()


async def test_reply_heard_means_speaking_while_current(sim: GatewaySimulator) -> None:
    """The agent turns ``speaking`` on the reply's first frame, while it is current speech."""
    sim.llm.default = Reply("Hello.")
    session, _g, out = await guarded_session(sim)
    current: list[object] = []
    session.on(
        "agent_state_changed",
        lambda ev: current.append(session.current_speech) if ev.new_state == "speaking" else None,
    )

    handle = session.generate_reply(user_input="hi")
    await handle.wait_for_playout()

    assert current == [handle]
    assert out.frames
    await session.aclose()


def test_generate_reply_is_keyword_only() -> None:
    """``_seams.record_replies`` replays the keyword arguments of ``generate_reply``: a
    positional parameter upstream would be one it cannot replay."""
    params = list(inspect.signature(AgentSession.generate_reply).parameters.values())[1:]
    assert params and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert {"user_input", "instructions", "tool_choice", "chat_ctx"} <= {p.name for p in params}


async def test_record_replies_keeps_the_call_intact(sim: GatewaySimulator) -> None:
    """The shadowing method returns livekit's handle and passes every argument on."""
    session = make_session(sim)
    seen: list[tuple[object, dict[str, object]]] = []
    _seams.record_replies(session, lambda h, kw: seen.append((h, kw)))
    await start(session)
    handle = session.generate_reply(user_input="hi", instructions="Be kind.")
    assert isinstance(handle, SpeechHandle)
    assert seen == [(handle, {"user_input": "hi", "instructions": "Be kind."})]
    await handle
    await session.aclose()
