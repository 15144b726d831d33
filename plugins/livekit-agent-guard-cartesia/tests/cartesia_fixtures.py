"""Cartesia error events and statuses, and the exceptions livekit raises for them.

The error object's shape is from https://docs.cartesia.ai/use-the-api/api-errors
(verbatim for ``concurrency_limited``). Cartesia's page shows no 402 example: the 402
event below keeps the documented shape with ``error_code`` null (documented as
nullable) and our own title/message. Each ``build`` follows one
livekit-plugins-cartesia 1.8.9 path (file:line on the fixture).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_guard._verdict import Category, Kind
from agent_guard.testing import raised
from agent_guard.testing.plugins import ProviderFixture

__all__ = ["API_KEY", "FIXTURES", "TTS_LABEL", "Fixture"]

#: A key-shaped secret sent as ``X-API-Key``: it must never appear in a Verdict.
API_KEY = "sk_car_AGTEST0123456789abcdefghijklmnopqrstuv"
TTS_LABEL = "livekit.plugins.cartesia.tts.TTS"
_SOURCE = "https://docs.cartesia.ai/use-the-api/api-errors"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixture(ProviderFixture):
    """A Cartesia TTS failure; each names its ``build``: one of livekit's paths below."""

    kind: Kind = Kind.TTS
    label: str = TTS_LABEL


def _ws_event(fx: Fixture) -> BaseException:
    # tts.py: the whole event dict, formatted into the message.
    from livekit.agents import APIError

    return raised(APIError(f"Cartesia returned error: {fx.body}"))


def _http(fx: Fixture) -> BaseException:
    # tts.py (/tts/bytes; the handshake is the same with
    # WSServerHandshakeError): raise_for_status() reads no body, `from None` hides the
    # aiohttp error whose RequestInfo holds the X-API-Key header.
    import aiohttp
    from livekit.agents import APIStatusError
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    assert fx.status is not None
    url = URL("https://api.cartesia.ai/tts/bytes")
    info = aiohttp.RequestInfo(
        url, "POST", CIMultiDictProxy(CIMultiDict({"X-API-Key": API_KEY})), url
    )
    reasons = {401: "Unauthorized", 402: "Payment Required", 429: "Too Many Requests"}
    e = aiohttp.ClientResponseError(info, (), status=fx.status, message=reasons[fx.status])
    lk = APIStatusError(message=e.message, status_code=e.status, request_id=None, body=None)
    return raised(lk, cause=e, hide_cause=True)


FIXTURES: tuple[Fixture, ...] = (
    Fixture(
        id="ws_concurrency_limited",
        # Verbatim "WebSocket error event" example of the API errors page.
        source=_SOURCE,
        status=None,
        body={
            "type": "error",
            "done": True,
            "status_code": 429,
            "error_code": "concurrency_limited",
            "title": "Too many concurrent requests",
            "message": "You have exceeded your plan's concurrency limit.",
            "request_id": "550e8400-e29b-41d4-a716-446655440000:happy-monkeys-fly:8a0f5f3a",
            "context_id": "happy-monkeys-fly",
        },
        expected=Category.RATE_LIMITED,
        terminal=False,
        build=_ws_event,
    ),
    Fixture(
        id="ws_payment_required",
        # Documented event shape; status 402, error_code null, title/message ours.
        source=_SOURCE,
        status=None,
        body={
            "type": "error",
            "done": True,
            "status_code": 402,
            "error_code": None,
            "title": "Payment Required",
            "message": "Your plan has run out of credits.",
            "request_id": "550e8400-e29b-41d4-a716-446655440001",
            "context_id": "ctx-1",
        },
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_ws_event,
    ),
    Fixture(
        id="http_402",
        # /tts/bytes answering 402: livekit keeps only status and reason.
        source=_SOURCE,
        status=402,
        body=None,
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="http_429",
        source=_SOURCE,
        status=429,
        body=None,
        expected=Category.RATE_LIMITED,
        terminal=False,
        build=_http,
    ),
    Fixture(
        id="http_401_generic",
        # Not claimed: the generic rules answer AUTH (provider named from the label).
        source=_SOURCE,
        status=401,
        body=None,
        expected=Category.AUTH,
        terminal=True,
        build=_http,
    ),
)
