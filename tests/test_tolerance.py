"""Per-kind tolerance through real sessions: the guard owns the decision."""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import CloseReason, llm
from livekit.agents._exceptions import APIError

from agent_guard import Category, GuardPolicy, Kind, Reason, Tolerance, guard
from agent_guard._policy import DEFAULT_ERROR_MESSAGE
from agent_guard.testing import GatewaySimulator, HttpError, Reply, StreamError
from tests.helpers import heard, make_session, start, turn

SERVER_ERROR = HttpError(status=500, body={"error": {"message": "boom", "type": "server_error"}})


def fast_session(sim: GatewaySimulator, **kw: Any) -> Any:
    # max_retry=0: one request and one non-recoverable error per failing turn.
    return make_session(sim, max_retry=0, **kw)


class TestTolerance:
    """Consecutive failures per kind, reset on success, optional window."""

    async def test_closes_on_failure_n_plus_one(self, sim: GatewaySimulator) -> None:
        """allow(2): two failing turns are tolerated, the third closes with the farewell."""
        sim.llm.default = SERVER_ERROR
        session = fast_session(sim)
        g = guard(
            session,
            GuardPolicy(error_message="Bye for now.", tolerances={Kind.LLM: Tolerance.allow(2)}),
        )
        await start(session)
        await turn(session, "one")
        await turn(session, "two")
        assert (g.decision, g.close_event) == (None, None)  # a tuple: no narrowing for mypy
        await turn(session, "three")
        async with asyncio.timeout(10):
            ev = await g.wait_closed()
        assert ev.reason is CloseReason.ERROR
        assert g.decision is not None and g.decision.reason is Reason.TOLERANCE_EXCEEDED
        assert g.decision.verdict.category is Category.SERVER_ERROR
        assert len(sim.requests_for("llm")) == 3
        assert heard(g) == "Bye for now."

    async def test_success_resets_the_count(self, sim: GatewaySimulator) -> None:
        """fail, fail, success, fail, fail: still open; one more failure closes."""
        sim.llm.script(SERVER_ERROR, SERVER_ERROR, Reply("I'm back."), SERVER_ERROR, SERVER_ERROR)
        sim.llm.default = SERVER_ERROR
        session = fast_session(sim)
        g = guard(session, GuardPolicy(tolerances={Kind.LLM: Tolerance.allow(2)}))
        await start(session)
        for text in ("1", "2", "3", "4", "5"):
            await turn(session, text)
        assert g.close_event is None
        await turn(session, "6")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert g.decision is not None and g.decision.reason is Reason.TOLERANCE_EXCEEDED

    async def test_window_expiry_forgets_old_failures(self, sim: GatewaySimulator) -> None:
        """allow(1, within=0.3): failures 0.4 s apart never add up; two in a row do."""
        sim.llm.default = SERVER_ERROR
        session = fast_session(sim)
        g = guard(session, GuardPolicy(tolerances={Kind.LLM: Tolerance.allow(1, within=0.3)}))
        await start(session)
        await turn(session, "1")
        await asyncio.sleep(0.4)
        await turn(session, "2")
        assert g.close_event is None
        await turn(session, "3")
        async with asyncio.timeout(10):
            await g.wait_closed()

    async def test_builtin_counter_never_closes_behind_the_guard(
        self, sim: GatewaySimulator
    ) -> None:
        """Stock would close on the first failure (max_unrecoverable_errors=0); guarded stays."""
        sim.llm.default = SERVER_ERROR
        session = fast_session(sim)
        session.conn_options.max_unrecoverable_errors = 0
        g = guard(session, GuardPolicy(tolerances={Kind.LLM: Tolerance.allow(5)}))
        await start(session)
        for text in ("1", "2", "3"):
            await turn(session, text)
        await asyncio.sleep(0.1)
        assert g.close_event is None
        await session.aclose()

    async def test_realtime_failures_are_counted(self, sim: GatewaySimulator) -> None:
        """Recoverable realtime failures (stock ignores them all) count toward the tolerance."""
        session = make_session(sim)
        g = guard(session, GuardPolicy(tolerances={Kind.REALTIME: Tolerance.allow(1)}))
        await start(session)
        model = session.llm
        assert isinstance(model, llm.LLM)

        def fail() -> None:
            # Through the real activity path: AgentActivity listens to the model's
            # "error" and forwards it to the session.
            model.emit(
                "error",
                llm.RealtimeModelError(
                    timestamp=0.0,
                    label="test.realtime",
                    error=APIError("server_error", body={"type": "server_error"}, retryable=True),
                    recoverable=True,
                ),
            )

        fail()
        await asyncio.sleep(0.1)
        assert g.close_event is None
        fail()
        async with asyncio.timeout(10):
            ev = await g.wait_closed()
        assert ev.reason is CloseReason.ERROR
        assert isinstance(ev.error, llm.RealtimeModelError)
        assert g.decision is not None
        assert g.decision.reason is Reason.TOLERANCE_EXCEEDED

    async def test_final_realtime_error_closes_with_a_farewell(self, sim: GatewaySimulator) -> None:
        """A recoverable=False realtime error means livekit stopped reconnecting: close now.

        Even when no classifier calls it terminal (here an unclassified server error),
        counting it would wait for failures that never come, on a dead model.
        """
        session = make_session(sim)
        g = guard(session, GuardPolicy(tolerances={Kind.REALTIME: Tolerance.allow(5)}))
        await start(session)
        model = session.llm
        assert isinstance(model, llm.LLM)
        model.emit(
            "error",
            llm.RealtimeModelError(
                timestamp=0.0,
                label="test.realtime",
                recoverable=False,
                error=APIError("server_error", body={"type": "server_error"}, retryable=False),
            ),
        )
        async with asyncio.timeout(10):
            ev = await g.wait_closed()
        assert ev.reason is CloseReason.ERROR
        assert g.decision is not None
        assert g.decision.reason is Reason.MODEL_GAVE_UP
        assert not g.decision.verdict.terminal
        assert heard(g) == DEFAULT_ERROR_MESSAGE


