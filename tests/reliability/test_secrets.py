"""Secrets never leave classification: not in speech, logs, Verdicts or the frontend.

Every fixture puts a key-shaped secret where real providers and gateways put them: an
OpenAI 401 that echoes the key (the simulator's ``Unauthorized(key=...)``), gateway
hints and messages quoting ``sk-proj-…``, ``Bearer …``, ``AIza…`` or a ``key=`` query,
STT/realtime errors whose message or body carries one. Each runs through a real guarded
session, with policies that *try* to say provider text (``speak_hint=True``, a message
factory speaking the verdict's ``hint``/``detail``), and every output surface is searched
for any 10-character fragment of the secret.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, llm, stt
from livekit.agents._exceptions import APIError, APIStatusError
from livekit.plugins import openai
from structlog.testing import capture_logs

from agent_guard import FrontendSignal, GuardPolicy, Verdict, guard
from agent_guard._signal import payload
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    QuotaExceeded,
    RateLimited,
    Reply,
    Unauthorized,
)
from tests.helpers import make_session

OPENAI_KEY = "sk-proj-LEAKCHECK0123456789abcdefABCDEFghij"
GOOGLE_KEY = "AIzaSyLEAKCHECK0123456789abcdefABCDxyz"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFrY2hlY2sifQ.bGVha2NoZWNrc2lnbmF0dXJl"
HEX_TOKEN = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
FRAGMENT = 10


def fragments(secret: str) -> set[str]:
    """Every FRAGMENT-long window of the secret past its public prefix."""
    for prefix in ("sk-proj-", "AIza"):
        if secret.startswith(prefix):
            secret = secret[len(prefix) :]
    return {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


def raw_texts(error: BaseException) -> list[str]:
    """Everything provider-supplied on an exception chain: messages, bodies, responses."""
    texts: list[str] = []
    current: BaseException | None = error
    for _ in range(8):
        if current is None:
            break
        texts += [str(current), repr(getattr(current, "body", None))]
        response = getattr(current, "response", None)
        if response is not None:
            texts.append(str(getattr(response, "text", "")))
        current = current.__cause__ or current.__context__
    return texts


# -- fixtures: where a secret comes in -------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    id: str
    secret: str
    drive: Callable[[GatewaySimulator, AgentSession[Any], openai.STT], Any]
    """Arranges the failure (may be a coroutine function)."""
    stt: bool = False
    """Give the session an STT (only when needed: with one, a user close waits 2 s for
    the final transcript)."""


async def _turn(session: AgentSession[Any]) -> None:
    try:
        async with asyncio.timeout(10):
            await session.run(user_input="hi")
    except Exception:
        pass


async def llm_401_echo(sim: GatewaySimulator, session: AgentSession[Any], _: openai.STT) -> None:
    sim.llm.default = Unauthorized(key=OPENAI_KEY)
    await _turn(session)


async def tts_401_echo(sim: GatewaySimulator, session: AgentSession[Any], _: openai.STT) -> None:
    sim.llm.default = Reply("Sure, one moment.")
    sim.tts.default = Unauthorized(key=OPENAI_KEY)
    await _turn(session)


def _quota(**fields: Any) -> Callable[[GatewaySimulator, AgentSession[Any], openai.STT], Any]:
    async def drive(sim: GatewaySimulator, session: AgentSession[Any], _: openai.STT) -> None:
        sim.llm.default = QuotaExceeded(**fields)
        await _turn(session)

    return drive


async def rate_limit_with_key(
    sim: GatewaySimulator, session: AgentSession[Any], _: openai.STT
) -> None:
    # Tolerated, not closing: the key travels through verdicts and logs only.
    sim.llm.default = RateLimited(message=f"rate limited for key {OPENAI_KEY}")
    await _turn(session)
    await session.aclose()


def stt_401_echo(sim: GatewaySimulator, session: AgentSession[Any], recognizer: openai.STT) -> None:
    message = f"Incorrect API key provided: {OPENAI_KEY}."
    recognizer.emit(
        "error",
        stt.STTError(
            timestamp=time.time(),
            label=recognizer.label,
            recoverable=False,
            error=APIStatusError(
                message,
                status_code=401,
                body={"error": {"message": message, "code": "invalid_api_key"}},
            ),
        ),
    )


def realtime_hint_with_keys(
    sim: GatewaySimulator, session: AgentSession[Any], _: openai.STT
) -> None:
    model = session.llm
    assert isinstance(model, llm.LLM)
    model.emit(
        "error",
        llm.RealtimeModelError(
            timestamp=time.time(),
            label="rt",
            recoverable=False,
            error=APIError(
                f"quota for {GOOGLE_KEY}",
                retryable=False,
                body={
                    "type": "inference_quota_exceeded",
                    "category": "MaxGatewayCredits",
                    "quota_type": "llm",
                    "hint": f"Renew at https://x.example/?key={GOOGLE_KEY}",
                    "error": f"quota exceeded (Authorization: Bearer {BEARER})",
                },
            ),
        ),
    )


LEAKS = [
    Leak("llm_401_echoes_openai_key", OPENAI_KEY, llm_401_echo),
    Leak("tts_401_echoes_openai_key", OPENAI_KEY, tts_401_echo),
    Leak(
        "gateway_hint_with_openai_key",
        OPENAI_KEY,
        _quota(hint=f"Top up: key {OPENAI_KEY} has no credits left."),
    ),
    Leak(
        "gateway_message_with_bearer",
        BEARER,
        _quota(
            message=f"credits exhausted for Authorization: Bearer {BEARER}, "
            "category: MaxGatewayCredits"
        ),
    ),
    Leak(
        "gateway_hint_with_google_key",
        GOOGLE_KEY,
        _quota(hint=f"Check https://console.example/billing?key={GOOGLE_KEY} now"),
    ),
    Leak(
        "gateway_hint_with_bare_token",
        HEX_TOKEN,
        _quota(hint=f"Project token {HEX_TOKEN} is out of credits."),
    ),
    Leak("rate_limit_message_with_key", OPENAI_KEY, rate_limit_with_key),
    Leak("stt_401_echoes_openai_key", OPENAI_KEY, stt_401_echo, stt=True),
    Leak("realtime_body_with_google_key", GOOGLE_KEY, realtime_hint_with_keys),
    Leak("realtime_body_with_bearer", BEARER, realtime_hint_with_keys),
]


def _say_everything(v: Verdict) -> str:
    # A careless factory: speaks whatever provider-derived text the verdict holds.
    return " ".join(x for x in (v.public_message, v.hint, v.detail, v.provider) if x)


POLICIES = {
    "default": lambda: GuardPolicy(farewell_timeout=2.0),
    "speak_hint": lambda: GuardPolicy(farewell_timeout=2.0, speak_hint=True),
    "factory_says_detail": lambda: GuardPolicy(farewell_timeout=2.0, error_message=_say_everything),
}


class RecordingParticipant:
    """Implements the signal's Participant protocol and keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.sent += list(attributes.values())

    async def send_text(self, text: str, *, topic: str = "") -> None:
        self.sent.append(text)


