"""The frontend signal: tell the web client *why* the agent is leaving.

Without it a client only sees a participant leave. The payload is small, versioned
and redacted by construction: it carries the verdict's kind, category, terminal flag
and ``public_message`` (never provider text, hints or details).

Two channels, both on the agent's ``rtc.LocalParticipant``, as livekit itself mirrors
the agent state into the ``lk.agent.state`` attribute:

* a participant attribute (default ``agent_guard.error``) holding the JSON payload:
  late joiners and reconnecting clients still see it;
* a text stream on a topic (default ``agent_guard.error``): an event the client can
  subscribe to with ``room.registerTextStreamHandler(topic, ...)``.

Setting attributes needs the ``canUpdateOwnMetadata`` grant; failures are logged and
never delay the close beyond the signal's timeout.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol

from agent_guard._log import log
from agent_guard._redact import redact
from agent_guard._verdict import Verdict

__all__ = ["PAYLOAD_VERSION", "FrontendSignal", "Participant", "participant_of", "payload"]

PAYLOAD_VERSION = 1


class Participant(Protocol):
    """The part of ``livekit.rtc.LocalParticipant`` the signal uses."""

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...

    async def send_text(self, text: str, *, topic: str = "") -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontendSignal:
    """Where and when to publish the payload.

    Attributes:
        attribute: Participant attribute name, or ``None`` to skip it.
        topic: Text-stream topic, or ``None`` to skip it.
        on_tolerated: Also publish tolerated (non-closing) failures.
        timeout: Seconds to wait for the room before giving up.
    """

    attribute: str | None = "agent_guard.error"
    topic: str | None = "agent_guard.error"
    on_tolerated: bool = False
    timeout: float = 1.0

    def __post_init__(self) -> None:
        from agent_guard._errors import PolicyError

        for name in ("attribute", "topic"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise PolicyError(f"FrontendSignal.{name} must be a non-empty str or None")
        timeout = self.timeout
        if type(timeout) not in (int, float) or not 0 < timeout <= 10:
            raise PolicyError(f"FrontendSignal.timeout must be in (0, 10] seconds, got {timeout!r}")
        if type(self.on_tolerated) is not bool:
            raise PolicyError(
                f"FrontendSignal.on_tolerated must be a bool, got {self.on_tolerated!r}"
            )

    async def publish(self, participant: Participant, verdict: Verdict, *, closing: bool) -> None:
        """Publish ``verdict`` to ``participant``; never raises (logs instead)."""
        text = json.dumps(payload(verdict, closing=closing), separators=(",", ":"))
        try:
            async with asyncio.timeout(self.timeout):
                if self.attribute is not None:
                    await participant.set_attributes({self.attribute: text})
                if self.topic is not None:
                    await participant.send_text(text, topic=self.topic)
        except Exception as e:  # TimeoutError included
            log.warning("agent_guard.signal_failed", error_type=type(e).__name__)


def payload(verdict: Verdict, *, closing: bool) -> dict[str, Any]:
    """The documented frontend payload (``version`` 1)."""
    return {
        "version": PAYLOAD_VERSION,
        "kind": verdict.kind.value,
        "category": verdict.category.value,
        "terminal": verdict.terminal,
        "closing": closing,
        # Redacted again: a classifier or hook may have set any text here.
        "message": redact(verdict.public_message, limit=200),
    }


def participant_of(session: Any) -> Participant | None:
    """The session's local participant, or ``None`` for a session without a room."""
    try:
        # AgentSession.room_io raises RuntimeError when started without a room.
        room = session.room_io.room
        if not room.isconnected():
            return None
        participant: Participant = room.local_participant
        return participant
    except Exception:
        return None
