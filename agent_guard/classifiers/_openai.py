"""OpenAI and OpenAI-compatible error objects: quota versus rate limit, over HTTP and Realtime.

In the core, not a plugin: every OpenAI-compatible host (OpenAI, Azure OpenAI, Together,
Groq, Cerebras, DeepSeek, xAI, ...) is reached through livekit-plugins-openai, which the
core already depends on, so the default chain must know these answers.

A 429 from OpenAI means either "slow down" or "out of money", and only the error
object's ``code`` (or its ``type``: OpenAI changes the code and keeps the type) tells
which. The object arrives in three shapes:

* HTTP, full JSON ``{"error": {"message", "type", "param", "code"}}``: what the core
  recovers from the SDK's ``httpx`` response onto :attr:`ErrorFacts.body`;
* HTTP, the same inner object alone: the OpenAI SDK narrows ``e.body`` to the
  ``"error"`` value and livekit copies it as ``APIStatusError.body``;
* Realtime: ``APIError.body`` is the SDK's ``RealtimeError`` *model* (attributes, not a
  dict), set by livekit's ``_handle_error``/``_handle_response_done``; the core dumps it
  to a dict.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent_guard._facts import ErrorFacts
from agent_guard._verdict import Category, QuotaInfo, Verdict

__all__ = ["openai_rules"]

PROVIDER = "openai"

# Per https://developers.openai.com/api/docs/guides/error-codes and the spend-limits
# guide: every one of these arrives as a 429 and "retrying billing, spend or quota
# errors will not restore API access". The realtime-only ones mirror livekit's
# _FATAL_ERROR_CODES (livekit/agents/llm/_realtime/openai.py), which stop reconnecting.
# "credit_limit" is Together's 402 type (expectedparrot/edsl#2098).
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "billing_hard_limit_reached",
        "billing_not_active",
        "credit_limit",
    }
)
# organization_/project_ spend and usage limits, and whatever scope OpenAI adds next.
_QUOTA_SUFFIXES = ("_spend_limit_exceeded", "_usage_limit_exceeded")
_BY_CODE: Mapping[str, Category] = {
    "invalid_api_key": Category.AUTH,
    "account_deactivated": Category.PERMISSION,
    "rate_limit_exceeded": Category.RATE_LIMITED,
    "slow_down": Category.RATE_LIMITED,
    "server_is_overloaded": Category.OVERLOADED,
    # Azure OpenAI's prompt filter: this prompt was refused, the next turn's differs.
    "content_filter": Category.BAD_REQUEST,
}
_HINTS: Mapping[Category, str] = {
    Category.QUOTA_EXHAUSTED: (
        "Billing limit reached (credits, spend limit or usage tier): add credits or raise "
        "the limit in the provider's dashboard; retrying will not help."
    ),
    Category.AUTH: "The API key was rejected: check the key (OPENAI_API_KEY or the host's).",
    Category.PERMISSION: "The account is deactivated: contact the provider's support.",
    Category.RATE_LIMITED: "Rate limit (requests or tokens per minute): back off.",
    Category.OVERLOADED: "The provider's servers are overloaded: retry shortly.",
    Category.BAD_REQUEST: (
        "The content filter refused this prompt (Azure content_filter); the next turn's "
        "prompt differs."
    ),
}


def _error_object(facts: ErrorFacts) -> Mapping[str, object] | None:
    """The error object, unwrapping a top-level ``{"error": {...}}``."""
    body = facts.body
    if not isinstance(body, (dict, Mapping)):
        return None
    inner = body.get("error")
    return inner if isinstance(inner, (dict, Mapping)) else body


def _category(value: object) -> tuple[str, Category] | None:
    if not isinstance(value, str) or not value:
        return None
    if value in _QUOTA_CODES or value.endswith(_QUOTA_SUFFIXES):
        return value, Category.QUOTA_EXHAUSTED
    category = _BY_CODE.get(value)
    return None if category is None else (value, category)


def openai_rules(facts: ErrorFacts) -> Verdict | None:
    """Classify an OpenAI(-compatible) error object by its ``code`` or ``type``.

    Args:
        facts: What :func:`agent_guard.classify` recovered from the error.

    Returns:
        A Verdict for the codes above (the code wins when both are known), else ``None``
        so the generic rules decide (a bare 429 stays a rate limit, a 402 is terminal
        ``PAYMENT_REQUIRED``).
    """
    obj = _error_object(facts)
    if obj is None:
        return None
    found = _category(obj.get("code")) or _category(obj.get("type"))
    if found is None:
        return None
    name, category = found
    quota = None
    if category is Category.QUOTA_EXHAUSTED:
        quota = QuotaInfo(quota_type=facts.kind.value, category=name)
    elif category is Category.RATE_LIMITED:
        quota = QuotaInfo(category=name)
    return facts.verdict(
        category, provider=facts.provider or PROVIDER, hint=_HINTS[category], quota=quota
    )
