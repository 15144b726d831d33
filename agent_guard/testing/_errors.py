"""Provider errors built exactly the way production builds them, without a server.

For unit tests and benchmarks of classifiers and hooks. An HTTP failure goes through the
real openai SDK (``_make_status_error_from_response`` narrows ``body`` to its
``"error"`` value, a bare string for the LiveKit gateway) and is re-raised as
``livekit/agents/inference/llm.py`` ``_run`` does, ``APIStatusError(...) from None``, so
the full JSON and headers survive only on ``__context__``: exactly what the guard has to
dig out. For end-to-end tests, prefer :class:`GatewaySimulator`.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx2
import openai
from livekit.agents import APIConnectionError, APIStatusError

__all__ = ["openai_status_error", "openai_stream_error"]

_REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
_CLIENT = openai.AsyncOpenAI(api_key="sk-x", base_url="http://127.0.0.1/v1", max_retries=0)


def openai_status_error(
    status: int,
    *,
    json: object = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    retryable: bool = True,
) -> APIStatusError:
    """An HTTP ``status`` error as livekit's openai/inference LLM emits it.

    ``json`` (or raw ``content``) is the response body, ``headers`` its headers.
    """
    response = httpx2.Response(status, json=json, content=content, headers=headers,
                               request=_REQUEST)  # fmt: skip
    try:
        try:
            # openai/_base_client.py: raise_for_status, then the SDK error from None.
            try:
                response.raise_for_status()
            except httpx2.HTTPStatusError as err:
                raise _CLIENT._make_status_error_from_response(err.response) from None
        except openai.APIStatusError as e:
            raise APIStatusError(
                e.message,
                status_code=e.status_code,
                request_id=e.request_id,
                body=e.body,
                retryable=retryable,
            ) from None
    except APIStatusError as wrapped:
        return wrapped
    raise ValueError(f"status {status} is not an HTTP error")


def openai_stream_error(
    body: Mapping[str, object], *, retryable: bool = False
) -> APIConnectionError:
    """An SSE ``{"error": ...}`` event mid-stream, as livekit emits it.

    The SDK raises ``openai.APIError`` with no status (openai/_streaming.py); livekit's
    ``except Exception`` turns it into ``APIConnectionError ... from e``.
    """
    sse = openai.APIError("An error occurred during streaming", _REQUEST, body=dict(body))
    try:
        try:
            raise sse
        except openai.APIError as e:
            raise APIConnectionError(retryable=retryable) from e
    except APIConnectionError as wrapped:
        return wrapped
