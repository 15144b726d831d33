"""The redaction holes an adversarial review found stay closed, on every output surface.

Each secret is written the way providers, proxies and SDK reprs echo it: an
``Authorization: Bearer``/``Basic`` header (where the field rule used to remove the word
"Bearer" and so disarm the bearer rule), URL userinfo, an Azure SAS ``sig=``, an AWS
secret containing ``/``, a ``Cookie:`` header, ``passphrase=``, ``auth=``, and a key
split by a zero-width character. They are checked in :func:`redact` alone, then through
real guarded sessions (the real openai plugin over HTTP to the simulator) whose policies
try to speak provider text: no 8-character fragment of any secret may reach a Verdict, a
log line, speech or the frontend payload.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent_guard import FrontendSignal, GuardPolicy, Kind, Verdict, classify, guard
from agent_guard._redact import redact, sanitize_hint
from agent_guard._signal import payload
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    HttpError,
    QuotaExceeded,
    openai_status_error,
)
from tests.helpers import make_session, start
from tests.redaction_holes import HOLES

FRAGMENT = 8


def fragments(secret: str) -> set[str]:
    """Every FRAGMENT-long window of the secret past a public prefix."""
    for prefix in ("sk-proj-", "AKIA"):
        secret = secret.removeprefix(prefix)
    return {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


def leaked(texts: list[str]) -> dict[str, list[str]]:
    """Which holes' secrets appear (by fragment) in ``texts``."""
    joined = "\n".join(texts)
    found = {}
    for name, (secret, _) in HOLES.items():
        hits = sorted(f for f in fragments(secret) if f in joined)
        if hits:
            found[name] = hits[:2]
    return found


class TestRedact:
    @pytest.mark.parametrize("name", HOLES, ids=list(HOLES))
    def test_hole_closed(self, name: str) -> None:
        """redact() and sanitize_hint() remove the secret, whatever surrounds it."""
        _secret, text = HOLES[name]
        for result in (redact(text), sanitize_hint(text)):
            assert leaked([result]) == {}, result
            assert "[redacted]" in result

    @pytest.mark.parametrize("name", HOLES, ids=list(HOLES))
    def test_inside_json_and_repr(self, name: str) -> None:
        """The same secrets inside a JSON body and a Python repr (how livekit formats)."""
        _, text = HOLES[name]
        for wrapped in (json.dumps({"error": {"message": text}}), repr({"message": text})):
            assert leaked([redact(wrapped, limit=2000)]) == {}

    def test_readable_text_survives(self) -> None:
        """The fixes keep ordinary provider prose and URLs readable."""
        for text in (
            "POST https://api.openai.com/v1/chat/completions failed: Unauthorized",
            "see https://platform.openai.com/account/api-keys",
            "auth failed for model gpt-4o (session closed)",
        ):
            assert redact(text) == text


def _everything(verdict: Verdict) -> str:
    # A careless factory: speaks whatever provider-derived text the verdict holds.
    return " ".join(x for x in (verdict.public_message, verdict.hint, verdict.detail) if x)


ALL_HOLES = " | ".join(text for _, text in HOLES.values())
# fleet=None and no presynthesis: the farewell must go through TTS here, to check what TTS
# is asked to say (an auth failure would otherwise refuse the account's TTS too).
POLICIES: dict[str, Callable[[], GuardPolicy]] = {
    "speak_hint": lambda: GuardPolicy(
        farewell_timeout=2.0, speak_hint=True, fleet=None, presynthesize=False
    ),
    "factory_says_everything": lambda: GuardPolicy(
        farewell_timeout=2.0, error_message=_everything, fleet=None, presynthesize=False
    ),
}


class RecordingParticipant:
    """The signal's Participant protocol, keeping what it was sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.sent += list(attributes.values())

    async def send_text(self, text: str, *, topic: str = "") -> None:
        self.sent.append(text)


@pytest.fixture
def log_entries() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as entries:
        yield entries


class TestEverySurface:
    def test_classify(self, log_entries: list[MutableMapping[str, Any]]) -> None:
        """An SDK-wrapped 401 whose message, body and headers echo every secret."""
        error = openai_status_error(
            401,
            json={"error": {"message": ALL_HOLES, "code": "invalid_api_key"}},
            headers={"x-debug": ALL_HOLES[:200]},
        )
        verdict = classify(error, kind=Kind.LLM, label="livekit.plugins.openai.llm.LLM")
        texts = [repr(verdict), json.dumps(verdict.as_dict()), repr(log_entries)]
        texts.append(json.dumps(payload(verdict, closing=True)))
        assert leaked(texts) == {}

    @pytest.mark.parametrize("policy", POLICIES, ids=list(POLICIES))
    @pytest.mark.parametrize("where", ["llm_401_body", "gateway_hint"])
    async def test_guarded_session(
        self,
        sim: GatewaySimulator,
        log_entries: list[MutableMapping[str, Any]],
        policy: str,
        where: str,
    ) -> None:
        """Speech (TTS requests), logs, verdicts and the frontend hold no fragment."""
        if where == "llm_401_body":
            sim.llm.default = HttpError(
                401, body={"error": {"message": ALL_HOLES, "code": "invalid_api_key"}}
            )
        else:
            sim.llm.default = QuotaExceeded(hint=ALL_HOLES[:900])
        session = make_session(sim, max_retry=0)
        g = guard(session, POLICIES[policy]())
        await start(session)
        session.output.audio = CaptureAudioOutput(realtime=False)
        try:
            async with asyncio.timeout(10):
                await session.run(user_input="hi")
        except Exception:
            pass
        async with asyncio.timeout(10):
            await g.wait_closed()
        assert g.verdicts and g.verdicts[0].terminal

        participant = RecordingParticipant()
        for verdict in g.verdicts:
            await FrontendSignal().publish(participant, verdict, closing=True)
        surfaces = {
            "speech": [str((r.json or {}).get("input", "")) for r in sim.requests_for("tts")],
            "logs": [repr(entry) for entry in log_entries],
            "verdicts": [json.dumps(v.as_dict()) for v in g.verdicts],
            "frontend": participant.sent,
        }
        assert surfaces["speech"], "the farewell must have been synthesised"
        assert {name: leaked(texts) for name, texts in surfaces.items()} == {
            name: {} for name in surfaces
        }
