"""Documented ElevenLabs error bodies, and the exceptions livekit raises for them.

Each ``build`` reproduces one livekit-plugins-elevenlabs 1.8.9 error path (file:line in
the fixture) with the real livekit and aiohttp exception types, without a network.
Messages marked "paraphrased" are ours: the classifier reads ``detail.status`` and the
error tokens only.
"""

from __future__ import annotations

from typing import Any

from agent_guard._verdict import Category, Kind
from agent_guard.testing import raised
from agent_guard.testing.plugins import ProviderFixture

__all__ = ["API_KEY", "FIXTURES", "STT_LABEL", "TTS_LABEL", "Fixture"]

#: A key-shaped secret sent as ``xi-api-key``: it must never appear in a Verdict.
API_KEY = "sk_AGTEST0123456789abcdef0123456789abcdef0123456789"
STT_LABEL = "livekit.plugins.elevenlabs.stt.STT"
TTS_LABEL = "livekit.plugins.elevenlabs.tts.TTS"
_URL = "https://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM"

#: Each fixture names its ``build``: one of livekit's paths below.
Fixture = ProviderFixture


def _stt_recognize(fx: Fixture) -> BaseException:
    # stt.py: the body is parsed, detail.message becomes the message.
    from livekit.agents import APIStatusError

    assert fx.status is not None and fx.body is not None
    detail = fx.body["detail"]
    message = str(detail.get("message", detail))
    return raised(
        APIStatusError(message=message, status_code=fx.status, request_id=None, body=dict(fx.body))
    )


def _tts_http(fx: Fixture) -> BaseException:
    # tts.py: resp.raise_for_status() reads no body; livekit keeps status/reason.
    import aiohttp
    from livekit.agents import APIStatusError
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    assert fx.status is not None
    info = aiohttp.RequestInfo(
        URL(_URL), "POST", CIMultiDictProxy(CIMultiDict({"xi-api-key": API_KEY})), URL(_URL)
    )
    e = aiohttp.ClientResponseError(info, (), status=fx.status, message="Unauthorized")
    lk = APIStatusError(message=e.message, status_code=e.status, request_id=None, body=None)
    return raised(lk, cause=e)


def _tts_ws_frame(fx: Fixture) -> BaseException:
    # tts.py sets APIError(message=data["error"]) on the context's waiter, and
    # SynthesizeStream._run re-raises it as APIStatusError("Could not synthesize").
    from livekit.agents import APIError, APIStatusError

    assert fx.body is not None
    return raised(APIStatusError("Could not synthesize"), cause=APIError(message=fx.body["error"]))


def _stt_realtime(fx: Fixture) -> BaseException:
    # stt.py: only the message_type survives, in the message.
    from livekit.agents import APIConnectionError

    assert fx.body is not None
    message_type = fx.body["message_type"]
    error = APIConnectionError(
        f"ElevenLabs STT error [{message_type}]",
        retryable=message_type not in ("auth_error", "quota_exceeded", "input_error"),
    )
    return raised(error, hide_cause=True)


def _tts_ws_close(fx: Fixture) -> BaseException:
    # tts.py _recv_loop: a CLOSE while contexts are open; the reason is not kept.
    from livekit.agents import APIStatusError

    assert fx.body is not None
    return raised(
        APIStatusError(
            "ElevenLabs websocket connection closed unexpectedly",
            status_code=fx.body["close_code"],
        )
    )


def _stt_ws_close(fx: Fixture) -> BaseException:
    # stt.py recv_task: a CLOSE message (real aiohttp WSMessage), the reason kept in the body.
    import aiohttp
    from livekit.agents import APIStatusError

    assert fx.body is not None
    msg = aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, fx.body["close_code"], fx.body["reason"])
    return raised(
        APIStatusError(
            message="ElevenLabs STT connection closed unexpectedly",
            status_code=msg.data,
            body=f"{msg.data=} {msg.extra=}",
        )
    )


