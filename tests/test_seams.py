"""The private livekit seams the guard relies on: these fail first if upstream changes."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from livekit.agents import AgentSession, CloseEvent, CloseReason, llm
from livekit.agents._exceptions import APIStatusError

from agent_guard import _seams
from agent_guard.testing import GatewaySimulator
from tests.conftest import make_session, start


class TestSeams:
    """agent_guard._seams against the installed livekit-agents."""

    def test_private_close_still_has_the_expected_shape(self) -> None:
        """_close_soon(reason=, error=, drain=) exists: otherwise closes lose reason=ERROR."""
        assert _seams.SEAMS_OK
        params = inspect.signature(AgentSession._close_soon).parameters
        assert {"reason", "error", "drain"} <= params.keys()

    async def test_close_with_error_attaches_reason_and_error(self, sim: GatewaySimulator) -> None:
        """The CloseEvent carries CloseReason.ERROR and the very error given."""
        session = make_session(sim)
        closed: asyncio.Future[CloseEvent] = asyncio.get_running_loop().create_future()
        session.on("close", closed.set_result)
        await start(session)
        assert _seams.has_started(session)
        err = llm.LLMError(
            timestamp=0.0,
            label="test",
            error=APIStatusError("x", status_code=429),
            recoverable=False,
        )
        _seams.close_with_error(session, err)
        assert _seams.is_closing(session)
        _seams.close_with_error(session, err)  # a second call is a no-op
        async with asyncio.timeout(5):
            ev = await closed
        assert ev.reason is CloseReason.ERROR
        assert ev.error is err

    async def test_has_started_is_false_before_start(self, sim: GatewaySimulator) -> None:
        """The flag guard() uses to refuse late attachment."""
        session: AgentSession[Any] = make_session(sim)
        assert not _seams.has_started(session)
        assert not _seams.is_closing(session)
