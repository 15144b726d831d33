"""The frontend signal: a small, redacted payload published before the agent leaves."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import pytest
from livekit import rtc

from agent_guard import FrontendSignal, GuardPolicy, PolicyError, guard
from agent_guard import _signal as signal_module
from agent_guard._audio import in_memory
from agent_guard._policy import DEFAULT_FAREWELL_AUDIO
from agent_guard._signal import participant_of
from agent_guard.testing import GatewaySimulator, RateLimited, Unauthorized
from tests.helpers import SECRET_KEY, make_session, never_starts, start, turn


class RecordingParticipant:
    """Stands in for rtc.LocalParticipant, which needs a connected room (no server here).

    ``test_matches_the_real_participant`` keeps its methods in step with the real class.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, float]] = []

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.calls.append(("set_attributes", dict(attributes), asyncio.get_running_loop().time()))

    async def send_text(self, text: str, *, topic: str = "") -> None:
        self.calls.append(("send_text", (text, topic), asyncio.get_running_loop().time()))


class TestSurface:
    """The channels exist on the real livekit.rtc API with the parameters we use."""

    def test_matches_the_real_participant(self) -> None:
        """set_attributes(attributes) and send_text(text, topic=) on rtc.LocalParticipant."""
        real_attrs = inspect.signature(rtc.LocalParticipant.set_attributes).parameters
        real_text = inspect.signature(rtc.LocalParticipant.send_text).parameters
        assert list(real_attrs) == ["self", "attributes"]
        assert "topic" in real_text and real_text["topic"].kind is inspect.Parameter.KEYWORD_ONLY
        assert list(real_text)[:2] == ["self", "text"]

    async def test_no_room_means_no_participant(self, sim: GatewaySimulator) -> None:
        """A session started without a room: the signal is a no-op."""
        session = make_session(sim)
        await start(session)
        assert participant_of(session) is None
        await session.aclose()

    @pytest.mark.parametrize(
        "kwargs", [{"attribute": ""}, {"topic": "  "}, {"timeout": 0}, {"timeout": 11}]
    )
    def test_invalid_config(self, kwargs: dict[str, Any]) -> None:
        """Blank names and unbounded timeouts are refused."""
        with pytest.raises(PolicyError):
            FrontendSignal(**kwargs)


class TestPayload:
    """What the web client receives."""

    async def test_terminal_failure_is_published_before_close_without_secrets(
        self, sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A 401 echoing the key: kind/category/message only, on both channels."""
        participant = RecordingParticipant()
        monkeypatch.setattr(signal_module, "participant_of", lambda session: participant)
        sim.llm.default = Unauthorized(key=SECRET_KEY)
        session = make_session(sim)
        g = guard(session)
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()

        assert [c[0] for c in participant.calls] == ["set_attributes", "send_text"]
        attrs = participant.calls[0][1]
        text, topic = participant.calls[1][1]
        assert topic == "agent_guard.error"
        assert attrs == {"agent_guard.error": text}
        assert json.loads(text) == {
            "version": 1,
            "kind": "llm",
            "category": "auth",
            "terminal": True,
            "closing": True,
            "message": "The assistant is unavailable right now.",
        }
        assert SECRET_KEY not in text and "sk-" not in text

    async def test_tolerated_failures_only_when_asked(
        self, sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """on_tolerated=True publishes each counted failure with closing=false."""
        participant = RecordingParticipant()
        monkeypatch.setattr(signal_module, "participant_of", lambda session: participant)
        sim.llm.default = RateLimited()
        session = make_session(sim, max_retry=0)
        guard(session, GuardPolicy(signal=FrontendSignal(on_tolerated=True, attribute=None)))
        await start(session)
        await turn(session, "hi")
        await asyncio.sleep(0.05)
        assert [c[0] for c in participant.calls] == ["send_text"]
        payload = json.loads(participant.calls[0][1][0])
        assert payload["closing"] is False and payload["category"] == "rate_limited"
        await session.aclose()

    async def test_signal_off(self, sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
        """signal=None publishes nothing."""
        participant = RecordingParticipant()
        monkeypatch.setattr(signal_module, "participant_of", lambda session: participant)
        sim.llm.default = Unauthorized()
        session = make_session(sim)
        g = guard(session, GuardPolicy(signal=None))
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert participant.calls == []


class TestTiming:
    """The frontend is told while the farewell plays, never at the first frame's expense."""

    async def test_after_a_ready_recording_is_queued(
        self, sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A recording in memory is queued first; the room calls come right after."""
        participant = RecordingParticipant()
        monkeypatch.setattr(signal_module, "participant_of", lambda session: participant)
        sim.llm.default = Unauthorized()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_audio=DEFAULT_FAREWELL_AUDIO))
        loop = asyncio.get_running_loop()
        queued: list[float] = []
        session.on(
            "speech_created",
            lambda ev: queued.append(loop.time()) if ev.source == "say" else None,
        )
        await start(session)
        async with asyncio.timeout(5):
            while in_memory(DEFAULT_FAREWELL_AUDIO, None) is None:
                await asyncio.sleep(0.01)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert g.farewell is not None and g.farewell.source == "recording"
        assert [c[0] for c in participant.calls] == ["set_attributes", "send_text"]
        assert len(queued) == 1 and participant.calls[0][2] >= queued[0]

    async def test_at_once_when_the_recording_keeps_the_farewell_waiting(
        self, sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A recording whose first frame never comes: told at once, not at the bound."""
        participant = RecordingParticipant()
        monkeypatch.setattr(signal_module, "participant_of", lambda session: participant)

        sim.llm.default = Unauthorized()
        session = make_session(sim)
        g = guard(session, GuardPolicy(farewell_audio=never_starts, farewell_timeout=1.0))
        await start(session)
        await turn(session, "hi")
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert g.decision is not None and participant.calls
        assert participant.calls[0][2] - g.decision.at < 0.5
