"""What an exception chain knows: the facts a classifier reads.

:func:`facts_from` recovers status, the fullest JSON body and response headers from an
error and its ``__cause__``/``__context__`` chain without trusting any of it: any object,
with raising properties, wrong attribute types or a cyclic chain, yields facts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeAlias, cast

import pydantic
from livekit.agents import APIError, APIStatusError

from agent_guard._redact import ELLIPSIS, redact, sanitize_hint
from agent_guard._redact import window_size as _redact_window
from agent_guard._verdict import (
    PUBLIC_MESSAGES,
    TERMINAL_CATEGORIES,
    Category,
    Kind,
    QuotaInfo,
    Verdict,
    pending_detail,
)

__all__ = [
    "SAFE_ERRORS",
    "Classifier",
    "ErrorFacts",
    "facts_from",
    "kind_of",
    "provider_from_label",
    "safe_getattr",
    "safe_str",
]

#: What an error object (its ``__str__``, its properties) or a classifier may raise and
#: classification absorbs. A CancelledError raised *by the object* is not our task being
#: cancelled (classification is synchronous: a real cancellation cannot land inside it);
#: KeyboardInterrupt and SystemExit still propagate.
SAFE_ERRORS: tuple[type[BaseException], ...] = (Exception, asyncio.CancelledError)

_MAX_CHAIN = 16
_MAX_MESSAGE = 4096
_MAX_BODY_BYTES = 64 * 1024
_MAX_BODY_ITEMS = 256
_MAX_HEADERS = 64
_MAX_HEADER_VALUE = 256
_MAX_GROUP_DEPTH = 8

_KIND_BY_TYPE: Mapping[str, Kind] = {
    "llm_error": Kind.LLM,
    "stt_error": Kind.STT,
    "tts_error": Kind.TTS,
    "realtime_model_error": Kind.REALTIME,
}


def kind_of(error_model: object) -> Kind | None:
    """Map a livekit error model to the :class:`~agent_guard.Kind` that failed.

    Args:
        error_model: ``ErrorEvent.error``: an ``LLMError``, ``STTError``, ``TTSError``
            or ``RealtimeModelError``.

    Returns:
        The Kind for those four ``.type`` values, ``None`` for anything else (for
        example ``InterruptionDetectionError``).
    """
    error_type = safe_getattr(error_model, "type")
    return _KIND_BY_TYPE.get(error_type) if isinstance(error_type, str) else None


def safe_getattr(obj: object, name: str) -> object:
    # getattr's default only covers AttributeError; a property may raise anything.
    try:
        return getattr(obj, name, None)
    except SAFE_ERRORS:
        return None


# livekit labels are f"{type(model).__module__}.{type(model).__name__}".
_PLUGIN_LABEL = re.compile(r"livekit\.(?:plugins|agents\.llm\._realtime)\.([a-z0-9_]+)\.")
_INFERENCE_LABEL_PREFIX = "livekit.agents.inference."
_PROVIDER_BY_LABEL: dict[str, str | None] = {}


def provider_from_label(label: str | None) -> str | None:
    """Guess the provider from a livekit model label.

    Args:
        label: For example ``"livekit.plugins.openai.llm.LLM"``.

    Returns:
        The plugin's name (``"openai"``, ``"anthropic"``, ...; the built-in realtime model
        is ``"openai"``), ``"livekit"`` for the LiveKit Inference models, ``None`` otherwise.
    """
    if not isinstance(label, str):
        return None
    try:
        return _PROVIDER_BY_LABEL[label]
    except KeyError:
        pass
    if label.startswith(_INFERENCE_LABEL_PREFIX):
        provider: str | None = "livekit"
    else:
        match = _PLUGIN_LABEL.match(label)
        provider = match.group(1) if match else None
    # A worker has a handful of models: labels are few, the cache stays small.
    if len(_PROVIDER_BY_LABEL) < 1024:
        _PROVIDER_BY_LABEL[label] = provider
    return provider


def _unwrap_groups(error: BaseException) -> BaseException:
    """The provider error inside an ``ExceptionGroup`` (a TaskGroup's), if that is what came.

    Prefers the first member that is not a cancellation: the sibling tasks a TaskGroup
    cancels after the first failure are not why it failed.
    """
    for _ in range(_MAX_GROUP_DEPTH):
        if not isinstance(error, BaseExceptionGroup):
            return error
        members = safe_getattr(error, "exceptions")
        if not isinstance(members, tuple) or not members:
            return error
        error = next((e for e in members if not isinstance(e, asyncio.CancelledError)), members[0])
    return error


def _walk(error: BaseException) -> tuple[BaseException, ...]:
    """The error, then its causes and contexts breadth-first; bounded and cycle-free.

    ``__context__`` is followed even when ``__suppress_context__`` is set: livekit's
    plugins ``raise APIStatusError(...) from None`` and the SDK error with the full
    response survives only there.
    """
    chain = [error]
    seen = {id(error)}
    for current in chain:  # grows while iterating: breadth-first
        try:
            links = (current.__cause__, current.__context__)
        except SAFE_ERRORS:  # a subclass may make them raising properties
            continue
        for linked in links:
            if linked is not None and isinstance(linked, BaseException) and id(linked) not in seen:
                if len(chain) == _MAX_CHAIN:
                    return tuple(chain)
                seen.add(id(linked))
                chain.append(linked)
    return tuple(chain)


def _status(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) == 3:
        value = int(value)
    # bool is an int; -1 is livekit's "no status" (APIStatusError's default).
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def _status_of(error: BaseException, response: object) -> int | None:
    # livekit/openai/httpx use .status_code, aiohttp .status.
    for holder in (error, response):
        for name in ("status_code", "status"):
            if (status := _status(safe_getattr(holder, name))) is not None:
                return status
    return None


def _plain_mapping(value: Mapping[Any, Any]) -> dict[str, Any] | None:
    try:
        items = list(islice(value.items(), _MAX_BODY_ITEMS))
    except SAFE_ERRORS:
        return None
    return {key: item for key, item in items if isinstance(key, str)}


def _decode_body(value: object) -> dict[str, Any] | str | None:
    """A body as a plain ``dict`` (JSON text is parsed), bounded text, or ``None``."""
    if value is None:
        return None
    # The common cases first, by exact type: the ABC checks below cost more.
    if type(value) is dict:
        return _plain_mapping(value)
    if type(value) is str:
        return _decode_text(value)
    if type(value) is bytes:  # an httpx response's .content
        if len(value) > _MAX_BODY_BYTES:
            return None
        return _decode_text(value.decode("utf-8", errors="replace"))
    if isinstance(value, pydantic.BaseModel):
        # livekit's realtime model raises APIError(body=<openai RealtimeError model>).
        try:
            value = value.model_dump()
        except SAFE_ERRORS:
            return None
    if isinstance(value, Mapping):
        return _plain_mapping(value)
    if isinstance(value, bytes | bytearray):
        if len(value) > _MAX_BODY_BYTES:
            return None
        value = bytes(value).decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    return _decode_text(value)


def _decode_text(value: str) -> dict[str, Any] | str | None:
    if len(value) <= _MAX_BODY_BYTES and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            parsed = None
        if type(parsed) is dict and len(parsed) <= _MAX_BODY_ITEMS:
            return parsed  # fresh, and JSON keys are strings: already a plain mapping
        if isinstance(parsed, dict):
            return _plain_mapping(parsed)
    return value[:_MAX_MESSAGE]


def _response_body(response: object) -> Mapping[str, Any] | None:
    # .content/.text rather than .json(): aiohttp's json() is a coroutine and httpx's is
    # unbounded. Both raise ResponseNotRead-style errors on unread streams (_attr eats it).
    for name in ("content", "text"):
        body = _decode_body(safe_getattr(response, name))
        if isinstance(body, dict):  # what _decode_body returns for any mapping
            return body
    return None


def _add_headers(holder: object, into: dict[str, str]) -> None:
    """Add ``holder.headers`` to ``into`` (lower-cased names; a name already there stays)."""
    headers = safe_getattr(holder, "headers")
    if headers is None:  # exceptions mostly have none: skip the second lookup
        return
    items = safe_getattr(headers, "items")
    if not callable(items):
        return
    try:
        for key, value in islice(items(), _MAX_HEADERS):
            if isinstance(key, str) and isinstance(value, str):  # aiohttp's keys are istr
                into.setdefault(key.lower(), value[:_MAX_HEADER_VALUE])
    except SAFE_ERRORS:
        return


def safe_str(error: BaseException) -> str:
    try:
        text = str(error)
    except SAFE_ERRORS:
        return ""
    return text[:_MAX_MESSAGE]


# livekit's websocket plugins raise APIStatusError(status_code=ws.close_code,
# body=f"{msg.data=} {msg.extra=}"): the close reason survives only as that repr.
_CLOSE_REASON = re.compile(r"msg\.extra=(['\"])(.{0,256}?)\1")


def _close_code(value: object) -> int | None:
    # RFC 6455 close codes (1000-4999) never collide with HTTP statuses (100-599).
    if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 4999:
        return value
    return None


def _close_reason(body: object) -> str | None:
    if isinstance(body, str) and "msg.extra=" in body:
        match = _CLOSE_REASON.search(body)
        if match:
            return match.group(2)
    return None


def facts_from(
    error: BaseException,
    *,
    kind: Kind,
    label: str | None = None,
    recoverable: bool = False,
) -> ErrorFacts:
    """Recover what a classifier needs from ``error`` and its exception chain.

    Status and body are read from the error first, then down the chain. A body that is
    only a string (the OpenAI SDK narrows it to ``body.get("error", body)``,
    ``openai/_client.py``) or missing is replaced by the full JSON re-read from any
    ``response`` on the chain. An ``ExceptionGroup`` is read as the provider error it
    wraps.

    Args:
        error: The exception livekit emitted (``ev.error.error``).
        kind: Which model failed.
        label: livekit's model label, e.g. ``"livekit.plugins.openai.llm.LLM"``.
        recoverable: livekit's own ``recoverable`` flag.

    Returns:
        The facts; never raises for any ``error``.
    """
    # Typed as BaseException, but hooks pass whatever they were given.
    given: object = error
    if not isinstance(given, BaseException):
        given = TypeError(f"not an exception: {type(given).__name__}")
    given = _unwrap_groups(given)
    chain = _walk(given)
    status: int | None = None
    close_code: int | None = None
    close_reason: str | None = None
    mapping_body: Mapping[str, Any] | None = None
    text_body: str | None = None
    response_body: Mapping[str, Any] | None = None
    headers: dict[str, str] = {}
    responses_seen: set[int] = set()
    for current in chain:
        # getattr inline, not safe_getattr: the loop runs for every link of every error.
        try:
            response = getattr(current, "response", None)
        except SAFE_ERRORS:  # a property may raise anything
            response = None
        if status is None:
            status = _status_of(current, response)
            if status is None and close_code is None:
                close_code = _close_code(safe_getattr(current, "status_code"))
        try:
            raw_body = getattr(current, "body", None)
        except SAFE_ERRORS:
            raw_body = None
        if raw_body is not None:
            if close_reason is None:
                close_reason = _close_reason(raw_body)
            if mapping_body is None:
                body = _decode_body(raw_body)
                if isinstance(body, dict):  # what _decode_body returns for any mapping
                    mapping_body = body
                elif text_body is None:
                    text_body = body
        _add_headers(current, headers)
        # openai.APIStatusError and the httpx HTTPStatusError on its __context__ share
        # one response: decode its headers and parse its body once.
        if response is not None and id(response) not in responses_seen:
            responses_seen.add(id(response))
            _add_headers(response, headers)
            if response_body is None and mapping_body is None:
                response_body = _response_body(response)
    return ErrorFacts(
        kind=kind,
        error=given,
        chain=chain,
        status_code=status,
        body=mapping_body or response_body or text_body,
        headers=headers,
        message=safe_str(given),
        label=label if isinstance(label, str) else None,
        provider=provider_from_label(label),
        recoverable=recoverable,
        close_code=None if status is not None else close_code,
        close_reason=close_reason,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorFacts:
    """What a classifier sees: facts recovered from an error and its exception chain.

    ``body`` is the fullest JSON recovered (the OpenAI SDK narrows ``e.body`` to the
    ``"error"`` value, often a bare string; the full dict is re-read from the
    ``httpx.Response`` found on ``__context__``). ``message`` and ``body`` are raw
    provider text: classifiers may inspect them, but must not copy them into a
    Verdict unredacted (use :meth:`verdict`, which redacts).
    """

    kind: Kind
    error: BaseException
    chain: tuple[BaseException, ...]
    """The error first, then its causes/contexts: bounded and cycle-free."""
    status_code: int | None
    body: Mapping[str, Any] | str | None
    headers: Mapping[str, str]
    """Response headers with lower-cased names (empty when none was found)."""
    message: str
    label: str | None = None
    """livekit's model label, e.g. ``"livekit.plugins.openai.llm.LLM"``."""
    provider: str | None = None
    """The provider named by the label (:func:`provider_from_label`), if any."""
    recoverable: bool = False
    close_code: int | None = None
    """A websocket close code (1000-4999) livekit reported in place of an HTTP status."""
    close_reason: str | None = None
    """The websocket close reason, where livekit kept it (raw provider text)."""

    def verdict(
        self,
        category: Category,
        *,
        provider: str | None = None,
        terminal: bool | None = None,
        counts: bool | None = None,
        hint: str | None = None,
        quota: QuotaInfo | None = None,
        public_message: str | None = None,
    ) -> Verdict:
        """Build a Verdict with the category's defaults and redacted detail."""
        return Verdict(
            kind=self.kind,
            category=category,
            terminal=(category in TERMINAL_CATEGORIES) if terminal is None else terminal,
            counts=(category is not Category.CLIENT_CANCELLED) if counts is None else counts,
            provider=provider,
            status_code=self.status_code,
            hint=(_sanitized_hint(hint) or None) if hint is not None else None,
            public_message=PUBLIC_MESSAGES[category] if public_message is None else public_message,
            quota=_clean_quota(quota),
            detail=describe(self.error, self.message),
            recoverable=self.recoverable,
            model=self.label,
            request_id=request_id_of(
                (safe_getattr(error, "request_id") for error in self.chain), self.headers
            ),
        )


# -- for operators: the detail and request id of a Verdict (added for issue 15) ----------

_DETAIL_LIMIT = 500
_REQUEST_ID = re.compile(r"[A-Za-z0-9][\w.:\-]{0,127}", re.ASCII)
# Shapes of credentials (see _redact): a "request id" that looks like one is not kept.
_CREDENTIAL_PREFIXES = ("sk-", "sk_", "eyJ", "AIza")


def _body_message(body: object, depth: int = 0) -> str | None:
    """The human part of an error body: its text, or its (nested) ``message``."""
    if isinstance(body, str):
        return body.strip() or None
    # A dict first: an ABC check is a Python-level call, on every classification.
    if isinstance(body, (dict, Mapping)) and depth < 2:
        for key in ("message", "error", "detail"):
            try:
                found = _body_message(body.get(key), depth + 1)
            except Exception:
                return None
            if found:
                return found
    return None


def describe(error: BaseException, message: str | None) -> str:
    """``Verdict.detail`` for ``error``, pending redaction.

    ``message`` is ``str(error)`` as :func:`safe_str` reads it, or ``None`` to read it
    here if it is needed.

    The error's type and message, each piece of provider text once: livekit's
    ``APIStatusError.__str__`` repeats the status, the request id and the body after the
    message; those have fields of their own, so only its ``message`` is
    kept, followed by the body's text when the message does not already hold it (the
    OpenAI SDK often narrows a gateway body to a bare string that is not in the
    message). Redacted, and cut at a word boundary.
    """
    own = safe_getattr(error, "message") if isinstance(error, APIStatusError) else None
    if isinstance(own, str):
        text = own[:_MAX_MESSAGE]
    else:
        text = safe_str(error) if message is None else message
    if isinstance(error, APIError) and (extra := _body_message(safe_getattr(error, "body"))):
        extra = extra[:_MAX_MESSAGE]
        if extra not in text:
            text = f"{text}: {extra}" if text else extra
    # Redacted when first read (most verdicts of a storm never are). Kept to what
    # redact() would look at: its window, and one more character to tell it was cut.
    described = f"{type(error).__name__}: {text}"
    return pending_detail(described[: _redact_window(2 * _DETAIL_LIMIT) + 1], _finish_detail)


def _finish_detail(described: str) -> str:
    described = redact(described, limit=2 * _DETAIL_LIMIT)
    if len(described) <= _DETAIL_LIMIT:
        return described
    head = described[: _DETAIL_LIMIT - 1]
    space = head.rfind(" ")
    if space > _DETAIL_LIMIT // 2:
        head = head[:space]
    return head.rstrip(" ,;:-") + ELLIPSIS


#: The response headers that may carry the request id, in the order they are preferred.
REQUEST_ID_HEADERS = ("x-request-id", "request-id")


def request_id_of(ids: Iterable[object], headers: Mapping[str, str]) -> str | None:
    """The provider's request id, to quote to its support.

    The first plausible ``request_id`` among ``ids`` (the chain's exceptions', in chain
    order: livekit's and the SDKs'), else the first plausible request-id header.
    """
    for value in ids:
        if _plausible_request_id(value):
            return cast(str, value)
    for name in REQUEST_ID_HEADERS:
        if _plausible_request_id(value := headers.get(name)):
            return cast(str, value)
    return None


def _plausible_request_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and _REQUEST_ID.fullmatch(value) is not None
        and not value.startswith(_CREDENTIAL_PREFIXES)
    )


