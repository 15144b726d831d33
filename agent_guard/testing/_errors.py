"""Provider errors built exactly the way production builds them, without a server.

For unit tests of classifiers and hooks, and for benchmarks. An HTTP failure goes through
the real openai SDK (``_make_status_error_from_response`` narrows ``body`` to its
``"error"`` value, a bare string for the LiveKit gateway) and is re-raised as
``livekit/agents/inference/llm.py`` ``_run`` does, ``APIStatusError(...) from None``, so
the full JSON and headers survive only on ``__context__``: exactly what the guard has to
dig out. A websocket refusal is a real ``aiohttp.WSServerHandshakeError`` wrapped as
livekit's inference STT/TTS wrap it. For end-to-end tests, prefer :class:`GatewaySimulator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn, TypeVar

import aiohttp
import httpx2
import openai
from livekit.agents import APIConnectionError, APIStatusError
from livekit.agents._exceptions import create_api_error_from_http
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = [
    "gateway_quota_body",
    "openai_status_error",
    "openai_stream_error",
    "raised",
    "ws_handshake_error",
]

E = TypeVar("E", bound=BaseException)

_REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
_CLIENT = openai.AsyncOpenAI(api_key="sk-x", base_url="http://127.0.0.1/v1", max_retries=0)


def raised(error: E, *, cause: BaseException | None = None, hide_cause: bool = False) -> E:
    """``error`` once raised, the way livekit raises it.

    With ``cause``, ``error`` is raised inside ``except cause:`` as ``raise error from cause``,
    or ``raise error from None`` when ``hide_cause`` (the cause then stays on
    ``__context__``, where classifiers still find it). Without, ``error`` is raised alone
    (``from None`` when ``hide_cause``).
    """
    try:
        if cause is None:
            _raise(error, hide_cause=hide_cause)
        try:
            raise cause
        except BaseException:
            _raise(error, cause=cause, hide_cause=hide_cause)
    except BaseException as outer:
        if outer is not error:
            raise
    return error


def _raise(
    error: BaseException, *, cause: BaseException | None = None, hide_cause: bool
) -> NoReturn:
    if hide_cause:
        raise error from None
    if cause is not None:
        raise error from cause
    raise error


def openai_status_error(
    status: int,
    *,
    json: object = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    retryable: bool = True,
    url: str = "http://127.0.0.1/v1/chat/completions",
) -> APIStatusError:
    """An HTTP ``status`` error as livekit's openai/inference LLM emits it.

    ``json`` (or raw ``content``) is the response body, ``headers`` its headers, ``url``
    the endpoint (an OpenAI-compatible host's, say).
    """
    request = _REQUEST if url == str(_REQUEST.url) else httpx2.Request("POST", url)
    response = httpx2.Response(status, json=json, content=content, headers=headers, request=request)
    try:
        # openai/_base_client.py: raise_for_status, then the SDK error from None.
        response.raise_for_status()
    except httpx2.HTTPStatusError as err:
        try:
            raise _CLIENT._make_status_error_from_response(err.response) from None
        except openai.APIStatusError as e:
            # livekit/agents/inference/llm.py _run: `from None`, the SDK error on __context__.
            sdk_error = e
    else:
        raise ValueError(f"status {status} is not an HTTP error")
    wrapped = APIStatusError(
        sdk_error.message,
        status_code=sdk_error.status_code,
        request_id=sdk_error.request_id,
        body=sdk_error.body,
        retryable=retryable,
    )
    return raised(wrapped, cause=sdk_error, hide_cause=True)


def openai_stream_error(
    body: Mapping[str, object], *, retryable: bool = False
) -> APIConnectionError:
    """An SSE ``{"error": ...}`` event mid-stream, as livekit emits it.

    The SDK raises ``openai.APIError`` with no status (openai/_streaming.py); livekit's
    ``except Exception`` turns it into ``APIConnectionError ... from e``.
    """
    sse = openai.APIError("An error occurred during streaming", _REQUEST, body=dict(body))
    return raised(APIConnectionError(retryable=retryable), cause=sse)


def ws_handshake_error(
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
    url: str = "wss://agent-gateway.livekit.cloud/v1/stt",
) -> APIStatusError:
    """A websocket handshake refused with ``status``, as livekit's inference STT/TTS raise it.

    aiohttp keeps only the status and the response ``headers`` (no body); livekit
    re-raises ``create_api_error_from_http(e.message, status=e.status) from e``
    (``livekit/agents/inference/stt.py``, ``tts.py``).
    """
    info = aiohttp.RequestInfo(URL(url), "GET", CIMultiDictProxy(CIMultiDict()), URL(url))
    handshake = aiohttp.WSServerHandshakeError(
        info,
        (),
        status=status,
        message="Invalid response status",
        headers=CIMultiDictProxy(CIMultiDict(headers or {})),
    )
    error = create_api_error_from_http(handshake.message, status=handshake.status)
    return raised(error, cause=handshake)


def gateway_quota_body(
    category: object = "MaxGatewayCredits", **fields: object
) -> dict[str, object]:
    """A LiveKit Inference gateway quota body (agent-gateway ``QuotaExceededResponse``).

    ``fields`` override or add keys (``hint``, ``quota_type``, ``remaining_limit``, ...).
    """
    body: dict[str, object] = {
        "type": "inference_quota_exceeded",
        "error": f"LLM token credit quota exceeded, category: {category}",
        "quota_type": "llm",
        "category": category,
        "hint": "Wait for the next billing cycle or upgrade your plan.",
        "remaining_limit": "0",
    }
    body.update(fields)
    return body
