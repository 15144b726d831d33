"""AssemblyAI streaming closes, and the exceptions livekit raises for them.

``build`` follows livekit-plugins-assemblyai 1.8.9's ``recv_task``: a CLOSE message (a
real ``aiohttp.WSMessage``, whose ``data`` is the close code and ``extra`` the reason)
becomes ``APIStatusError("AssemblyAI connection closed unexpectedly",
status_code=ws.close_code or -1, body=f"{msg.data=} {msg.extra=}")``.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_guard._verdict import Category, Kind
from agent_guard.testing import raised
from agent_guard.testing.plugins import ProviderFixture

__all__ = ["FIXTURES", "STT_LABEL", "Fixture"]

STT_LABEL = "livekit.plugins.assemblyai.stt.STT"
_V2 = "https://www.assemblyai.com/docs/api-reference/streaming"
_V3 = "https://www.assemblyai.com/docs/speech-to-text/universal-streaming/common-session-errors-and-closures"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixture(ProviderFixture):
    """A streaming close: ``status`` is None (livekit puts the close code in its place)."""

    close_code: int
    reason: str
    kind: Kind = Kind.STT
    label: str = STT_LABEL
    status: int | None = None
    body: None = None

    def error(self) -> BaseException:
        """The exception livekit emits for this close (see the module docstring)."""
        import aiohttp
        from livekit.agents import APIStatusError

        msg = aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, self.close_code, self.reason)
        return raised(
            APIStatusError(
                "AssemblyAI connection closed unexpectedly",
                status_code=self.close_code or -1,
                body=f"{msg.data=} {msg.extra=}",
            )
        )


FIXTURES: tuple[Fixture, ...] = (
    Fixture(
        id="v2_4002_insufficient_funds",
        source=_V2,
        close_code=4002,
        reason="Insufficient Funds",
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="v2_4001_not_authorized",
        # Also the close reported at stackoverflow.com/questions/79220522.
        source=_V2,
        close_code=4001,
        reason="Not Authorized",
        expected=Category.AUTH,
        terminal=True,
    ),
    Fixture(
        id="v2_4003_free_tier",
        source=_V2,
        close_code=4003,
        # The documented message is longer than a close frame's 123-byte reason (the
        # real-plugin test found aiohttp refusing to send it); AssemblyAI then closes with
        # this pointer to its Error message (v3 docs), so the code alone decides.
        reason="See Error message for details",
        expected=Category.PAYMENT_REQUIRED,
        terminal=True,
    ),
    Fixture(
        id="v3_1008_concurrency",
        source=_V3,
        close_code=1008,
        reason="Unauthorized Connection: Too many concurrent sessions",
        expected=Category.RATE_LIMITED,
        terminal=False,
    ),
    Fixture(
        id="v3_1008_missing_authorization",
        source=_V3,
        close_code=1008,
        reason="Unauthorized Connection: Missing Authorization header",
        expected=Category.AUTH,
        terminal=True,
    ),
    Fixture(
        id="v3_1008_insufficient_balance",
        # The table's "Unauthorized Connection: <reason>" row names an insufficient account
        # balance; the exact reason text is ours.
        source=_V3,
        close_code=1008,
        reason="Unauthorized Connection: Insufficient account balance",
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="v3_3008_session_expired",
        source=_V3,
        close_code=3008,
        reason="Session Expired: Maximum session duration exceeded",
        expected=Category.CONNECTION,
        terminal=False,
    ),
)
