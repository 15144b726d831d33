"""Documented Anthropic error bodies, and the exceptions livekit raises for them.

``build()`` reproduces livekit-plugins-anthropic 1.8.9 without a network: the Anthropic
SDK turns the response into its typed error (``_make_status_error_from_response``, which
keeps the whole JSON as ``e.body``; an SSE ``error`` event goes through
``_make_status_error(f"{body}", body=body, response=<the 200 stream>)``), and
``livekit/plugins/anthropic/llm.py`` re-raises it as
``APIStatusError(e.message, status_code=e.status_code, request_id=e.request_id,
body=e.body) from e``.

Messages marked "paraphrased" are ours: the classifier reads only ``type``,
``details.error_code`` and the two documented message prefixes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_guard._verdict import Category, Kind
from agent_guard.testing import raised
from agent_guard.testing.plugins import ProviderFixture

__all__ = ["API_KEY", "FIXTURES", "LABEL", "Fixture"]

#: A key-shaped secret handed to the SDK: it must never appear in a Verdict.
API_KEY = "sk-ant-api03-AGTEST0123456789abcdefghijklmnopqrstuvwxyzABCDEF-0123456789AA"
LABEL = "livekit.plugins.anthropic.llm.LLM"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixture(ProviderFixture):
    """An LLM failure over HTTP: every Anthropic error has a status and a JSON body."""

    status: int
    body: Mapping[str, Any]
    sse: bool = False
    """Sent as an SSE ``error`` event inside a 200 stream rather than as the response."""
    kind: Kind = Kind.LLM
    label: str = LABEL

    def error(self) -> BaseException:
        """The exception livekit emits for this failure (see the module docstring)."""
        return _build(self)


def _build(fx: Fixture) -> BaseException:
    import anthropic
    import httpx2
    from livekit.agents import APIStatusError

    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    client = anthropic.AsyncAnthropic(api_key=API_KEY, max_retries=0)
    e: anthropic.APIStatusError
    if fx.sse:
        stream = httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, request=request
        )
        e = client._make_status_error(f"{fx.body}", body=fx.body, response=stream)
    else:
        response = httpx2.Response(fx.status, json=fx.body, headers=fx.headers, request=request)
        e = client._make_status_error_from_response(response)
    lk = APIStatusError(e.message, status_code=e.status_code, request_id=e.request_id, body=e.body)
    return raised(lk, cause=e)


def sse_payload(fx: Fixture) -> bytes:
    """The ``text/event-stream`` bytes a mid-stream error arrives as."""
    return f"event: error\ndata: {json.dumps(fx.body)}\n\n".encode()


def _err(type_: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": type_, "message": message, **extra},
        "request_id": "req_011CAGTEST0000000000000001",
    }


_ERRORS_DOC = "https://docs.claude.com/en/api/errors"

FIXTURES: tuple[Fixture, ...] = (
    Fixture(
        id="credit_balance_too_low",
        # Verbatim 400 body in anthropics/claude-quickstarts#229 (and many
        # anthropics/claude-code reports, e.g. #66314, with request_id).
        source="https://github.com/anthropics/claude-quickstarts/issues/229",
        status=400,
        body=_err(
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits.",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="spend_limit_reached",
        # Verbatim 400 body in anthropics/claude-code#38035; the errors page documents the
        # "You have reached your specified [workspace] API usage limits" prefix.
        source="https://github.com/anthropics/claude-code/issues/38035",
        status=400,
        body=_err(
            "invalid_request_error",
            "You have reached your specified API usage limits. You will regain access on "
            "2026-04-01 at 00:00 UTC.",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="enforced_spend_limit_reached",
        # Rate-limits doc: the tier's monthly cap is a 429 rate_limit_error with
        # error.details.error_code "enforced_spend_limit_reached" and no retry-after.
        # Message paraphrased.
        source="https://docs.claude.com/en/api/rate-limits",
        status=429,
        body=_err(
            "rate_limit_error",
            "Your organization has reached its monthly usage limit.",
            details={"error_code": "enforced_spend_limit_reached"},
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="billing_error",
        # "402 billing_error" (errors page; BillingError in the SDK's shared types,
        # @anthropic-ai/sdk resources/shared.d.mts). Message paraphrased.
        source=_ERRORS_DOC,
        status=402,
        body=_err("billing_error", "There is an issue with your billing or payment information."),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="rate_limit_error",
        # "429 - rate_limit_error: Your account has hit a rate limit" (errors page), with
        # the retry-after header the rate-limits doc describes. Message paraphrased.
        source=_ERRORS_DOC,
        status=429,
        body=_err(
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per "
            "minute.",
        ),
        headers={"retry-after": "7"},
        expected=Category.RATE_LIMITED,
        terminal=False,
    ),
    Fixture(
        id="overloaded_error",
        # "529 - overloaded_error: The API is temporarily overloaded" (errors page).
        source=_ERRORS_DOC,
        status=529,
        body=_err("overloaded_error", "Overloaded"),
        expected=Category.OVERLOADED,
        terminal=False,
    ),
    Fixture(
        id="overloaded_midstream",
        # "When receiving a streaming response via SSE, it's possible that an error can occur
        # after returning a 200 response" (errors page): the SDK raises it with status 200.
        source=_ERRORS_DOC,
        status=200,
        body=_err("overloaded_error", "Overloaded"),
        sse=True,
        expected=Category.OVERLOADED,
        terminal=False,
    ),
    Fixture(
        id="authentication_error",
        # "401 - authentication_error: There's an issue with your API key" (errors page);
        # "invalid x-api-key" is the message the API sends.
        source=_ERRORS_DOC,
        status=401,
        body=_err("authentication_error", "invalid x-api-key"),
        expected=Category.AUTH,
        terminal=True,
    ),
    Fixture(
        id="permission_error",
        # "403 - permission_error: Your API key does not have permission to use the
        # specified resource" (errors page).
        source=_ERRORS_DOC,
        status=403,
        body=_err(
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        expected=Category.PERMISSION,
        terminal=True,
    ),
)