class TestClientCancellations:
    """Cancellations we caused never count; provider-side failures do."""

    async def test_mid_stream_client_cancel_never_counts(self, sim: GatewaySimulator) -> None:
        """A 499 arriving mid-stream (a connection error) is exempt even with fail_fast."""
        cancel = StreamError(after_chunks=1, body={"message": "Client closed request", "code": 499})
        sim.llm.default = cancel
        session = fast_session(sim)
        g = guard(session, GuardPolicy(tolerances={Kind.LLM: Tolerance.fail_fast()}))
        await start(session)
        for text in ("1", "2", "3"):
            await turn(session, text)
        assert g.verdicts and all(v.category is Category.CLIENT_CANCELLED for v in g.verdicts)
        assert not any(v.counts for v in g.verdicts)
        assert g.close_event is None
        await session.aclose()

    async def test_provider_side_failure_mid_stream_counts(self, sim: GatewaySimulator) -> None:
        """The same shape with a provider fault (not a cancel) counts and closes."""
        sim.llm.default = StreamError(after_chunks=1, body={"message": "overloaded", "code": 503})
        session = fast_session(sim)
        g = guard(session, GuardPolicy(tolerances={Kind.LLM: Tolerance.fail_fast()}))
        await start(session)
        await turn(session, "1")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert g.decision is not None
        assert g.decision.verdict.counts

    async def test_provider_side_cancelled_counts_our_cancel_does_not(
        self, sim: GatewaySimulator
    ) -> None:
        """Google's server-side 499 CANCELLED (under load) counts; our own 499 does not.

        STT is the path where a 499 reaches the session at all (livekit's LLM and TTS
        loops swallow HTTP 499 before any event).
        """
        import agent_guard_google
        from google_fixtures import FIXTURES
        from livekit.agents import stt
        from livekit.agents._exceptions import APIStatusError
        from livekit.plugins import openai

        from agent_guard.classifiers import DEFAULT_CLASSIFIERS
        from tests.helpers import SECRET_KEY

        google_cancel = next(f for f in FIXTURES if f.id == "server_cancelled_499").error()
        assert isinstance(google_cancel, Exception)
        recognizer = openai.STT(base_url=sim.base_url, api_key=SECRET_KEY)
        session = make_session(sim, stt=recognizer)
        g = guard(
            session,
            GuardPolicy(
                classifiers=(*agent_guard_google.CLASSIFIERS, *DEFAULT_CLASSIFIERS),
                tolerances={Kind.STT: Tolerance.fail_fast()},
            ),
        )
        await start(session)

        def fail(error: Exception, label: str) -> None:
            recognizer.emit(
                "error",
                stt.STTError(
                    timestamp=0.0,
                    label=label,
                    error=error,
                    recoverable=False,
                ),
            )

        fail(APIStatusError("Client closed request", status_code=499), recognizer.label)
        await asyncio.sleep(0.05)
        assert g.close_event is None
        assert g.verdicts[-1].category is Category.CLIENT_CANCELLED
        assert not g.verdicts[-1].counts

        fail(google_cancel, "livekit.plugins.google.stt.STT")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert g.decision is not None
        assert g.decision.verdict.category is Category.OVERLOADED
        assert g.decision.verdict.counts
        assert g.decision.reason is Reason.TOLERANCE_EXCEEDED

    async def test_http_499_is_silent_upstream(self, sim: GatewaySimulator) -> None:
        """livekit swallows an HTTP 499 before any error event: nothing to count.

        The empty turn it leaves is the watchdog's business (off here; see
        tests/watchdog/test_llm.py, swallowed-499).
        """
        from agent_guard.testing import ClientCancelled

        sim.llm.default = ClientCancelled()
        session = fast_session(sim)
        g = guard(
            session,
            GuardPolicy(tolerances={Kind.LLM: Tolerance.fail_fast()}, stall_timeout=None),
        )
        await start(session)
        await turn(session, "1")
        assert g.verdicts == ()
        assert g.close_event is None
        await session.aclose()
