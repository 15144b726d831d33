"""Documented OpenAI error bodies, and the exceptions livekit raises for them.

Each fixture cites where its body comes from. Where OpenAI documents only the ``code``
and ``type`` (its error-codes guide shows no verbatim JSON for the billing codes), the
``message`` is a paraphrase and says so: the classifier never reads it.

``build()`` reproduces what livekit-plugins-openai 1.8.9 raises, without a network:

* HTTP: the OpenAI SDK turns the response into ``openai.RateLimitError`` & co.
  (``_make_status_error_from_response``, narrowing ``body`` to the ``"error"`` value),
  then ``livekit/agents/inference/llm.py`` re-raises it as
  ``APIStatusError(e.message, status_code=..., request_id=..., body=e.body) from None``
  (``from None`` hides the cause but keeps ``__context__``, where the full JSON lives).
* Realtime: ``livekit/agents/llm/_realtime/openai.py`` builds the server event with
  ``RealtimeErrorEvent.construct(**event)`` (:1277) and, for a fatal code, raises
  ``APIError(message=f"{provider_label} returned an error", body=event.error,
  retryable=False)`` (``_handle_error``, :2436-2484); a failed ``response.done`` raises
  ``APIError(message=f"{provider_label} response failed with error type: {type}",
  body=status_details.error, retryable=False)`` (``_handle_response_done``, :2386-2408).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_guard._verdict import Category, Kind
from agent_guard.testing import raised
from agent_guard.testing.plugins import ProviderFixture

__all__ = ["API_KEY", "FIXTURES", "LLM_LABEL", "REALTIME_LABEL", "Fixture"]

#: A key-shaped secret handed to the SDK: it must never appear in a Verdict.
API_KEY = "sk-proj-AGTEST0123456789abcdefghijklmnopqrstuvwxyzAB"
LLM_LABEL = "livekit.plugins.openai.llm.LLM"
REALTIME_LABEL = "livekit.plugins.openai.realtime.realtime_model.RealtimeModel"
_REALTIME_PROVIDER = "OpenAI Realtime API"  # RealtimeSession._provider_label (:572)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixture(ProviderFixture):
    """An OpenAI(-compatible) failure; each names its ``build``: HTTP or a Realtime path."""

    url: str = "https://api.openai.com/v1/chat/completions"
    """The endpoint: OpenAI's, or an OpenAI-compatible host's (``openai.LLM(base_url=...)``)."""
    kind: Kind = Kind.LLM
    label: str = LLM_LABEL


def _http(fx: Fixture) -> BaseException:
    import httpx2
    import openai
    from livekit.agents import APIStatusError

    assert fx.status is not None
    request = httpx2.Request("POST", fx.url)
    response = httpx2.Response(fx.status, json=fx.body, headers=fx.headers, request=request)
    client = openai.AsyncOpenAI(api_key=API_KEY, max_retries=0)
    e = client._make_status_error_from_response(response)
    lk = APIStatusError(e.message, status_code=e.status_code, request_id=e.request_id, body=e.body)
    return raised(lk, cause=e, hide_cause=True)


def _realtime_error_event(fx: Fixture) -> BaseException:
    from livekit.agents import APIError
    from openai.types.realtime import RealtimeErrorEvent

    assert fx.body is not None
    event = RealtimeErrorEvent.construct(**fx.body)
    message = f"{_REALTIME_PROVIDER} returned an error"
    return raised(APIError(message=message, body=event.error, retryable=False))


def _realtime_response_failed(fx: Fixture) -> BaseException:
    from livekit.agents import APIError
    from openai.types.realtime import ResponseDoneEvent

    assert fx.body is not None
    event = ResponseDoneEvent.construct(**fx.body)
    details = event.response.status_details
    assert details is not None and details.error is not None
    message = f"{_REALTIME_PROVIDER} response failed with error type: {details.error.type}"
    return raised(APIError(message=message, body=details.error, retryable=False))


def _err(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)

FIXTURES: tuple[Fixture, ...] = (
    Fixture(
        id="insufficient_quota",
        # Verbatim body quoted in github.com/mattvr/ShellGPT/issues/23; status and meaning:
        # https://developers.openai.com/api/docs/guides/error-codes ("429 - You exceeded
        # your current quota").
        source="https://github.com/mattvr/ShellGPT/issues/23",
        kind=Kind.LLM,
        label=LLM_LABEL,
        status=429,
        body=_err(_QUOTA_MESSAGE, "insufficient_quota", "insufficient_quota"),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="credit_balance_exhausted",
        # Code and type documented at developers.openai.com/api/docs/guides/error-codes
        # ("429 - Credit balance exhausted", type may stay insufficient_quota);
        # message paraphrased.
        source="https://developers.openai.com/api/docs/guides/error-codes",
        kind=Kind.LLM,
        label=LLM_LABEL,
        status=429,
        body=_err(
            "Your organization has no prepaid credits remaining.",
            "insufficient_quota",
            "credit_balance_exhausted",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="project_spend_limit_exceeded",
        # "affected API requests return a 429 error with the organization_spend_limit_exceeded
        # or project_spend_limit_exceeded code"; message paraphrased.
        source="https://developers.openai.com/api/docs/guides/spend-limits",
        kind=Kind.LLM,
        label=LLM_LABEL,
        status=429,
        body=_err(
            "Your project has reached its monthly spend limit.",
            "insufficient_quota",
            "project_spend_limit_exceeded",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="billing_hard_limit_reached",
        # The legacy hard-limit code; livekit treats it as fatal in _FATAL_ERROR_CODES
        # (livekit/agents/llm/_realtime/openai.py). Message paraphrased.
        source="https://developers.openai.com/api/docs/guides/error-codes",
        kind=Kind.LLM,
        label=LLM_LABEL,
        status=429,
        body=_err(
            "Billing hard limit has been reached",
            "invalid_request_error",
            "billing_hard_limit_reached",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="rate_limit_exceeded",
        # Shape and wording of OpenAI's "Rate limit reached for requests" 429
        # (developers.openai.com/api/docs/guides/error-codes, rate-limits guide).
        source="https://developers.openai.com/api/docs/guides/rate-limits",
        kind=Kind.LLM,
        label=LLM_LABEL,
        status=429,
        body=_err(
            "Rate limit reached for gpt-4o-mini in organization org-abc123 on requests per min "
            "(RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
            "requests",
            "rate_limit_exceeded",
        ),
        headers={"retry-after": "20", "x-ratelimit-remaining-requests": "0"},
        expected=Category.RATE_LIMITED,
        terminal=False,
        build=_http,
    ),
    Fixture(
        id="slow_down",
        # "429 - Slow down: type rate_limit_error, code slow_down" (error-codes guide);
        # message paraphrased.
        source="https://developers.openai.com/api/docs/guides/error-codes",
        kind=Kind.LLM,
        label=LLM_LABEL,
        status=429,
        body=_err("Please reduce the rate of your requests.", "rate_limit_error", "slow_down"),
        expected=Category.RATE_LIMITED,
        terminal=False,
        build=_http,
    ),
    Fixture(
        id="invalid_api_key",
        # "401 - Incorrect API key provided" (error-codes guide); OpenAI echoes a masked key.
        source="https://developers.openai.com/api/docs/guides/error-codes",
        kind=Kind.LLM,
        label=LLM_LABEL,
        status=401,
        body=_err(
            "Incorrect API key provided: sk-proj-********************************wxAB. You can "
            "find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        expected=Category.AUTH,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="server_is_overloaded",
        # "503 - Slow down / server overloaded: code server_is_overloaded" (error-codes
        # guide); message paraphrased.
        source="https://developers.openai.com/api/docs/guides/error-codes",
        kind=Kind.LLM,
        label=LLM_LABEL,
        status=503,
        body=_err(
            "Our servers are currently overloaded. Please try again later.",
            "service_unavailable_error",
            "server_is_overloaded",
        ),
        expected=Category.OVERLOADED,
        terminal=False,
        build=_http,
    ),
    Fixture(
        id="realtime_insufficient_quota",
        # The production capture in livekit/agents#6352: RealtimeError(message='You exceeded
        # your current quota, ...', type='insufficient_quota', code='insufficient_quota').
        source="https://github.com/livekit/agents/pull/6352",
        kind=Kind.REALTIME,
        label=REALTIME_LABEL,
        status=None,
        body={
            "type": "error",
            "event_id": "event_quota",
            "error": {
                "message": _QUOTA_MESSAGE,
                "type": "insufficient_quota",
                "code": "insufficient_quota",
                "param": None,
                "event_id": None,
            },
        },
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_realtime_error_event,
    ),
    Fixture(
        id="realtime_response_failed_billing",
        # A failed response.done whose status_details.error carries a fatal code: the second
        # path into _FATAL_ERROR_CODES (openai.py). Shape per the Realtime API
        # reference for response.done; message paraphrased.
        source="https://platform.openai.com/docs/api-reference/realtime-server-events/response/done",
        kind=Kind.REALTIME,
        label=REALTIME_LABEL,
        status=None,
        body={
            "type": "response.done",
            "event_id": "event_done",
            "response": {
                "id": "resp_1",
                "object": "realtime.response",
                "status": "failed",
                "status_details": {
                    "type": "failed",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "billing_hard_limit_reached",
                    },
                },
                "output": [],
            },
        },
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_realtime_response_failed,
    ),
    Fixture(
        id="organization_spend_limit_exceeded",
        # Spend-limits guide: 429 with organization_spend_limit_exceeded; message paraphrased.
        source="https://developers.openai.com/api/docs/guides/spend-limits",
        status=429,
        body=_err(
            "Your organization has reached its monthly spend limit.",
            "insufficient_quota",
            "organization_spend_limit_exceeded",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="organization_usage_limit_exceeded",
        # Error-codes guide (usage tier limit); message paraphrased.
        source="https://developers.openai.com/api/docs/guides/error-codes",
        status=429,
        body=_err(
            "Your organization has reached its usage limit.",
            "insufficient_quota",
            "organization_usage_limit_exceeded",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="new_code_same_type",
        # "OpenAI has changed the code while keeping the type" (livekit's realtime
        # _FATAL_ERROR_CODES comment): an unknown code with type insufficient_quota.
        source="https://github.com/livekit/agents/pull/6352",
        status=429,
        body=_err(_QUOTA_MESSAGE, "insufficient_quota", "quota_exceeded_v2"),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="account_deactivated",
        # Error-codes guide: "Your account is deactivated"; message paraphrased.
        source="https://developers.openai.com/api/docs/guides/error-codes",
        status=401,
        body=_err(
            "This key is associated with a deactivated account.",
            "invalid_request_error",
            "account_deactivated",
        ),
        expected=Category.PERMISSION,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="groq_tokens_per_day",
        # Verbatim message in continuedev/continue#10920 (Groq, tokens per day): the
        # daily limit's "try again in 9m38.016s" is longer than any call waits.
        source="https://github.com/continuedev/continue/issues/10920",
        url="https://api.groq.com/openai/v1/chat/completions",
        status=429,
        body=_err(
            "Rate limit reached for model `llama-3.3-70b-versatile` in organization "
            "`org_01kjh7p9n8f1qs6nz2bz77vy6b` service tier `on_demand` on tokens per day "
            "(TPD): Limit 100000, Used 97050, Requested 3619. Please try again in 9m38.016s. "
            "Need more tokens? Upgrade to Dev Tier today at "
            "https://console.groq.com/settings/billing",
            "tokens",
            "rate_limit_exceeded",
        ),
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="groq_tokens_per_minute",
        # Verbatim message in ago19800/HomeMind#29: a per-minute limit, 11.455 s.
        source="https://github.com/ago19800/HomeMind/issues/29",
        url="https://api.groq.com/openai/v1/chat/completions",
        status=429,
        body=_err(
            "Rate limit reached for model `llama-3.3-70b-versatile` in organization "
            "`org_01kes94v04f9ramd2n1vj4gjnc` service tier `on_demand` on tokens per minute "
            "(TPM): Limit 12000, Used 4437, Requested 9854. Please try again in 11.455s. "
            "Need more tokens? Upgrade to Dev Tier today at "
            "https://console.groq.com/settings/billing",
            "tokens",
            "rate_limit_exceeded",
        ),
        expected=Category.RATE_LIMITED,
        terminal=False,
        build=_http,
    ),
    Fixture(
        id="azure_retry_after_86400",
        # Verbatim message in alex-wolf-ps/dbchatprov2#2 (also jasonacox/TinyLLM#17); Azure
        # sends the same delay as Retry-After.
        source="https://github.com/alex-wolf-ps/dbchatprov2/issues/2",
        url="https://example.openai.azure.com/openai/deployments/gpt-4o/chat/completions",
        status=429,
        body={
            "error": {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under Azure "
                "OpenAI API version 2024-05-01-preview have exceeded token rate limit of your "
                "current OpenAI S0 pricing tier. Please retry after 86400 seconds. Please go "
                "here: https://aka.ms/oai/quotaincrease if you would like to further increase "
                "the default rate limit.",
            }
        },
        headers={"retry-after": "86400"},
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="azure_retry_after_45",
        # Verbatim message in icereed/paperless-gpt#814: 45 s, which a call can wait.
        source="https://github.com/icereed/paperless-gpt/issues/814",
        url="https://example.openai.azure.com/openai/deployments/gpt-4o/chat/completions",
        status=429,
        body={
            "error": {
                "code": "429",
                "message": "Your requests to gpt-4.1-nano for gpt-4.1-nano in Sweden Central "
                "have exceeded the token rate limit for your current AIServices S0 pricing "
                "tier. This request was for ChatCompletions_Create under Azure OpenAI API "
                "version 2023-05-15. Please retry after 45 seconds.",
            }
        },
        headers={"retry-after": "45"},
        expected=Category.RATE_LIMITED,
        terminal=False,
        build=_http,
    ),
    Fixture(
        id="azure_content_filter",
        # Azure OpenAI content filtering doc: 400 code content_filter, param prompt, with the
        # ResponsibleAIPolicyViolation inner error. The next turn's prompt differs.
        source="https://learn.microsoft.com/azure/ai-foundry/openai/concepts/content-filter",
        url="https://example.openai.azure.com/openai/deployments/gpt-4o/chat/completions",
        status=400,
        body={
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure "
                "OpenAI's content management policy. Please modify your prompt and retry.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {
                        "hate": {"filtered": True, "severity": "high"},
                    },
                },
            }
        },
        expected=Category.BAD_REQUEST,
        terminal=False,
        build=_http,
    ),
    Fixture(
        id="together_credit_limit_402",
        # Verbatim body in expectedparrot/edsl#2098 (Together AI).
        source="https://github.com/expectedparrot/edsl/issues/2098",
        url="https://api.together.xyz/v1/chat/completions",
        status=402,
        body={
            "id": "o3LiXw4-62bZhn-96040daf687810ab",
            "error": {
                "message": "Credit limit exceeded. Please navigate to "
                "https://api.together.xyz/settings/billing to add credit or upgrade your plan.",
                "type": "credit_limit",
                "param": None,
                "code": None,
            },
        },
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="deepseek_insufficient_balance_402",
        # Verbatim body in danilofalcao/jarvis#62 (DeepSeek): no known code, the 402 decides.
        source="https://github.com/danilofalcao/jarvis/issues/62",
        url="https://api.deepseek.com/chat/completions",
        status=402,
        body={
            "error": {
                "message": "Insufficient Balance",
                "type": "unknown_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
        expected=Category.PAYMENT_REQUIRED,
        terminal=True,
        build=_http,
    ),
    Fixture(
        id="realtime_credit_balance_exhausted",
        # A server error event with the newer code (livekit's _FATAL_ERROR_CODES); message
        # paraphrased.
        source="https://github.com/livekit/agents/pull/6352",
        kind=Kind.REALTIME,
        label=REALTIME_LABEL,
        status=None,
        body={
            "type": "error",
            "event_id": "event_credits",
            "error": {
                "message": "Your organization has no prepaid credits remaining.",
                "type": "insufficient_quota",
                "code": "credit_balance_exhausted",
                "param": None,
                "event_id": None,
            },
        },
        expected=Category.QUOTA_EXHAUSTED,
        terminal=True,
        build=_realtime_error_event,
    ),
)
