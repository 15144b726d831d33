"""Generic, provider-agnostic rules: the last classifier, which always answers.

Status codes decide first, then a websocket close code livekit reported in its place.
Without either, the exception types on the chain do.

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

from agent_guard._facts import ErrorFacts, provider_from_label
from agent_guard._fingerprint import volatile
from agent_guard._verdict import Category, QuotaInfo, Verdict

__all__ = ["http_rules", "parse_retry_after", "provider_from_label", "retry_delay"]

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

# Generic websocket close codes (RFC 6455); provider-specific ones (1008 with a reason,
# 4xxx) are left to the provider classifiers.
_BY_CLOSE_CODE: Mapping[int, Category] = {
    1001: Category.CONNECTION,  # going away
    1006: Category.CONNECTION,  # abnormal closure, no close frame
    1011: Category.SERVER_ERROR,  # internal error
    1012: Category.OVERLOADED,  # service restart
    1013: Category.OVERLOADED,  # try again later
}

# "Please retry after 86400 seconds" (Azure OpenAI), "Please try again in 17m16s" /
# "in 9m38.016s" / "in 20s" / "in 6ms" (OpenAI, Groq), "Please retry in 20.04s" (Gemini).
_DELAY_IN_TEXT = re.compile(
    r"(?i:retry|try again)\s+(?:after|in)\s+((?:\d{1,9}(?:\.\d{1,9})?\s?(?:ms|h|m|s)\s?){1,4})"
)
_DELAY_PART = re.compile(r"(\d{1,9}(?:\.\d{1,9})?)\s?(ms|h|m|s)")
_UNIT_SECONDS: Mapping[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# Type names, not classes: the OpenAI SDK and livekit vendor httpx as ``httpx2``, plugins
# may use plain httpx, and none of them subclass the stdlib TimeoutError/OSError.
_TIMEOUT_NAME = "Timeout"  # APITimeoutError, httpx.TimeoutException, ReadTimeout, ...
_CONNECTION_NAME = re.compile(r"Connect(?:ion)?Error|NetworkError")


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
    volatile()  # a date: the answer depends on the clock
    try:
        date = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    return max(0.0, date.timestamp() - (time.time() if now is None else now))


def _delay_from_text(text: str) -> float | None:
    # The case-insensitive regex is slow to scan; most messages say neither word.
    lowered = text.lower()
    if "retry" not in lowered and "try again" not in lowered:
        return None
    match = _DELAY_IN_TEXT.search(text)
    if match is None:
        return None
    return sum(
        float(number) * _UNIT_SECONDS[unit] for number, unit in _DELAY_PART.findall(match.group(1))
    )


def _body_texts(body: object) -> list[str]:
    if isinstance(body, str):
        return [body]
    if not isinstance(body, (dict, Mapping)):
        return []
    texts = []
    for holder in (body, body.get("error")):
        if isinstance(holder, (dict, Mapping)):
            message = holder.get("message")
            if isinstance(message, str):
                texts.append(message)
        elif isinstance(holder, str):
            texts.append(holder)
    return texts


def retry_delay(facts: ErrorFacts) -> float | None:
    """How long the provider asked us to wait, in seconds, if it said.

    ``Retry-After``/``retry-after-ms`` first, then the wording providers put in their
    messages ("Please retry after 86400 seconds", "Please try again in 17m16s").

    Args:
        facts: What :func:`agent_guard.classify` recovered from the error.

    Returns:
        Non-negative seconds, or ``None``.
    """
    if (seconds := parse_retry_after(facts.headers)) is not None:
        return seconds
    for text in (facts.message, *_body_texts(facts.body)):
        delay = _delay_from_text(text)
        if delay is not None:
            return delay
    return None


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
    if not isinstance(body, (dict, Mapping)):
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
        other 4xx (``BAD_REQUEST``), 408/429/5xx, generic websocket closes (1001, 1006,
        1011-1013) and transport failures are transient; anything else is ``UNKNOWN``.
    """
    provider = facts.provider
    # CancelledError at the head is our own task being cancelled (an interruption or
    # shutdown), whatever status an inner request had reached.
    if isinstance(facts.error, asyncio.CancelledError):
        return facts.verdict(Category.CLIENT_CANCELLED, provider=provider)
    if facts.status_code is not None and (category := _by_status(facts.status_code)) is not None:
        quota = None
        if category in _RETRY_HINTED and (retry := parse_retry_after(facts.headers)) is not None:
            quota = QuotaInfo(retry_after=retry)
        return facts.verdict(category, provider=provider, quota=quota)
    if facts.close_code is not None and (category := _BY_CLOSE_CODE.get(facts.close_code)):
        return facts.verdict(category, provider=provider)
    if _cancelled(facts):
        return facts.verdict(Category.CLIENT_CANCELLED, provider=provider)
    if _timed_out(facts):
        return facts.verdict(Category.TIMEOUT, provider=provider)
    if _connection_failed(facts):
        return facts.verdict(Category.CONNECTION, provider=provider)
    return facts.verdict(Category.UNKNOWN, provider=provider)
