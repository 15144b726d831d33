"""Worker-wide default: install() guards every session started in the process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import agent_guard
from agent_guard import GuardPolicy, guard
from agent_guard._guard import guarded
from agent_guard.testing import GatewaySimulator
from tests.helpers import make_session, start


@pytest.fixture(autouse=True)
def _clean_install() -> Iterator[None]:
    yield
    agent_guard.uninstall()


class TestInstall:
    """install()/uninstall() wrap AgentSession.start."""

    async def test_sessions_started_after_install_are_guarded(self, sim: GatewaySimulator) -> None:
        """No per-session code: the session gets the worker's policy at start()."""
        policy = GuardPolicy(error_message="Worker-wide goodbye.")
        agent_guard.install(policy)
        session = make_session(sim)
        assert guarded(session) is None
        await start(session)
        g = guarded(session)
        assert g is not None and g.policy is policy
        await session.aclose()

    async def test_explicit_guard_wins(self, sim: GatewaySimulator) -> None:
        """A session guarded explicitly keeps its own policy."""
        agent_guard.install(GuardPolicy(error_message="worker"))
        session = make_session(sim)
        mine = GuardPolicy(error_message="mine")
        g = guard(session, mine)
        await start(session)
        assert guarded(session) is g and g.policy is mine
        await session.aclose()

    async def test_uninstall_restores_stock_start(self, sim: GatewaySimulator) -> None:
        """After uninstall() new sessions are left alone."""
        agent_guard.install()
        agent_guard.uninstall()
        session = make_session(sim)
        await start(session)
        assert guarded(session) is None
        await session.aclose()

    async def test_uninstall_keeps_a_later_patch(self, sim: GatewaySimulator) -> None:
        """A start() patch installed after ours survives uninstall(); ours goes inert."""
        from livekit.agents import AgentSession

        agent_guard.install()
        ours: Any = AgentSession.start
        calls: list[object] = []

        async def theirs(self: AgentSession[Any], *args: Any, **kwargs: Any) -> Any:
            calls.append(self)
            return await ours(self, *args, **kwargs)

        AgentSession.start = theirs  # type: ignore[method-assign]
        try:
            agent_guard.uninstall()
            assert AgentSession.start is theirs
            session = make_session(sim)
            await start(session)
            assert calls == [session]
            assert guarded(session) is None
            await session.aclose()
        finally:
            AgentSession.start = ours  # type: ignore[method-assign]
            agent_guard.install()
            agent_guard.uninstall()
