"""A digest of everything the shipped classifiers read from an error, for retry attempts.

livekit reports every retry attempt of a failing request as an error event of its own,
with a new exception object but the same status, body and headers: classifying each
afresh repeats the same work for the same answer. :func:`fingerprint` condenses what
classification reads from an exception chain (each link's type and the attributes that
:func:`agent_guard._facts.facts_from`, the core's classifiers and this project's
provider classifiers look at, the response's status, headers and body, ``str()`` of the
error) into a 128-bit BLAKE2b digest: two errors with the same digest yield the same
facts, hence the same verdict from the same first-party chain.

It is conservative: anything it cannot read as plain data (an unknown object, a
pydantic model, a nested exception, a carried verdict, an exception group, a raising
property) makes it return ``None``, and the error is classified in full.
Only the digest is kept, never provider text (which can echo credentials).
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Mapping

from agent_guard._facts import SAFE_ERRORS, _walk

__all__ = ["READ_ATTRIBUTES", "fingerprint"]

#: The attributes of each link of the chain that classification reads (facts_from: status,
#: body, headers, response; _detail: message, body; _request_id; carried_verdict: verdict;
#: the provider plugins: body, message, details, request_info). A classifier that reads
#: another one must not run behind the cache (only first-party chains do).
READ_ATTRIBUTES = (
    "request_id",
    "status_code",
    "status",
    "message",
    "body",
    "details",
    "headers",
    "request_info",
    "response",
    "verdict",
)
_MAX_ITEMS = 256
_MAX_TYPES = 4096

# A number per class, in place of the class (marshal writes plain data only). Classes are
# held, so a number is never reused for another class; errors come in a handful of them.
_TYPES: dict[type, int] = {}


class _Opaque(Exception):
    """Something the fingerprint cannot capture: classify in full."""


def _token(t: type) -> int:
    token = _TYPES.get(t)
    if token is None:
        if len(_TYPES) >= _MAX_TYPES:
            raise _Opaque
        token = _TYPES.setdefault(t, len(_TYPES))
    return token


_PLAIN = frozenset({str, bytes, int, float, bool, type(None)})


def _plain(value: object, depth: int = 0) -> object:
    """``value`` itself, once checked to be plain data (scalars, dicts, lists, tuples).

    marshal would also write other objects: a bytearray or memoryview as if it were
    bytes, which facts_from does not read alike.
    """
    t = type(value)
    if t in _PLAIN:
        return value
    if depth == 8:
        raise _Opaque
    if t is dict:
        for key, item in value.items():  # type: ignore[attr-defined]  # a dict
            _plain(key, depth + 1)
            _plain(item, depth + 1)
        return value
    if t is list or t is tuple:
        for item in value:  # type: ignore[attr-defined]  # a list or tuple
            _plain(item, depth + 1)
        return value
    raise _Opaque


def _headers(value: object) -> object:
    """Response headers: httpx's raw pairs, or the items of any other mapping."""
    if value is None or type(value) is dict:
        return _plain(value)
    if not isinstance(value, Mapping):
        return (_token(type(value)), _plain(value))
    raw = getattr(value, "raw", None)  # httpx: the undecoded pairs, far cheaper than items()
    if type(raw) is not list:
        raw = []
        for n, (key, item) in enumerate(value.items()):
            if n == _MAX_ITEMS:
                raise _Opaque
            # aiohttp's names are istr, a str subclass marshal refuses: the text, typed.
            raw.append((key if type(key) is str else (_token(type(key)), str.__str__(key)), item))
    return (_token(type(value)), _plain(raw))


def _response(value: object) -> object:
    """The attributes facts_from reads from a link's response."""
    if value is None or type(value) in (str, bytes, int, float, bool):
        return value
    return (
        _token(type(value)),
        _plain(getattr(value, "status_code", None)),
        _plain(getattr(value, "status", None)),
        _headers(getattr(value, "headers", None)),
        _plain(getattr(value, "content", None)),
        _plain(getattr(value, "text", None)),
    )


def _request_info(value: object) -> object:
    """``request_info``: the plugins read ``real_url.host``; its URL's text decides it."""
    url = getattr(value, "real_url", None)
    return (_token(type(value)), None if url is None else (_token(type(url)), str(url)))


def fingerprint(error: BaseException) -> bytes | None:
    """A digest of what classification reads from ``error``, or ``None`` if it cannot tell.

    Equal digests mean equal facts for :func:`agent_guard._facts.facts_from` and every
    first-party classifier. Never raises for any ``error``.
    """
    try:
        if not isinstance(error, BaseException) or isinstance(error, BaseExceptionGroup):
            return None
        parts: list[object] = [str(error)]
        shared: list[int] = []  # the SDK error and httpx's share one response
        for link in _walk(error):
            parts.append(_token(type(link)))
            for name in READ_ATTRIBUTES:
                value = getattr(link, name, None)
                if value is None:
                    parts.append(None)
                elif name == "request_id":
                    # A request id is new with every attempt (OpenAI's, Anthropic's): the
                    # next attempt cannot match, so the digest is not worth its cost.
                    return None
                elif name == "headers":
                    parts.append(_headers(value))
                elif name == "response" or name == "request_info":
                    if id(value) in shared:
                        parts.append(("same", shared.index(id(value))))
                        continue
                    shared.append(id(value))
                    parts.append(_response(value) if name == "response" else _request_info(value))
                elif name == "verdict":
                    return None  # a carried verdict: cheap to read, never remembered
                else:
                    parts.append(_plain(value))
        # Plain data only (_plain): marshal (version 2: no back-references, so equal data
        # gives equal bytes) writes each value tagged with its exact type.
        return hashlib.blake2b(marshal.dumps(parts, 2), digest_size=16).digest()
    except SAFE_ERRORS:  # _Opaque among them
        return None


# Bumped by every classification step whose answer is not a function of the error alone
# (a date in Retry-After read against the clock, a classifier failure that is logged):
# a verdict computed while it moved is not remembered.
_volatile = 0


def volatile() -> None:
    """Mark the classification in progress as not to be remembered for a retry."""
    global _volatile
    _volatile += 1


def volatile_count() -> int:
    return _volatile
