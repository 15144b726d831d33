"""Recognise OpenAI error objects by their ``code``/``type``, over HTTP and Realtime.

A 429 from OpenAI means either "slow down" or "out of money", and only the error
object's ``code`` tells which. It is found in three shapes:

* HTTP, full JSON ``{"error": {"message", "type", "param", "code"}}``: what the core
  recovers from the SDK's ``httpx`` response onto :attr:`ErrorFacts.body`;
* HTTP, the same inner object alone: the OpenAI SDK narrows ``e.body`` to the
  ``"error"`` value and livekit copies it as ``APIStatusError.body``;
* Realtime: ``APIError.body`` is the SDK's ``RealtimeError`` *model* (attributes, not a
  dict), set by livekit's ``_handle_error``/``_handle_response_done``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from agent_guard._verdict import Category, QuotaInfo, Verdict
from agent_guard.classifiers import Classifier, ErrorFacts

__all__ = ["CLASSIFIERS", "classify"]

PROVIDER = "openai"

# Per https://developers.openai.com/api/docs/guides/error-codes and the spend-limits
# guide: every one of these arrives as a 429 and "retrying billing, spend or quota
# errors will not restore API access". The realtime-only ones mirror livekit's
# _FATAL_ERROR_CODES (livekit/agents/llm/_realtime/openai.py), which stop reconnecting.
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "billing_hard_limit_reached",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    }
)
_RATE_CODES = frozenset({"rate_limit_exceeded", "slow_down"})
_HINTS = {
    Category.QUOTA_EXHAUSTED: (
        "OpenAI billing limit reached (credits, spend limit or usage tier): add credits "
        "or raise the limit in the OpenAI dashboard; retrying will not help."
    ),
    Category.AUTH: "OpenAI rejected the API key: check OPENAI_API_KEY.",
    Category.PERMISSION: "The OpenAI account is deactivated: contact OpenAI support.",
    Category.RATE_LIMITED: "OpenAI rate limit (requests or tokens per minute): back off.",
    Category.OVERLOADED: "OpenAI servers are overloaded: retry shortly.",
}


def _get(obj: object, name: str) -> object:
    # Realtime bodies are pydantic models, HTTP bodies are dicts: read either.
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _candidates(facts: ErrorFacts) -> Iterator[object]:
    yield facts.body
    for exc in facts.chain:
        yield getattr(exc, "body", None)


def _error_object(facts: ErrorFacts) -> tuple[str | None, str | None] | None:
    """The first (code, type) pair found, unwrapping a top-level ``{"error": {...}}``."""
    for body in _candidates(facts):
        if body is None or isinstance(body, str | bytes):
            continue
        inner = _get(body, "error")
        obj = inner if inner is not None and not isinstance(inner, str) else body
        code, type_ = _get(obj, "code"), _get(obj, "type")
        if isinstance(code, str) or isinstance(type_, str):
            return (
                code if isinstance(code, str) else None,
                type_ if isinstance(type_, str) else None,
            )
    return None


def _category(code: str | None, type_: str | None) -> Category | None:
    # code first: OpenAI keeps type="insufficient_quota" while varying the code (and
    # livekit#7805 saw the reverse), so either field may carry the known value.
    for value in (code, type_):
        if value is None:
            continue
        if value in _QUOTA_CODES or value.endswith("_spend_limit_exceeded"):
            return Category.QUOTA_EXHAUSTED
        if value == "invalid_api_key":
            return Category.AUTH
        if value == "account_deactivated":
            return Category.PERMISSION
        if value in _RATE_CODES:
            return Category.RATE_LIMITED
        if value == "server_is_overloaded":
            return Category.OVERLOADED
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(float(headers[name]) / scale, 0.0)
        except (KeyError, ValueError):
            continue
    return None


def classify(facts: ErrorFacts) -> Verdict | None:
    """Classify an OpenAI error object; ``None`` for anything else.

    Args:
        facts: What the core recovered from the error and its chain.

    Returns:
        A Verdict for the OpenAI codes listed above, else ``None`` so the generic
        HTTP rules decide (a bare 429 without a known code stays a rate limit there).
    """
    found = _error_object(facts)
    if found is None:
        return None
    code, type_ = found
    category = _category(code, type_)
    if category is None:
        return None
    quota = None
    if category is Category.QUOTA_EXHAUSTED:
        quota = QuotaInfo(quota_type=facts.kind.value, category=code or type_)
    elif category is Category.RATE_LIMITED:
        quota = QuotaInfo(category=code or type_, retry_after=_retry_after(facts.headers))
    return facts.verdict(category, provider=PROVIDER, hint=_HINTS[category], quota=quota)


#: Compose explicitly: ``(*agent_guard_openai.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)``.
CLASSIFIERS: tuple[Classifier, ...] = (classify,)
