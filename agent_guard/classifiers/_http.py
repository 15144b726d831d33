"""Generic, provider-agnostic rules: the last classifier, which always answers.

Status codes decide first. Without one, the exception types on the chain do.

Decision on 4xx: 400/404/409/413/422 map to ``BAD_REQUEST``, which is **not terminal**
but counts toward the kind's tolerance. The same request would fail identically, but
the next turn sends a different context (new user text, trimmed history), so closing on
the first one would end sessions that one odd turn broke; a request that is wrong on
every turn (a bad model name) still closes once the tolerance is used up.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC

from agent_guard._facts import ErrorFacts
from agent_guard._verdict import Category, QuotaInfo, Verdict

__all__ = ["http_rules", "parse_retry_after", "provider_from_label"]

_BY_STATUS: Mapping[int, Category] = {
    401: Category.AUTH,
    402: Category.PAYMENT_REQUIRED,
    403: Category.PERMISSION,
    408: Category.TIMEOUT,
    429: Category.RATE_LIMITED,
    # 499 is nginx's "client closed request": we hung up (an interruption), the
    # provider did nothing wrong.
    499: Category.CLIENT_CANCELLED,
    503: Category.OVERLOADED,
    # Anthropic's "overloaded_error".
    529: Category.OVERLOADED,
}

_RETRY_HINTED = frozenset({Category.RATE_LIMITED, Category.OVERLOADED})

# livekit labels are f"{type(model).__module__}.{type(model).__name__}".
_PLUGIN_LABEL = re.compile(r"livekit\.(?:plugins|agents\.llm\._realtime)\.([a-z0-9_]+)\.")
_INFERENCE_LABEL_PREFIX = "livekit.agents.inference."

# Type names, not classes: the OpenAI SDK and livekit vendor httpx as ``httpx2``, plugins
# may use plain httpx, and none of them subclass the stdlib TimeoutError/OSError.
_TIMEOUT_NAME = "Timeout"  # APITimeoutError, httpx.TimeoutException, ReadTimeout, ...
_CONNECTION_NAME = re.compile(r"Connect(?:ion)?Error|NetworkError")


def provider_from_label(label: str | None) -> str | None:
    """Guess the provider from a livekit model label.

    Args:
        label: For example ``"livekit.plugins.openai.llm.LLM"``.

    Returns:
        ``"openai"`` for plugin (and built-in realtime) labels, ``"livekit"`` for the
        LiveKit Inference models, ``None`` otherwise.
    """
    if not isinstance(label, str):
        return None
    if label.startswith(_INFERENCE_LABEL_PREFIX):
        return "livekit"
    match = _PLUGIN_LABEL.match(label)
    return match.group(1) if match else None


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Read how long to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``.

    Args:
        headers: Response headers with lower-cased names.
        now: The current POSIX time (for tests); defaults to :func:`time.time`.

    Returns:
        Non-negative seconds, or ``None`` when absent or unparseable.
    """
    # OpenAI-style APIs send the precise value in milliseconds next to Retry-After.
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None and (value := _seconds(milliseconds)) is not None:
        return value / 1000
    retry_after = headers.get("retry-after")
    if retry_after is None:
        return None
    if (value := _seconds(retry_after)) is not None:
        return value
    try:
        date = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    return max(0.0, date.timestamp() - (time.time() if now is None else now))


def _by_status(status: int) -> Category | None:
    if (category := _BY_STATUS.get(status)) is not None:
        return category
    if 500 <= status <= 599:
        return Category.SERVER_ERROR
    if 400 <= status <= 499:
        return Category.BAD_REQUEST
    return None


def _names(error: BaseException) -> str:
    return " ".join(cls.__name__ for cls in type(error).__mro__)


def _cancel_code(facts: ErrorFacts) -> bool:
    # A mid-stream SSE error ({"error": {"code": 499, ...}}) becomes openai.APIError with
    # no status, which livekit wraps in APIConnectionError (openai/_streaming.py).
    body = facts.body
    if not isinstance(body, Mapping):
        return False
    code = body.get("code")
    if isinstance(code, int | str) and code in (499, "499"):
        return True
    return any(
        isinstance(value, str) and "cancel" in value.lower() for value in (code, body.get("type"))
    )


def _cancelled(facts: ErrorFacts) -> bool:
    if _cancel_code(facts):
        return True
    for error in facts.chain:
        # A timeout is a timeout, whatever it cancelled inside: httpcore's read timeout
        # (anyio's fail_after) works by cancelling the read, so a hung stream's timeout
        # carries a CancelledError at the bottom of its chain.
        if _is_timeout(error):
            return False
        if isinstance(error, asyncio.CancelledError):
            return True
    return False


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, TimeoutError) or _TIMEOUT_NAME in _names(error)


def _timed_out(facts: ErrorFacts) -> bool:
    return "timed out" in facts.message.lower() or any(_is_timeout(e) for e in facts.chain)


def _connection_failed(facts: ErrorFacts) -> bool:
    return any(
        isinstance(error, OSError) or _CONNECTION_NAME.search(_names(error)) is not None
        for error in facts.chain
    )


def http_rules(facts: ErrorFacts) -> Verdict:
    """Classify any error by HTTP status, then by exception type; never returns ``None``.

    Args:
        facts: What :func:`agent_guard.classify` recovered from the error.

    Returns:
        A Verdict: status 401/402/403 are terminal; 499 and cancellations do not count;
        other 4xx (``BAD_REQUEST``), 408/429/5xx and transport failures are transient;
        anything else is ``UNKNOWN``.
    """
    provider = provider_from_label(facts.label)
    # CancelledError at the head is our own task being cancelled (an interruption or
    # shutdown), whatever status an inner request had reached.
    if isinstance(facts.error, asyncio.CancelledError):
        return facts.verdict(Category.CLIENT_CANCELLED, provider=provider)
    if facts.status_code is not None and (category := _by_status(facts.status_code)) is not None:
        quota = None
        if category in _RETRY_HINTED and (retry := parse_retry_after(facts.headers)) is not None:
            quota = QuotaInfo(retry_after=retry)
        return facts.verdict(category, provider=provider, quota=quota)
    if _cancelled(facts):
        return facts.verdict(Category.CLIENT_CANCELLED, provider=provider)
    if _timed_out(facts):
        return facts.verdict(Category.TIMEOUT, provider=provider)
    if _connection_failed(facts):
        return facts.verdict(Category.CONNECTION, provider=provider)
    return facts.verdict(Category.UNKNOWN, provider=provider)