@pytest.fixture
def structlog_entries() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as entries:
        yield entries


@pytest.mark.parametrize("policy", POLICIES, ids=list(POLICIES))
@pytest.mark.parametrize("leak", LEAKS, ids=[leak.id for leak in LEAKS])
async def test_secret_never_leaks(
    sim: GatewaySimulator,
    structlog_entries: list[MutableMapping[str, Any]],
    leak: Leak,
    policy: str,
) -> None:
    """Speech, logs, Verdicts and the frontend payload hold no fragment of the secret."""
    recognizer = openai.STT(base_url=sim.base_url, api_key="sk-unrelated")
    session = make_session(sim, max_retry=0, stt=recognizer if leak.stt else None)
    g = guard(session, POLICIES[policy]())
    seen: list[str] = []
    # Read at emit time: livekit later replaces the __context__ holding the response.
    session.on("error", lambda ev: seen.extend(raw_texts(ev.error.error)))
    session.output.audio = CaptureAudioOutput(realtime=False)
    await session.start(Agent(instructions="Be brief."))

    result = leak.drive(sim, session, recognizer)
    if asyncio.iscoroutine(result):
        await result
    async with asyncio.timeout(10):
        await g.wait_closed()
    assert g.verdicts, "the fixture must reach the guard"

    participant = RecordingParticipant()
    signal = FrontendSignal()
    for verdict in g.verdicts:
        await signal.publish(participant, verdict, closing=True)

    surfaces = {
        "speech": [str((r.json or {}).get("input", "")) for r in sim.requests_for("tts")],
        "logs": [repr(entry) for entry in structlog_entries],
        "verdicts": [repr(v) for v in g.verdicts]
        + [json.dumps(v.as_dict()) for v in g.verdicts]
        + ([repr(g.decision)] if g.decision is not None else []),
        "frontend": [json.dumps(payload(v, closing=True)) for v in g.verdicts] + participant.sent,
    }
    leaks = {
        name: [text for text in texts if any(f in text for f in fragments(leak.secret))]
        for name, texts in surfaces.items()
    }
    assert leaks == {name: [] for name in surfaces}
    # Meaningful only if the secret really was in what livekit handed the guard.
    assert any(leak.secret in text for text in seen), "the fixture lost its secret"
