"""The private livekit seams the guard relies on: these fail first if upstream changes."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from livekit.agents import AgentSession, CloseEvent, CloseReason, llm
from livekit.agents._exceptions import APIStatusError

from agent_guard import _seams
from agent_guard.testing import GatewaySimulator
from tests.helpers import make_session, start


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


class TestErrorEntry:
    """AgentSession._on_error is where model failures enter, after the public event."""

    async def test_intercepted_errors_bypass_the_built_in_counter(
        self, sim: GatewaySimulator
    ) -> None:
        """A final model error reaches the handler untouched, and closes nothing by itself."""
        assert _seams.INTERCEPT_OK
        session = make_session(sim)
        session.conn_options.max_unrecoverable_errors = 0  # livekit would close at once
        seen: list[tuple[str, bool]] = []
        events: list[bool] = []
        session.on("error", lambda ev: events.append(ev.error.recoverable))
        assert _seams.intercept_errors(session, lambda e: seen.append((e.type, e.recoverable)))
        await start(session)
        model = session.llm
        assert isinstance(model, llm.LLM)
        err = llm.LLMError(
            timestamp=0.0, label="t", error=APIStatusError("x", status_code=500), recoverable=False
        )
        model.emit("error", err)
        assert seen == [("llm_error", False)]
        assert events == [False]  # the app's listeners first, with livekit's flag
        await asyncio.sleep(0.05)
        assert not _seams.is_closing(session)
        await session.aclose()

    async def test_model_of_reads_the_activity(self, sim: GatewaySimulator) -> None:
        session = make_session(sim)
        await start(session)
        assert _seams.model_of(session, "llm") is session.llm
        assert _seams.model_of(session, "tts") is session.tts
        assert _seams.model_of(session, "realtime") is session.llm
        await session.aclose()


class TestSilenceAndPlayback:
    """The agent's llm_node is read per generation; an output's pending segments are known."""

    async def test_silenced_llm_sends_no_request_and_undo_restores(
        self, sim: GatewaySimulator
    ) -> None:
        session = make_session(sim)
        await start(session)
        undo = _seams.silence_llm(session)
        await session.run(user_input="hi")
        assert sim.requests_for("llm") == []
        undo()
        await session.run(user_input="hi again")
        assert len(sim.requests_for("llm")) == 1
        await session.aclose()

    async def test_finish_playback_releases_a_waiting_speech(self) -> None:
        """A sink that never reports: finish_playback ends wait_for_playout."""
        from livekit import rtc
        from livekit.agents import io

        class Mute(io.AudioOutput):
            def __init__(self) -> None:
                super().__init__(label="mute", capabilities=io.AudioOutputCapabilities(pause=False))

            async def capture_frame(self, frame: rtc.AudioFrame) -> None:
                await super().capture_frame(frame)

            def flush(self) -> None:
                super().flush()

            def clear_buffer(self) -> None:
                pass

        out = Mute()
        await out.capture_frame(rtc.AudioFrame(b"\0\0" * 480, 24000, 1, 480))
        out.flush()
        assert out._pending_playback_count == 1
        waiting = asyncio.ensure_future(out.wait_for_playout())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        _seams.finish_playback(out)
        async with asyncio.timeout(1):
            ev = await waiting
        assert ev.interrupted
        assert out._pending_playback_count == 0


class TestListener:
    """_seams.listener: a callback livekit's EventEmitter dispatches to without inspecting it."""

    def test_event_reaches_the_callback(self) -> None:
        """The emitted event (and only it) is passed on, as livekit passes it to a method."""
        from livekit import rtc

        got: list[object] = []

        class Owner:
            def on_event(self, ev: object) -> None:
                got.append(ev)

        emitter: rtc.EventEmitter[str] = rtc.EventEmitter()
        wrapped = _seams.listener(Owner().on_event)
        emitter.on("x", wrapped)
        emitter.emit("x", "ev1")
        emitter.emit("x", "ev2", "extra")  # livekit passes what the signature takes
        assert got == ["ev1", "ev2"]
        emitter.off("x", wrapped)
        emitter.emit("x", "ev3")
        assert got == ["ev1", "ev2"]

    def test_signature_is_precomputed(self) -> None:
        """inspect.signature() returns the class's signature at once, not the method's."""

        class Owner:
            def on_event(self, ev: object) -> None: ...

        wrapped = _seams.listener(Owner().on_event)
        assert inspect.signature(wrapped) is _seams.listener.__signature__
        assert list(inspect.signature(wrapped).parameters) == ["event"]
