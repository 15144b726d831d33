"""What is not dead air: the watchdog must stay quiet."""

from __future__ import annotations

import asyncio

from livekit.agents import Agent, function_tool

from agent_guard.testing import GatewaySimulator, Reply, Speech, ToolCall
from tests.helpers import chat_texts
from tests.watchdog.helpers import STALL, guarded_session, heard_after, say_turn, wait_until


class _ToolAgent(Agent):
    """An agent with one slow tool."""

    def __init__(self, *, seconds: float, result: str | None) -> None:
        super().__init__(instructions="Use the lookup tool.")
        self._seconds = seconds
        self._result = result
        self.calls = 0

    @function_tool
    async def lookup(self) -> str | None:
        """Look the answer up."""
        self.calls += 1
        await asyncio.sleep(self._seconds)
        return self._result


async def test_slow_but_healthy_first_token(sim: GatewaySimulator) -> None:
    """A first token after 2.5 s, with the default 4 s: no stall, the reply is heard."""
    sim.llm.default = Reply("Sorry for the wait.", first_token_delay=2.5)
    session, g, out = await guarded_session(sim, stall_timeout=4.0)

    at = say_turn(session, "hi")
    await wait_until(lambda: "Sorry for the wait." in chat_texts(session))

    assert g.verdicts == ()
    assert (waited := heard_after(out, at)) is not None and 2.5 < waited < 4.0
    assert len(sim.requests_for("llm")) == 1
    await session.aclose()


async def test_long_tool_call(sim: GatewaySimulator) -> None:
    """A tool running for 3 stall timeouts is the agent waiting on a tool, not a provider."""
    sim.llm.script(ToolCall("lookup"), Reply("The answer is 42."))
    agent = _ToolAgent(seconds=3 * STALL, result="42")
    session, g, _out = await guarded_session(sim, agent=agent)

    say_turn(session, "what is the answer?")
    await wait_until(lambda: "The answer is 42." in chat_texts(session))

    assert agent.calls == 1
    assert g.verdicts == ()
    assert len(sim.requests_for("llm")) == 2  # the tool call, then the tool's reply
    await session.aclose()


async def test_tool_only_turn_is_silent_by_design(sim: GatewaySimulator) -> None:
    """A tool that needs no reply ends the turn in silence: not a stall."""
    sim.llm.script(ToolCall("lookup"))
    agent = _ToolAgent(seconds=0.1, result=None)
    session, g, out = await guarded_session(sim, agent=agent)

    say_turn(session, "log this")
    await wait_until(lambda: agent.calls == 1)
    await asyncio.sleep(2 * STALL)

    assert g.verdicts == ()
    assert out.frames == []
    assert len(sim.requests_for("llm")) == 1
    await session.aclose()


async def test_interrupted_reply(sim: GatewaySimulator) -> None:
    """A reply interrupted before its first token is not owed any more."""
    sim.llm.default = Reply("Too late.", first_token_delay=3 * STALL)
    session, g, out = await guarded_session(sim)

    say_turn(session, "hi")
    await asyncio.sleep(STALL / 2)
    await session.interrupt()
    await asyncio.sleep(1.5 * STALL)

    assert g.verdicts == ()
    assert out.frames == []
    assert len(sim.requests_for("llm")) == 1
    await session.aclose()


async def test_reply_queued_behind_speech(sim: GatewaySimulator) -> None:
    """A reply waiting behind speech that plays for 2 stall timeouts is not stalled."""
    sim.llm.default = Reply("Now my answer.")
    sim.tts.script(Speech(seconds=2 * STALL), Speech())
    session, g, _out = await guarded_session(sim)

    session.say("Let me tell you something first.")
    say_turn(session, "hi")
    await wait_until(lambda: "Now my answer." in chat_texts(session))

    assert g.verdicts == ()
    assert len(sim.requests_for("llm")) == 1
    await session.aclose()
