"""Error hooks: see each Verdict first, may override it, can never break the session."""

from __future__ import annotations

import asyncio

from livekit.agents import CloseReason
from structlog.testing import capture_logs

from agent_guard import Category, GuardPolicy, Reason, Verdict, guard
from agent_guard.instrumentation import VerdictCounter, log_verdict
from agent_guard.testing import GatewaySimulator, QuotaExceeded, RateLimited, Reply
from tests.helpers import make_session, start, turn


class TestOverride:
    """A hook's returned Verdict is what the guard decides on."""

    async def test_hook_can_make_a_category_terminal(self, sim: GatewaySimulator) -> None:
        """Rate limits made terminal by a hook close in the first failing turn."""
        sim.llm.default = RateLimited()

        def strict(v: Verdict) -> Verdict | None:
            return v.replace(terminal=True) if v.category is Category.RATE_LIMITED else None

        session = make_session(sim)
        g = guard(session, GuardPolicy(hooks=(strict,)))
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            ev = await g.wait_closed()
        assert ev.reason is CloseReason.ERROR
        assert len(sim.requests_for("llm")) == 1
        assert g.decision is not None and g.decision.reason is Reason.TERMINAL

    async def test_async_hook_can_suppress_a_close(self, sim: GatewaySimulator) -> None:
        """An async hook turning credits exhaustion into a non-counting verdict keeps it open."""
        sim.llm.default = QuotaExceeded()
        seen: list[Verdict] = []

        async def lenient(v: Verdict) -> Verdict:
            await asyncio.sleep(0.01)
            seen.append(v)
            return v.replace(terminal=False, counts=False)

        session = make_session(sim, retry_interval=0.01)
        # No fleet breaker: it judges the account by the provider's error, not by hooks,
        # and would refuse livekit's 3 retries this test counts on.
        g = guard(session, GuardPolicy(fleet=None))
        g.add_hook(lenient)
        await start(session)
        await turn(session, "hi")
        await asyncio.sleep(0.1)
        assert g.close_event is None
        assert len(seen) == 4 and all(v.category is Category.QUOTA_EXHAUSTED for v in seen)
        assert [v.terminal for v in g.verdicts] == [False] * 4  # the history holds the result
        await session.aclose()

    async def test_hooks_chain_in_order(self, sim: GatewaySimulator) -> None:
        """Each hook sees the previous hook's result, sync and async mixed."""
        sim.llm.default = QuotaExceeded()
        order: list[str] = []

        async def first(v: Verdict) -> Verdict:
            order.append(f"first:{v.terminal}")
            return v.replace(terminal=False, counts=False)

        def second(v: Verdict) -> None:
            order.append(f"second:{v.terminal}")

        session = make_session(sim, max_retry=0)
        guard(session, GuardPolicy(hooks=(first, second)))
        await start(session)
        await turn(session, "hi")
        await asyncio.sleep(0.05)
        assert order == ["first:True", "second:False"]
        await session.aclose()


class TestOrdering:
    """A failure waiting in an async hook belongs to the streak it arrived in."""

    async def test_success_during_a_slow_hook_ends_that_streak(self, sim: GatewaySimulator) -> None:
        """Failure, reply (success) while the hook runs, failure: one in a row, not two."""
        from livekit.agents import llm
        from livekit.agents._exceptions import APIStatusError

        from agent_guard import Kind, Tolerance

        async def slow(v: Verdict) -> None:
            await asyncio.sleep(0.5)

        sim.llm.default = Reply("All good.")
        session = make_session(sim)
        g = guard(session, GuardPolicy(hooks=(slow,), tolerances={Kind.LLM: Tolerance.allow(1)}))
        await start(session)
        model = session.llm
        assert isinstance(model, llm.LLM)

        def fail() -> None:
            model.emit(
                "error",
                llm.LLMError(
                    timestamp=0.0,
                    label="test",
                    recoverable=False,
                    error=APIStatusError("boom", status_code=500, body=None),
                ),
            )

        fail()
        await turn(session, "hi")  # the agent speaks: a success, while the hook still sleeps
        await asyncio.sleep(0.6)
        fail()
        await asyncio.sleep(0.6)
        assert len(g.verdicts) == 2
        assert g.close_event is None


class TestBrokenHooks:
    """Hooks that raise or return junk are logged and ignored."""

    async def test_raising_and_invalid_hooks_are_ignored(self, sim: GatewaySimulator) -> None:
        """The terminal decision still happens; both failures are logged."""
        sim.llm.default = QuotaExceeded()

        def raises(v: Verdict) -> None:
            raise TypeError("a TypeError would break livekit's retry loop if it escaped")

        def junk(v: Verdict) -> str:
            return "not a verdict"

        async def async_raises(v: Verdict) -> None:
            raise RuntimeError("boom")

        session = make_session(sim)
        g = guard(session, GuardPolicy(hooks=(raises, junk, async_raises)))  # type: ignore[arg-type]
        await start(session)
        with capture_logs() as logs:
            await turn(session, "hi")
            async with asyncio.timeout(10):
                await g.wait_closed()
        events = [e["event"] for e in logs]
        assert "agent_guard.hook_failed" in events
        assert "agent_guard.hook_invalid" in events
        assert len([e for e in logs if e["event"] == "agent_guard.hook_failed"]) == 2
        assert g.decision is not None and g.decision.reason is Reason.TERMINAL


class TestDefaultHooks:
    """The shipped hooks: structured logs and counters."""

    async def test_log_and_counter(self, sim: GatewaySimulator) -> None:
        """log_verdict emits agent_guard.error_classified; VerdictCounter counts per kind."""
        sim.llm.default = RateLimited()
        counter = VerdictCounter()
        session = make_session(sim, retry_interval=0.01)
        guard(session, GuardPolicy(hooks=(log_verdict, counter)))
        await start(session)
        with capture_logs() as logs:
            await turn(session, "hi")
        classified = [e for e in logs if e["event"] == "agent_guard.error_classified"]
        assert len(classified) == 4
        assert dict(classified[0]) | {"log_level": "info"} == {
            "event": "agent_guard.error_classified",
            "log_level": "info",
            "kind": "llm",
            "category": "rate_limited",
            "terminal": False,
            "counts": True,
            "recoverable": True,
            "model": "livekit.plugins.openai.llm.LLM",
            "provider": "livekit",
            "status_code": 429,
            "request_id": sim.requests_for("llm")[0].request_id,
            "hint": "Reduce request rate or upgrade your plan.",
            "quota": {
                "type": "llm",
                "category": "MaxConcurrentGatewayLLMRpm",
                "rpm_limit": 100,
                "rpm_used": 100,
            },
            "detail": "APIStatusError: Error code: 429: "
            "LLM request/min rate limit exceeded, category: MaxConcurrentGatewayLLMRpm",
        }
        assert counter.snapshot() == {"llm.rate_limited": 4}
        assert counter.terminal == 0
        await session.aclose()
