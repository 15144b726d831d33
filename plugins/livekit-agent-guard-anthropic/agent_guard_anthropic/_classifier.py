"""Recognise Anthropic error bodies: ``{"type": "error", "error": {"type", "message"}}``.

Anthropic reports running out of money in three different ways, none of which is a
plain status code:

* a **400** ``invalid_request_error`` whose message starts "Your credit balance is too
  low" (prepaid credits) or "You have reached your specified [workspace] API usage
  limits" (a spend limit the account set);
* a **429** ``rate_limit_error`` whose ``details.error_code`` is
  ``enforced_spend_limit_reached`` (the usage tier's monthly cap; no ``retry-after``);
* a ``billing_error`` (newer API versions, HTTP 402).

So the generic rules would call the first a non-terminal bad request and the second a
rate limit: both would be retried on every turn. The body reaches us whole:
livekit-plugins-anthropic re-raises ``APIStatusError(..., body=e.body) from e`` and the
Anthropic SDK keeps the full JSON as ``e.body``. A mid-stream SSE ``error`` event
arrives with the stream's status, 200, so the error ``type`` decides, never the status.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from agent_guard._verdict import Category, QuotaInfo, Verdict
from agent_guard.classifiers import Classifier, ErrorFacts

__all__ = ["CLASSIFIERS", "classify"]

PROVIDER = "anthropic"

# Prefixes of the documented messages, matched case-insensitively.
_CREDIT_PREFIX = "your credit balance is too low"
_SPEND_PREFIX = "you have reached your specified"
_SPEND_CODE = "enforced_spend_limit_reached"

_BY_TYPE: Mapping[str, Category] = {
    "billing_error": Category.QUOTA_EXHAUSTED,
    "authentication_error": Category.AUTH,
    "permission_error": Category.PERMISSION,
    "rate_limit_error": Category.RATE_LIMITED,
    "overloaded_error": Category.OVERLOADED,
    "api_error": Category.SERVER_ERROR,
    "timeout_error": Category.TIMEOUT,
}
_HINTS: Mapping[str, str] = {
    "credits": "Anthropic credit balance is too low: buy credits in the Claude Console (Billing).",
    "spend_limit": (
        "Anthropic spend limit reached: raise it in the Claude Console or wait for the "
        "reset; retrying will not help."
    ),
    "billing_error": "Anthropic billing problem: check Billing in the Claude Console.",
    "authentication_error": "Anthropic rejected the API key: check ANTHROPIC_API_KEY.",
    "permission_error": "This Anthropic API key may not use this model or resource.",
    "rate_limit_error": "Anthropic rate limit: back off (see the retry-after header).",
    "overloaded_error": "Anthropic's API is temporarily overloaded (529): retry shortly.",
    "api_error": "Anthropic internal error: retry.",
    "timeout_error": "Anthropic timed out processing the request.",
}


def _error_objects(facts: ErrorFacts) -> Iterator[Mapping[str, Any]]:
    for body in (facts.body, *(getattr(exc, "body", None) for exc in facts.chain)):
        if isinstance(body, Mapping) and body.get("type") == "error":
            inner = body.get("error")
            if isinstance(inner, Mapping) and isinstance(inner.get("type"), str):
                yield inner


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return max(float(headers["retry-after"]), 0.0)
    except (KeyError, ValueError):
        return None


def classify(facts: ErrorFacts) -> Verdict | None:
    """Classify an Anthropic error body; ``None`` for anything else.

    Args:
        facts: What the core recovered from the error and its chain.

    Returns:
        A Verdict for Anthropic's documented error types, else ``None`` (an
        ``invalid_request_error`` that is not about money is left to the generic rules).
    """
    obj = next(_error_objects(facts), None)
    if obj is None:
        return None
    type_: str = obj["type"]
    message = obj.get("message")
    message = message.lower() if isinstance(message, str) else ""
    details = obj.get("details")
    detail_code = details.get("error_code") if isinstance(details, Mapping) else None

    reason: str | None = None
    if detail_code == _SPEND_CODE or (
        type_ == "invalid_request_error" and message.startswith(_SPEND_PREFIX)
    ):
        reason = "spend_limit"
    elif type_ == "invalid_request_error" and message.startswith(_CREDIT_PREFIX):
        reason = "credits"
    if reason is not None:
        spent = QuotaInfo(
            quota_type=facts.kind.value,
            category=detail_code if isinstance(detail_code, str) else reason,
        )
        return facts.verdict(
            Category.QUOTA_EXHAUSTED, provider=PROVIDER, hint=_HINTS[reason], quota=spent
        )

    category = _BY_TYPE.get(type_)
    if category is None:
        return None
    quota: QuotaInfo | None = None
    if category is Category.QUOTA_EXHAUSTED:
        quota = QuotaInfo(quota_type=facts.kind.value, category=type_)
    elif category is Category.RATE_LIMITED:
        quota = QuotaInfo(category=type_, retry_after=_retry_after(facts.headers))
    return facts.verdict(category, provider=PROVIDER, hint=_HINTS[type_], quota=quota)


#: For an explicit chain (the default one finds this plugin by itself).
CLASSIFIERS: tuple[Classifier, ...] = (classify,)
