"""Documented Gemini API error bodies, and the exceptions livekit raises for them.

``build()`` reproduces livekit-plugins-google 1.8.9 without a network: the
``google.genai`` SDK turns the response into ``ClientError``/``ServerError``
(``errors.APIError.raise_for_response``, keeping the JSON as ``.details``), and
``livekit/plugins/google/llm.py`` (``beta/gemini_tts.py`` for TTS)
re-raises it as ``APIStatusError("gemini llm: client error", status_code=e.code,
body=f"{e.message} {e.status}", retryable=e.code in {429, 499}) from e``.

livekit-plugins-google itself is not installed for the tests: it pulls the Cloud
Speech/TTS SDKs, and its error path is the few lines above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_guard._verdict import Category, Kind
from agent_guard.testing import raised
from agent_guard.testing.plugins import ProviderFixture

__all__ = ["API_KEY", "FIXTURES", "LLM_LABEL", "TTS_LABEL", "Fixture"]

#: A key-shaped secret handed to the SDK: it must never appear in a Verdict.
API_KEY = "AIzaSyAGTEST0123456789abcdefghijklmnop"
LLM_LABEL = "livekit.plugins.google.llm.LLM"
TTS_LABEL = "livekit.plugins.google.beta.gemini_tts.TTS"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixture(ProviderFixture):
    """A Gemini failure over HTTP (an LLM one unless it says otherwise)."""

    status: int
    body: Mapping[str, Any]
    kind: Kind = Kind.LLM
    label: str = LLM_LABEL

    def error(self) -> BaseException:
        """The exception livekit emits for this failure (see the module docstring)."""
        return _build(self)


def _build(fx: Fixture) -> BaseException:
    import httpx2
    from google.genai import errors
    from livekit.agents import APIStatusError

    what = "tts" if fx.kind is Kind.TTS else "llm"
    request = httpx2.Request(
        "POST",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        headers={"x-goog-api-key": API_KEY},
    )
    response = httpx2.Response(fx.status, json=fx.body, request=request)
    try:
        errors.APIError.raise_for_response(response)
    except errors.APIError as e:
        side = "client" if isinstance(e, errors.ClientError) else "server"
        lk = APIStatusError(
            f"gemini {what}: {side} error",
            status_code=e.code,
            body=f"{e.message} {e.status}",
            retryable=e.code in {429, 499} if side == "client" else True,
        )
        return raised(lk, cause=e)
    raise AssertionError(f"{fx.id}: google.genai raised nothing for {fx.status}")


def _err(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


_FREE_TIER_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"


def _quota_failure(*quota_ids: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": _FREE_TIER_METRIC,
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
            }
            for quota_id in quota_ids
        ],
    }


_HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}
_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)

FIXTURES: tuple[Fixture, ...] = (
    Fixture(
        id="free_tier_per_day",
        # Verbatim (quota metrics aside) from google-gemini/gemini-cli#8437: per-minute AND
        # per-day free-tier violations; the per-day one will not clear today.
        source="https://github.com/google-gemini/gemini-cli/issues/8437",
        status=429,
        body=_err(
            429,
            "RESOURCE_EXHAUSTED",
            _QUOTA_MESSAGE,
            _quota_failure(
                "GenerateContentInputTokensPerModelPerMinute-FreeTier",
                "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            ),
            _HELP,
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="zero_limit_model",
        # continuedev/continue#10062: "Quota exceeded for metric: ..., limit: 0, model:
        # gemini-2.5-pro" - the model has no free tier, so retrying never helps. Details
        # after Help are cut in the report; QuotaFailure/RetryInfo follow #8437's shape.
        source="https://github.com/continuedev/continue/issues/10062",
        status=429,
        body=_err(
            429,
            "RESOURCE_EXHAUSTED",
            _QUOTA_MESSAGE + " \n* Quota exceeded for metric: "
            "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, "
            "model: gemini-2.5-pro\nPlease retry in 20.04466179s.",
            _HELP,
            _quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"},
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="per_minute_quota",
        # A per-minute QuotaFailure with RetryInfo (rate-limits doc; shape from #8437).
        source="https://ai.google.dev/gemini-api/docs/rate-limits",
        status=429,
        body=_err(
            429,
            "RESOURCE_EXHAUSTED",
            _QUOTA_MESSAGE,
            _quota_failure("GenerateRequestsPerMinutePerProjectPerModel"),
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"},
        ),
        expected=Category.RATE_LIMITED,
        terminal=False,
    ),
    Fixture(
        id="vertex_shared_capacity",
        # Vertex AI's 429 under dynamic shared quota: no QuotaFailure, Google's capacity.
        source="https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429",
        status=429,
        body=_err(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource exhausted. Please try again later. Please refer to https://cloud.google.com"
            "/vertex-ai/generative-ai/docs/error-code-429 for more details.",
        ),
        expected=Category.OVERLOADED,
        terminal=False,
    ),
    Fixture(
        id="prepay_credits_depleted",
        # Verbatim from Google's announcement "Depleted prepay credits now return HTTP 402
        # instead of 429" (discuss.ai.google.dev/t/183654).
        source="https://discuss.ai.google.dev/t/api-update-depleted-prepay-credits-now-return-http-402-instead-of-429/183654",
        status=402,
        body=_err(
            402,
            "RESOURCE_EXHAUSTED",
            "Your prepayment credits are depleted. Please go to AI Studio at "
            "https://ai.studio/projects to manage your project and billing. Learn more at "
            "https://ai.google.dev/gemini-api/docs/billing#prepay.",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
    ),
    Fixture(
        id="model_overloaded_tts",
        # "503 UNAVAILABLE: The service may be temporarily overloaded or down" (Gemini
        # troubleshooting guide), raised here through the Gemini TTS wrapper.
        source="https://ai.google.dev/gemini-api/docs/troubleshooting",
        status=503,
        body=_err(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        expected=Category.OVERLOADED,
        terminal=False,
        kind=Kind.TTS,
        label=TTS_LABEL,
    ),
    Fixture(
        id="server_cancelled_499",
        # Verbatim from google-gemini/gemini-cli#20309 ("It happens when there is a heavy
        # usage"): a Google-side cancel, reason backendError.
        source="https://github.com/google-gemini/gemini-cli/issues/20309",
        status=499,
        body={
            "error": {
                "code": 499,
                "message": "The operation was cancelled.",
                "errors": [
                    {
                        "message": "The operation was cancelled.",
                        "domain": "global",
                        "reason": "backendError",
                    }
                ],
                "status": "CANCELLED",
            }
        },
        expected=Category.OVERLOADED,
        terminal=False,
    ),
    Fixture(
        id="api_key_invalid",
        # Verbatim from continuedev/continue#10077: Gemini answers a bad key with 400.
        source="https://github.com/continuedev/continue/issues/10077",
        status=400,
        body=_err(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key.",
            },
        ),
        expected=Category.AUTH,
        terminal=True,
    ),
)
