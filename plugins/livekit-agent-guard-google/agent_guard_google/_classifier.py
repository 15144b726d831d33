"""Recognise Google (Gemini API / Vertex) errors: ``{"error": {"code", "message", "status"}}``.

livekit-plugins-google flattens the error to ``body=f"{e.message} {e.status}"`` (a
string, ``livekit/plugins/google/llm.py``), but raises ``from e``: the
``google.genai`` error on the chain keeps the whole JSON as ``.details`` and its
``httpx`` response, which the core re-reads into :attr:`ErrorFacts.body`.

Decisions, each about a status Google reuses for different things:

* **429 RESOURCE_EXHAUSTED** is three failures. A ``QuotaFailure`` naming a per-day
  quota, or a quota whose limit is 0 (the model has no free tier), will not recover
  today: ``QUOTA_EXHAUSTED``, terminal. A per-minute ``QuotaFailure`` is a rate limit
  (its ``RetryInfo.retryDelay`` becomes ``retry_after``). Without a ``QuotaFailure``
  (Vertex's shared capacity: "Resource exhausted. Please try again later.") it is
  Google's capacity, not the project's: ``OVERLOADED``.
* **402** (also status RESOURCE_EXHAUSTED): prepaid credits are depleted. Google moved
  this from 429 to 402 precisely to separate it from retriable errors:
  ``QUOTA_EXHAUSTED``, terminal.
* **499 CANCELLED** *from Google* ("The operation was cancelled.", reason
  ``backendError``) is reported under heavy load: a server-side failure that counts
  toward the tolerance (``OVERLOADED``, not terminal). It is **not** treated as
  ``CLIENT_CANCELLED``: only a cancel we initiated is exempt, and the guard decides that
  from its own state, not from this body. Note that livekit's LLM/TTS retry loops
  swallow every ``APIStatusError(499)`` silently (no error event), so this verdict is
  seen mainly for STT and direct :func:`agent_guard.classify` calls.
* **400 INVALID_ARGUMENT** with ``ErrorInfo.reason == "API_KEY_INVALID"``: Gemini
  answers a bad key with 400, not 401, so the generic rules would call it a
  non-terminal bad request. It is ``AUTH``, terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from agent_guard._verdict import Category, QuotaInfo, Verdict
from agent_guard.classifiers import Classifier, ErrorFacts

__all__ = ["CLASSIFIERS", "classify"]

PROVIDER = "google"

_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
# "Quota exceeded for metric: ..., limit: 0, model: ..." in the message.
_ZERO_LIMIT = re.compile(r"\blimit: 0\b")
_DURATION = re.compile(r"\A(\d+(?:\.\d+)?)s\Z")

_HINTS: Mapping[str, str] = {
    "daily": (
        "Gemini daily or free-tier quota exhausted for this model: enable billing or raise "
        "the quota in Google AI Studio; it resets daily."
    ),
    "prepay": "Gemini prepaid credits are depleted: top up in Google AI Studio (Billing).",
    "per_minute": "Gemini per-minute quota hit: back off (see retry_after).",
    "capacity": "Gemini/Vertex capacity is exhausted (no project quota named): retry shortly.",
    "unavailable": "The Gemini model is overloaded (503 UNAVAILABLE): retry shortly.",
    "cancelled": "Gemini cancelled the request server-side (499 CANCELLED), usually under load.",
    "api_key": "Gemini rejected the API key (400 API_KEY_INVALID): check GOOGLE_API_KEY.",
    "permission": "Gemini denied access (403 PERMISSION_DENIED): check the key and project.",
    "deadline": "Gemini did not answer in time (504 DEADLINE_EXCEEDED).",
}


def _error_objects(facts: ErrorFacts) -> Iterator[Mapping[str, Any]]:
    sources: list[object] = [facts.body]
    for exc in facts.chain:
        sources += [getattr(exc, "details", None), getattr(exc, "body", None)]
    for source in sources:
        # google.genai unwraps a one-element list ([{"error": ...}] from some endpoints).
        if isinstance(source, Sequence) and not isinstance(source, str) and len(source) == 1:
            source = source[0]
        if isinstance(source, Mapping):
            inner = source.get("error")
            if isinstance(inner, Mapping) and isinstance(inner.get("status"), str):
                yield inner


def _details(obj: Mapping[str, Any], type_url: str) -> list[Mapping[str, Any]]:
    details = obj.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, Mapping) and d.get("@type") == type_url]


def _violations(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        v
        for failure in _details(obj, _QUOTA_FAILURE)
        if isinstance(failure.get("violations"), list)
        for v in failure["violations"]
        if isinstance(v, Mapping)
    ]


def _retry_delay(obj: Mapping[str, Any]) -> float | None:
    for info in _details(obj, _RETRY_INFO):
        delay = info.get("retryDelay")
        if isinstance(delay, str) and (match := _DURATION.match(delay)):
            return float(match.group(1))
    return None


def _verdict(
    facts: ErrorFacts, category: Category, hint: str, quota: QuotaInfo | None = None
) -> Verdict:
    return facts.verdict(category, provider=PROVIDER, hint=_HINTS[hint], quota=quota)


def _resource_exhausted(facts: ErrorFacts, obj: Mapping[str, Any], code: object) -> Verdict:
    if code == 402:
        quota = QuotaInfo(quota_type=facts.kind.value, category="prepayment_credits_depleted")
        return _verdict(facts, Category.QUOTA_EXHAUSTED, "prepay", quota)
    violations = _violations(obj)
    if not violations:
        return _verdict(facts, Category.OVERLOADED, "capacity")
    quota_ids = [str(v.get("quotaId", "")) for v in violations]
    message = obj.get("message")
    zero_limit = isinstance(message, str) and _ZERO_LIMIT.search(message) is not None
    daily = [q for q in quota_ids if "PerDay" in q]
    if daily or zero_limit:
        quota = QuotaInfo(quota_type=facts.kind.value, category=(daily or quota_ids)[0] or None)
        return _verdict(facts, Category.QUOTA_EXHAUSTED, "daily", quota)
    quota = QuotaInfo(category=quota_ids[0] or None, retry_after=_retry_delay(obj))
    return _verdict(facts, Category.RATE_LIMITED, "per_minute", quota)


def classify(facts: ErrorFacts) -> Verdict | None:
    """Classify a Google API error object; ``None`` for anything else.

    Args:
        facts: What the core recovered from the error and its chain.

    Returns:
        A Verdict for the cases in the module docstring, else ``None`` (e.g. 500
        INTERNAL is left to the generic rules).
    """
    obj = next(_error_objects(facts), None)
    if obj is None:
        return None
    status, code = obj["status"], obj.get("code")
    if status == "RESOURCE_EXHAUSTED" or code == 402:
        return _resource_exhausted(facts, obj, code)
    if status == "UNAVAILABLE":
        return _verdict(facts, Category.OVERLOADED, "unavailable")
    if status == "CANCELLED":
        # Server-side cancel under load: counts, never exempt (see module docstring).
        return _verdict(facts, Category.OVERLOADED, "cancelled")
    if status == "INVALID_ARGUMENT" and any(
        info.get("reason") == "API_KEY_INVALID" for info in _details(obj, _ERROR_INFO)
    ):
        return _verdict(facts, Category.AUTH, "api_key")
    if status == "PERMISSION_DENIED":
        return _verdict(facts, Category.PERMISSION, "permission")
    if status == "DEADLINE_EXCEEDED":
        return _verdict(facts, Category.TIMEOUT, "deadline")
    return None


#: For an explicit chain (the default one finds this plugin by itself).
CLASSIFIERS: tuple[Classifier, ...] = (classify,)
