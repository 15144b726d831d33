"""What a stall is: the error that carries it, livekit's model around it, the notice.

The watchdog (:mod:`agent_guard._watchdog`) decides *when* a stall happens; this module
says *what* it is, so that it travels the data path like any provider failure: livekit's
own error model (``LLMError``, ``TTSError``, ``STTError``, ``RealtimeModelError``) wrapping
a :class:`StallError` that carries its own Verdict (classified by ``carried_verdict``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from livekit.agents import AgentSession, llm, stt, tts

from agent_guard import _seams
from agent_guard._audio import presynthesized
from agent_guard._playback import tts_cannot_speak
from agent_guard._policy import Farewell, GuardPolicy
from agent_guard._verdict import PUBLIC_MESSAGES, Category, Kind, Verdict

__all__ = ["StallError", "error_model", "model_of", "stall_notice", "stt_of"]


class StallError(Exception):
    """A provider went silent: raised by nobody, reported by the guard's watchdog.

    It is the ``error`` of the livekit error model (``LLMError``, ``TTSError``,
    ``STTError``, ``RealtimeModelError``) that a stall's Verdict and ``CloseEvent`` carry,
    and it carries its own :attr:`verdict` (category ``stalled``).

    ``counts=False`` when the stall stands for a turn livekit was retrying after a failure
    that does not count (a client cancellation): the caller still hears the notice.

    Attributes:
        kind: The stage that stalled.
        waited: Seconds the caller had waited in silence when the stall was reported.
        verdict: The stall's Verdict.
    """

    def __init__(self, kind: Kind, what: str, *, waited: float, counts: bool = True) -> None:
        super().__init__(f"{kind.value} stalled: {what} ({waited:.1f} s of dead air)")
        self.kind = kind
        self.waited = waited
        self.verdict = Verdict(
            kind=kind,
            category=Category.STALLED,
            terminal=False,
            counts=counts,
            public_message=PUBLIC_MESSAGES[Category.STALLED],
            detail=str(self),
        )


def stall_notice(
    session: AgentSession[Any], policy: GuardPolicy, verdict: Verdict
) -> Farewell | None:
    """The stall notice as it will be played: a recording when TTS cannot speak it."""
    message = policy.stall_message
    if message is None:
        return None
    if isinstance(message, Farewell):
        if message.audio is not None:
            return message
        message = message.text
    engine = _seams.speaking_tts(session)
    if engine is not None and (cached := presynthesized(engine, message)) is not None:
        return Farewell(text=message, audio=cached)
    if tts_cannot_speak(session, verdict):
        return Farewell.STALL
    return Farewell(text=message)


def error_model(session: AgentSession[Any], kind: Kind, error: StallError) -> Any:
    """livekit's own error model for ``kind``, as a provider failure would carry it."""
    now = time.time()
    if kind is Kind.STT:
        return stt.STTError(
            timestamp=now, label=_label(stt_of(session)), error=error, recoverable=False
        )
    if kind is Kind.TTS:
        engine = _seams.speaking_tts(session)
        return tts.TTSError(timestamp=now, label=_label(engine), error=error, recoverable=False)
    if kind is Kind.REALTIME:
        return llm.RealtimeModelError(
            timestamp=now, label=_label(model_of(session)), error=error, recoverable=False
        )
    return llm.LLMError(
        timestamp=now, label=_label(model_of(session)), error=error, recoverable=False
    )


def model_of(session: AgentSession[Any]) -> object:
    """The LLM or realtime model answering for the current agent."""
    with contextlib.suppress(Exception):
        agent_llm = session.current_agent.llm
        if isinstance(agent_llm, llm.LLM | llm.RealtimeModel):
            return agent_llm
    return session.llm


def stt_of(session: AgentSession[Any]) -> object:
    """The STT transcribing for the current agent, if any."""
    with contextlib.suppress(Exception):
        agent_stt = session.current_agent.stt
        if isinstance(agent_stt, stt.STT):
            return agent_stt
    return session.stt


def _label(model: object) -> str:
    label = getattr(model, "label", None)
    return label if isinstance(label, str) else "unknown"