def _detail(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


_QUOTA_BODY = _detail(
    "quota_exceeded",
    "This request exceeds your quota of 10000. You have 0 credits remaining, while 91 "
    "credits are required for this request.",
)

FIXTURES: tuple[Fixture, ...] = (
    Fixture(
        id="quota_exceeded_http",
        # Verbatim 401 body in home-assistant/core#160414 (and ElevenLabs' help article
        # "API - Error Code 400 or 401": quota_exceeded).
        source="https://github.com/home-assistant/core/issues/160414",
        kind=Kind.STT,
        label=STT_LABEL,
        status=401,
        body=_QUOTA_BODY,
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_stt_recognize,
    ),
    Fixture(
        id="invalid_api_key_http",
        # Help article "API - Error Code 400 or 401" (example 401 detail: invalid_api_key).
        source="https://help.elevenlabs.io/hc/en-us/articles/19572237925521",
        kind=Kind.STT,
        label=STT_LABEL,
        status=401,
        body=_detail("invalid_api_key", "Invalid API key"),
        expected=Category.AUTH,
        terminal=True,
        build=_stt_recognize,
    ),
    Fixture(
        id="too_many_concurrent_requests",
        # 429 detail.status too_many_concurrent_requests (ElevenLabs' concurrency/429
        # guidance, elevenlabs.io/blog/ai-rate-limiting-for-voice). Message paraphrased.
        source="https://elevenlabs.io/blog/ai-rate-limiting-for-voice",
        kind=Kind.STT,
        label=STT_LABEL,
        status=429,
        body=_detail(
            "too_many_concurrent_requests",
            "You have too many concurrent requests for your plan.",
        ),
        expected=Category.RATE_LIMITED,
        terminal=False,
        build=_stt_recognize,
    ),
    Fixture(
        id="system_busy",
        # 429 detail.status system_busy: ElevenLabs-side load. Message paraphrased.
        source="https://elevenlabs.io/blog/ai-rate-limiting-for-voice",
        kind=Kind.STT,
        label=STT_LABEL,
        status=429,
        body=_detail("system_busy", "The system is experiencing heavy traffic, please try again."),
        expected=Category.OVERLOADED,
        terminal=False,
        build=_stt_recognize,
    ),
    Fixture(
        id="tts_http_401_bodyless",
        # The quota body above, as livekit's HTTP TTS keeps it: status and reason only.
        source="https://github.com/home-assistant/core/issues/160414",
        kind=Kind.TTS,
        label=TTS_LABEL,
        status=401,
        body=_QUOTA_BODY,
        expected=Category.AUTH,
        terminal=True,
        build=_tts_http,
    ),
    Fixture(
        id="tts_ws_quota_frame",
        # A stream-input error frame: {"message", "error": <token>, "code": 1008}, shape
        # quoted in elevenlabs/elevenlabs-python#167; token and message here for quota.
        source="https://github.com/elevenlabs/elevenlabs-python/issues/167",
        kind=Kind.TTS,
        label=TTS_LABEL,
        status=None,
        body={
            "message": "This request exceeds your quota. You have 0 credits remaining.",
            "error": "quota_exceeded",
            "code": 1008,
            "contextId": "ctx-1",
        },
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_tts_ws_frame,
    ),
    Fixture(
        id="stt_realtime_quota",
        # Verbatim realtime (Scribe) frame in elevenlabs/packages#354.
        source="https://github.com/elevenlabs/packages/issues/354",
        kind=Kind.STT,
        label=STT_LABEL,
        status=None,
        body={"message_type": "quota_exceeded", "error": "You have exceeded your quota."},
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_stt_realtime,
    ),
    Fixture(
        id="stt_realtime_auth_error",
        # message_type auth_error, one of the types livekit's stt.py lists.
        source="https://github.com/elevenlabs/packages/issues/354",
        kind=Kind.STT,
        label=STT_LABEL,
        status=None,
        body={"message_type": "auth_error", "error": "Invalid API key."},
        expected=Category.AUTH,
        terminal=True,
        build=_stt_realtime,
    ),
    Fixture(
        id="tts_ws_close_1008_contexts",
        # Verbatim error in livekit/agents#5844: 1008 after more than 5 open contexts (the
        # reason, "Maximum simultaneous contexts ... exceeded (5)", pipecat#4114, is
        # dropped by livekit): transient.
        source="https://github.com/livekit/agents/issues/5844",
        kind=Kind.TTS,
        label=TTS_LABEL,
        status=None,
        body={"close_code": 1008},
        expected=Category.CONNECTION,
        terminal=False,
        build=_tts_ws_close,
    ),
    Fixture(
        id="stt_ws_close_quota",
        # The quota termination captured in elevenlabs/packages#911: "received 1002
        # (protocol error) This request exceeds your quota limit."
        source="https://github.com/elevenlabs/packages/issues/911",
        kind=Kind.STT,
        label=STT_LABEL,
        status=None,
        body={"close_code": 1002, "reason": "This request exceeds your quota limit."},
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_stt_ws_close,
    ),
    Fixture(
        id="stt_ws_close_1008_input_timeout",
        # The 1008 reason quoted in elevenlabs/elevenlabs-docs#426: an input timeout.
        source="https://github.com/elevenlabs/elevenlabs-docs/issues/426",
        kind=Kind.STT,
        label=STT_LABEL,
        status=None,
        body={
            "close_code": 1008,
            "reason": "Have not received a new text input within the timeout of 20 seconds.",
        },
        expected=Category.CONNECTION,
        terminal=False,
        build=_stt_ws_close,
    ),
)
