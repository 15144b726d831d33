"""Turning an exception into a :class:`~agent_guard.Verdict`.

:func:`facts_from` recovers what the exception chain knows (status, the fullest JSON
body, response headers) without trusting any of it; :func:`classify` runs the
classifiers over those facts and always ends with the generic HTTP rules. Everything
about the *error* is total: any object, with raising properties, wrong attribute types
or a cyclic chain, yields a Verdict.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

import pydantic
import structlog

from agent_guard._fallback import fallback_causes
from agent_guard._gateway import livekit_gateway
from agent_guard._http import http_rules
from agent_guard._redact import redact
from agent_guard._verdict import (
    PUBLIC_MESSAGES,
    Category,
    Classifier,
    ErrorFacts,
    Kind,
    Verdict,
)

__all__ = ["DEFAULT_CLASSIFIERS", "classify", "facts_from", "kind_of"]

#: The core chain: provider-agnostic rules only. Provider plugins go in front, e.g.
#: ``(*agent_guard_openai.CLASSIFIERS, *DEFAULT_CLASSIFIERS)``; the generic HTTP rules
#: always run last and need not be listed. ``fallback_causes`` comes first: behind a
#: guarded FallbackAdapter, the whole round decides, not the one child error on the chain.
DEFAULT_CLASSIFIERS: tuple[Classifier, ...] = (fallback_causes, livekit_gateway)

_log = structlog.get_logger("agent_guard")

_MAX_CHAIN = 16
_MAX_MESSAGE = 4096
_MAX_BODY_BYTES = 64 * 1024
_MAX_BODY_ITEMS = 256
_MAX_HEADERS = 64
_MAX_HEADER_VALUE = 256

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
    error_type = _attr(error_model, "type")
    return _KIND_BY_TYPE.get(error_type) if isinstance(error_type, str) else None


def _attr(obj: object, name: str) -> object:
    # getattr's default only covers AttributeError; a property may raise anything.
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _walk(error: BaseException) -> tuple[BaseException, ...]:
    """The error, then its causes and contexts breadth-first; bounded and cycle-free.

    ``__context__`` is followed even when ``__suppress_context__`` is set: livekit's
    plugins ``raise APIStatusError(...) from None`` and the SDK error with the full
    response survives only there.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    queue: deque[BaseException] = deque([error])
    while queue and len(chain) < _MAX_CHAIN:
        current = queue.popleft()
        if id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        for name in ("__cause__", "__context__"):
            linked = _attr(current, name)
            if isinstance(linked, BaseException):
                queue.append(linked)
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
            if (status := _status(_attr(holder, name))) is not None:
                return status
    return None


def _plain_mapping(value: Mapping[Any, Any]) -> dict[str, Any] | None:
    try:
        items = list(islice(value.items(), _MAX_BODY_ITEMS))
    except Exception:
        return None
    return {key: item for key, item in items if isinstance(key, str)}


def _decode_body(value: object) -> Mapping[str, Any] | str | None:
    """A body as a plain ``dict`` (JSON text is parsed), bounded text, or ``None``."""
    if isinstance(value, pydantic.BaseModel):
        # livekit's realtime model raises APIError(body=<openai RealtimeError model>).
        try:
            value = value.model_dump()
        except Exception:
            return None
    if isinstance(value, Mapping):
        return _plain_mapping(value)
    if isinstance(value, bytes | bytearray):
        if len(value) > _MAX_BODY_BYTES:
            return None
        value = bytes(value).decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    if len(value) <= _MAX_BODY_BYTES and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            return _plain_mapping(parsed)
    return value[:_MAX_MESSAGE]


def _response_body(response: object) -> Mapping[str, Any] | None:
    # .content/.text rather than .json(): aiohttp's json() is a coroutine and httpx's is
    # unbounded. Both raise ResponseNotRead-style errors on unread streams (_attr eats it).
    for name in ("content", "text"):
        body = _decode_body(_attr(response, name))
        if isinstance(body, Mapping):
            return body
    return None


