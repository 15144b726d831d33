"""Deepgram failures as livekit-plugins-deepgram 1.8.9 raises them.

The bodies are Deepgram's documented ones (https://developers.deepgram.com/docs/errors:
``{"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": ...}``,
``402 ASR_PAYMENT_REQUIRED``, ``429 TOO_MANY_REQUESTS``), but livekit drops them before
the error event, so ``build`` raises what livekit keeps: status and aiohttp's message.
The 402 on the listen websocket handshake is the failure reported in
deepgram/deepgram-js-sdk#353 (``statusCode: 402``, ``'Payment Required'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent_guard._verdict import Category, Kind
from agent_guard.testing import raised
from agent_guard.testing.plugins import ProviderFixture

if TYPE_CHECKING:
    from aiohttp import ClientResponseError

__all__ = ["API_KEY", "FIXTURES", "STT_LABEL", "TTS_LABEL", "Fixture"]

#: A key-shaped secret sent as ``Authorization: Token ...``: never in a Verdict.
API_KEY = "0123456789abcdef0123456789abcdefAGTEST00"
STT_LABEL = "livekit.plugins.deepgram.stt.STT"
TTS_LABEL = "livekit.plugins.deepgram.tts.TTS"
_DOC = "https://developers.deepgram.com/docs/errors"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixture(ProviderFixture):
    """A Deepgram failure (STT unless it says otherwise); each names its ``build``."""

    kind: Kind = Kind.STT
    label: str = STT_LABEL


def _request_info(url: str) -> Any:
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Token {API_KEY}"}))
    return aiohttp.RequestInfo(URL(url), "GET", headers, URL(url))


def _wrapped(e: ClientResponseError) -> BaseException:
    # stt.py and tts.py alike: `from None`, because RequestInfo carries
    # the Authorization header.
    from livekit.agents import APIStatusError

    lk = APIStatusError(message=e.message, status_code=e.status, request_id=None, body=None)
    return raised(lk, cause=e, hide_cause=True)


def _handshake_error(fx: Fixture) -> Any:
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy

    assert fx.status is not None
    info = _request_info("wss://api.deepgram.com/v1/listen?model=nova-3")
    headers = CIMultiDictProxy(CIMultiDict(fx.headers))
    return aiohttp.WSServerHandshakeError(
        info, (), status=fx.status, message="Invalid response status", headers=headers
    )


def _ws_handshake(fx: Fixture) -> BaseException:
    # stt.py (_connect_ws): the listen websocket's handshake fails, re-raised `from None`.
    return _wrapped(_handshake_error(fx))


def _raw_handshake(fx: Fixture) -> BaseException:
    # Older plugin versions let the aiohttp error itself reach the session
    # (livekit/agents#3519: STTError(error=WSServerHandshakeError(...))).
    error: BaseException = _handshake_error(fx)
    return raised(error)


def _tts_http(fx: Fixture) -> BaseException:
    # tts.py: resp.raise_for_status(), then the same wrapping, `from None`.
    import aiohttp

    assert fx.status is not None
    info = _request_info("https://api.deepgram.com/v1/speak?model=aura-2-andromeda-en")
    return _wrapped(
        aiohttp.ClientResponseError(info, (), status=fx.status, message="Payment Required")
    )


def _prerecorded(fx: Fixture) -> BaseException:
    # stt.py: the status is never checked; the error body is read as a transcript
    # (prerecorded_transcription_to_speech_event: data["metadata"]) and KeyErrors.
    from livekit.agents import APIConnectionError

    assert fx.body is not None
    try:
        fx.body["metadata"]
    except KeyError as e:
        return raised(APIConnectionError(), cause=e)
    raise AssertionError("the documented body has no transcript")


_PAYMENT = {
    "err_code": "ASR_PAYMENT_REQUIRED",
    # err_code as documented; err_msg paraphrased.
    "err_msg": "Project does not have enough credits for an ASR request.",
    "request_id": "uuid",
}

FIXTURES: tuple[Fixture, ...] = (
    Fixture(
        id="listen_ws_402",
        source="https://github.com/deepgram/deepgram-js-sdk/issues/353",
        status=402,
        body=_PAYMENT,
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_ws_handshake,
    ),
    Fixture(
        id="listen_ws_401",
        source=_DOC,
        status=401,
        body={"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "uuid"},
        expected=Category.AUTH,
        terminal=True,
        build=_ws_handshake,
    ),
    Fixture(
        id="listen_ws_429",
        source=_DOC,
        status=429,
        body={
            "err_code": "TOO_MANY_REQUESTS",
            "err_msg": "Too many requests.",
            "request_id": "uuid",
        },
        expected=Category.RATE_LIMITED,
        terminal=False,
        build=_ws_handshake,
    ),
    Fixture(
        id="speak_http_402",
        source=_DOC,
        status=402,
        body=_PAYMENT,
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_tts_http,
        kind=Kind.TTS,
        label=TTS_LABEL,
    ),
    Fixture(
        id="prerecorded_402_lost",
        # The upstream gap: the 402 reaches the guard as a bare connection error.
        source=_DOC,
        status=None,
        body=_PAYMENT,
        expected=Category.CONNECTION,
        terminal=False,
        build=_prerecorded,
    ),
    Fixture(
        id="listen_ws_402_dg_error",
        # The 402 of deepgram-js-sdk#353, with the dg-error header Deepgram's own examples
        # read (deepgram-devs/BackgroundFiltering test.py); the header's text is ours.
        source="https://github.com/deepgram/deepgram-js-sdk/issues/353",
        status=402,
        body=_PAYMENT,
        headers={"dg-error": "Insufficient credits for this request", "dg-request-id": "uuid"},
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_ws_handshake,
    ),
    Fixture(
        id="listen_ws_raw_handshake_401",
        source="https://github.com/livekit/agents/issues/3519",
        status=401,
        body=None,
        expected=Category.AUTH,
        terminal=True,
        build=_raw_handshake,
    ),
)