def _clean_quota(quota: QuotaInfo | None) -> QuotaInfo | None:
    # Plugins copy provider body fields into QuotaInfo; they reach logs and as_dict(),
    # so they get the same redaction as the detail.
    if quota is None:
        return None
    fields = (quota.quota_type, quota.category, quota.remaining_limit)
    cleaned = tuple(redacted_field(value) if value else value for value in fields)
    if cleaned == fields:
        return quota
    return dataclasses.replace(
        quota, quota_type=cleaned[0], category=cleaned[1], remaining_limit=cleaned[2]
    )


# Hints and quota fields are mostly a classifier's own constants or a gateway's few
# categories: sanitise each distinct text once (bounded), not on every error.
@functools.lru_cache(maxsize=512)
def _sanitized_hint(text: str) -> str:
    return sanitize_hint(text)


@functools.lru_cache(maxsize=512)
def redacted_field(text: str) -> str:
    """``redact(text, limit=64)``, remembered: for short provider fields (quota categories)."""
    return redact(text, limit=64)


Classifier: TypeAlias = Callable[[ErrorFacts], Verdict | None]
"""A classifier returns a Verdict for errors it recognises and ``None`` otherwise.

Classifiers are plain, synchronous, total functions, tried in order; the first
non-``None`` answer wins (like a structlog processor chain that stops early).
"""