def _header_items(holder: object) -> list[tuple[str, str]]:
    headers = _attr(holder, "headers")
    items = _attr(headers, "items")
    if not callable(items):
        return []
    pairs = []
    try:
        for key, value in islice(items(), _MAX_HEADERS):
            if isinstance(key, str) and isinstance(value, str):
                pairs.append((key.lower(), value[:_MAX_HEADER_VALUE]))
    except Exception:
        return pairs
    return pairs


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        return ""
    return text[:_MAX_MESSAGE]


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
    ``response`` on the chain.

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
    chain = _walk(given)
    status: int | None = None
    mapping_body: Mapping[str, Any] | None = None
    text_body: str | None = None
    response_body: Mapping[str, Any] | None = None
    headers: dict[str, str] = {}
    responses_seen: set[int] = set()
    for current in chain:
        response = _attr(current, "response")
        if status is None:
            status = _status_of(current, response)
        if mapping_body is None:
            body = _decode_body(_attr(current, "body"))
            if isinstance(body, Mapping):
                mapping_body = body
            elif text_body is None:
                text_body = body
        for holder in (current, response):
            for key, value in _header_items(holder):
                headers.setdefault(key, value)
        # openai.APIStatusError and the httpx HTTPStatusError on its __context__ share
        # one response: parse it once.
        if response is not None and id(response) not in responses_seen:
            responses_seen.add(id(response))
            if response_body is None and mapping_body is None:
                response_body = _response_body(response)
    return ErrorFacts(
        kind=kind,
        error=given,
        chain=chain,
        status_code=status,
        body=mapping_body or response_body or text_body,
        headers=headers,
        message=_message(given),
        label=label if isinstance(label, str) else None,
        recoverable=recoverable,
    )


def _as_kind(kind: Kind | str) -> Kind:
    try:
        return Kind(kind)
    except (ValueError, TypeError):
        valid = ", ".join(repr(k.value) for k in Kind)
        raise ValueError(f"kind must be one of {valid}, got {kind!r}") from None


def _qualname(classifier: object) -> str:
    name = _attr(classifier, "__qualname__")
    return name if isinstance(name, str) else type(classifier).__qualname__


def _log_failure(classifier: object, kind: Kind, **fields: str) -> None:
    _log.warning(
        "agent_guard.classifier_failed",
        classifier=_qualname(classifier),
        kind=kind.value,
        **fields,
    )


def _unknown(kind: Kind, recoverable: bool) -> Verdict:
    return Verdict(
        kind=kind,
        category=Category.UNKNOWN,
        terminal=False,
        counts=True,
        public_message=PUBLIC_MESSAGES[Category.UNKNOWN],
        detail="classification failed",
        recoverable=recoverable,
    )


def _run(classifiers: Iterable[Classifier], facts: ErrorFacts) -> Verdict | None:
    for classifier in classifiers:
        try:
            # object, not Verdict | None: third-party classifiers return anything.
            verdict: object = classifier(facts)
        except Exception as exc:
            _log_failure(
                classifier,
                facts.kind,
                error_type=type(exc).__name__,
                error=redact(_message(exc), limit=200),
            )
            continue
        if isinstance(verdict, Verdict):
            return verdict
        if verdict is not None:
            _log_failure(classifier, facts.kind, returned=type(verdict).__name__)
    return None


def classify(
    error: BaseException,
    *,
    kind: Kind | str,
    classifiers: Sequence[Classifier] = DEFAULT_CLASSIFIERS,
    label: str | None = None,
    recoverable: bool = False,
) -> Verdict:
    """Classify a provider failure.

    Classifiers run in order and the first non-``None`` Verdict wins; one that raises
    (or returns something else) is logged as ``agent_guard.classifier_failed`` and
    skipped. The generic HTTP rules always run last.

    Args:
        error: The exception livekit emitted (``ev.error.error``).
        kind: Which model failed, as a :class:`~agent_guard.Kind` or its value.
        classifiers: Provider classifiers, most specific first.
        label: livekit's model label (used to name the provider).
        recoverable: livekit's own ``recoverable`` flag, copied to the Verdict.

    Returns:
        The Verdict. Never raises because of ``error`` or a classifier.

    Raises:
        ValueError: ``kind`` is not a Kind (a programming error).
    """
    resolved = _as_kind(kind)
    try:
        facts = facts_from(error, kind=resolved, label=label, recoverable=recoverable)
        return _run(classifiers, facts) or http_rules(facts)
    except Exception as exc:
        # Not even the generic rules managed: answer without touching the error again.
        _log.warning(
            "agent_guard.classification_failed", kind=resolved.value, error_type=type(exc).__name__
        )
        return _unknown(resolved, recoverable)
