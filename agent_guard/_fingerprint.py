"""A digest of what classification reads from an error, to answer repeats of a failure.

livekit reports every retry attempt of a failing request as an error event of its own,
and a storm repeats the same failure across turns and sessions: a new exception each
time, with the same status, body and the headers classification reads, but a new request
id (OpenAI's, Anthropic's and LiveKit Inference's ``x-request-id`` change per request).
Classifying each afresh repeats the same work for the same answer.

:func:`fingerprint` condenses what classification reads from an exception chain (each
link's type and the attributes :func:`agent_guard._facts.facts_from`, the core's
classifiers and this project's provider classifiers look at; the response's status,
body and the headers in :data:`READ_HEADERS`; ``str()`` of the error) into a digest: its
length and keyed hash. Two errors with the same digest yield the same verdict from the same
first-party chain, except for what depends on the request id, which the digest leaves
out: the request id itself, and the id's text wherever it appears (``str()`` of livekit's
``APIStatusError`` names it, Anthropic's bodies carry it). Those are made anew for each
error (:class:`Print`).

A request id is masked only when it is a long token (:data:`MIN_MASKED` characters): a
random token of that length appears in provider text only where the text quotes the id.
A shorter one stays in the digest, so an error with another short id is classified anew.

It is conservative: anything it cannot read as plain data (an unknown object, a pydantic
model, a carried verdict, an exception group, a raising property, more headers than
``facts_from`` reads, non-ASCII header names) makes it return ``None``, and the error is
classified in full. Only the digest is kept, never provider text (which can echo
credentials).
"""

from __future__ import annotations

import importlib
import marshal
import re
from collections.abc import Mapping
from itertools import islice
from operator import itemgetter
from typing import NamedTuple

from livekit.agents import APIStatusError

from agent_guard._facts import (
    _MAX_HEADER_VALUE,
    _MAX_HEADERS,
    REQUEST_ID_HEADERS,
    SAFE_ERRORS,
    _walk,
    request_id_of,
    safe_str,
)

__all__ = ["MIN_MASKED", "READ_HEADERS", "READ_PREFIX", "Print", "fingerprint"]

#: The headers that classification reads, with every ``READ_PREFIX`` one (LiveKit
#: Inference's usage headers). ``tests/test_retry_cache.py`` runs every first-party
#: classifier over the verdict corpus and fails if one reads another. The request-id ones
#: are read only for ``Verdict.request_id``, which is made anew for each error.
READ_HEADERS = frozenset({"retry-after", "retry-after-ms", "dg-error", *REQUEST_ID_HEADERS})
READ_PREFIX = "x-livekit-inference-"
_READ_RAW = frozenset(name.encode() for name in READ_HEADERS)
_READ_RAW_PREFIX = READ_PREFIX.encode()
_ID_RAW = tuple(name.encode() for name in REQUEST_ID_HEADERS)
_first = itemgetter(0)
_ID_HEADERS = frozenset(REQUEST_ID_HEADERS)

#: A request id shorter than this is kept in the digest instead of masked.
MIN_MASKED = 16
# What is masked: a token (no spaces, no quotes), as the providers' ids are.
_MASKABLE = re.compile(r"[A-Za-z0-9][\w.:\-]*", re.ASCII)
_MASK = b"\x00\xffrequest-id\xff\x00"

# What is read of each exception of the chain (facts_from: status, body, headers,
# response; describe: message, body; request_id_of; carried_verdict: verdict; the
# provider plugins: body, message, details, request_info).
_LINK = (
    "verdict",
    "request_id",
    "status_code",
    "status",
    "message",
    "body",
    "details",
    "headers",
    "response",
    "request_info",
)
# The types a read attribute may have. Nested values are left to marshal, which refuses
# anything but plain data; it writes a bytearray or memoryview as bytes, which facts_from
# does not read alike, hence this check at the top.
_PLAIN = frozenset({str, bytes, int, float, bool, type(None), dict, list, tuple})
_MAX_TYPES = 4096
_LIVEKIT_STR = APIStatusError.__str__

# A number per class, in place of the class (marshal writes plain data only). Classes are
# held, so a number is never reused for another class; errors come in a handful of them.
_TYPES: dict[type, int] = {}


def _raw_header_types() -> frozenset[type]:
    # httpx's Headers keep the undecoded pairs: far cheaper to read than items().
    found = set()
    for module in ("httpx", "httpx2"):
        try:
            found.add(importlib.import_module(module).Headers)
        except (ImportError, AttributeError):
            continue
    return frozenset(found)


_RAW_HEADERS = _raw_header_types()


class Print(NamedTuple):
    """What :func:`fingerprint` found: the digest, and what the digest leaves out."""

    digest: tuple[int, int]
    message: str | None
    """``str()`` of the error as ``facts_from`` reads it, if it was read (for
    ``Verdict.detail``)."""
    request_id: str | None
    """``Verdict.request_id`` for this error."""
    masked: tuple[str, ...] = ()
    """The request ids the digest leaves out: a verdict that quotes one (a body's hint
    naming the id) is this error's alone, not to be remembered."""


class _Opaque(Exception):
    """Something the fingerprint cannot capture: classify in full."""


def _token(t: type) -> int:
    token = _TYPES.get(t)
    if token is None:
        if len(_TYPES) >= _MAX_TYPES:
            raise _Opaque
        token = _TYPES.setdefault(t, len(_TYPES))
    return token


def _plain(value: object) -> object:
    if type(value) not in _PLAIN:
        raise _Opaque
    return value


class _Reader:
    """One fingerprint's walk: the request ids it met, and the ones to mask."""

    __slots__ = ("ids", "masked", "merged")

    def __init__(self) -> None:
        self.ids: list[object] = []
        """Each link's ``request_id``, in chain order."""
        self.merged: dict[str, str] = {}
        """The request-id headers as ``facts_from`` merges them."""
        self.masked: list[str] = []

    def headers(self, value: object) -> object:
        """The read headers of one holder, in order, every occurrence."""
        if value is None:
            return None
        if type(value) in _RAW_HEADERS:
            return self._raw(value.raw)  # type: ignore[attr-defined]  # an httpx.Headers
        if not isinstance(value, Mapping):
            raise _Opaque
        items = list(islice(value.items(), _MAX_HEADERS + 1))
        if len(items) > _MAX_HEADERS:  # facts_from reads the first ones only
            raise _Opaque
        found: list[tuple[str, str]] = []
        for key, item in items:
            if isinstance(key, str) and isinstance(item, str):  # as facts_from reads them
                name = key.lower()
                if name in READ_HEADERS or name.startswith(READ_PREFIX):
                    found.append((str.__str__(name), str.__str__(item)))
                    if name in _ID_HEADERS:
                        self._request_id_header(name, item)
        return (_token(type(value)), found)

    def _raw(self, raw: list[tuple[bytes, bytes]]) -> object:
        """httpx's undecoded pairs: far cheaper to read than ``items()``, which decodes
        every header and joins a repeated name's values with ", "."""
        if len(raw) > _MAX_HEADERS:  # facts_from reads the first ones only
            raise _Opaque
        # httpx decodes every name and value as ASCII if all are, else as UTF-8 or Latin-1:
        # with ASCII names, a name lower-cases alike as bytes and as text (a "Kelvin sign"
        # would not), and an ASCII value reads alike in any of the three.
        if not b"".join(map(_first, raw)).isascii():
            raise _Opaque
        found = []
        ids: dict[bytes, bytes] = {}
        for key, item in raw:
            name = key.lower()
            if name in _READ_RAW or name.startswith(_READ_RAW_PREFIX):
                if not item.isascii():
                    raise _Opaque
                found.append((name, item))
                if name in _ID_RAW:  # joined as items() joins a repeated name's values
                    ids[name] = ids[name] + b", " + item if name in ids else item
        for name, item in ids.items():
            self._request_id_header(name.decode(), item.decode())
        return found

    def _request_id_header(self, name: str, value: str) -> None:
        self.merged.setdefault(name, value[:_MAX_HEADER_VALUE])
        self._mask_candidate(value)

    def _mask_candidate(self, value: object) -> None:
        if (
            type(value) is str
            and len(value) >= MIN_MASKED
            and value not in self.masked
            and _MASKABLE.fullmatch(value)
        ):
            self.masked.append(value)

    def request_id(self, value: object) -> None:
        self.ids.append(value)
        self._mask_candidate(value)


def _response(value: object, reader: _Reader) -> object:
    """The attributes facts_from reads from a link's response."""
    if value is None or type(value) in (str, bytes, int, float, bool):
        return value
    return (
        _token(type(value)),
        _plain(getattr(value, "status_code", None)),
        _plain(getattr(value, "status", None)),
        reader.headers(getattr(value, "headers", None)),
        _plain(getattr(value, "content", None)),
        _plain(getattr(value, "text", None)),
    )


def _request_info(value: object) -> object:
    """``request_info``: the plugins read ``real_url.host``; its URL's text decides it."""
    url = getattr(value, "real_url", None)
    return (_token(type(value)), None if url is None else (_token(type(url)), str(url)))


def fingerprint(error: BaseException) -> Print | None:
    """A digest of what classification reads from ``error``, or ``None`` if it cannot tell.

    Equal digests mean equal facts for :func:`agent_guard._facts.facts_from` and every
    first-party classifier, but for the request id (see the module doc). Never raises for
    any ``error``.
    """
    try:
        if not isinstance(error, BaseException) or isinstance(error, BaseExceptionGroup):
            return None
        message = None
        if type(error).__str__ is _LIVEKIT_STR:
            # A function of the attributes read below, and of its `retryable`: not worth
            # building (it repeats the whole body) for a digest.
            parts: list[object] = [_plain(getattr(error, "retryable", None))]
        else:
            message = safe_str(error)
            parts = [message]
        reader = _Reader()
        shared: list[int] = []  # the SDK error and httpx's share one response
        for link in _walk(error):
            verdict, request_id, *plain, headers, response, request_info = [
                getattr(link, name, None) for name in _LINK
            ]
            if verdict is not None:
                return None  # a carried verdict: cheap to read, never remembered
            reader.request_id(request_id)
            parts.append(_token(type(link)))
            for value in plain:
                if type(value) not in _PLAIN:
                    raise _Opaque
            parts.extend(plain)
            parts.append(reader.headers(headers))
            for name, value in (("response", response), ("request_info", request_info)):
                if value is None:
                    parts.append(None)
                elif id(value) in shared:
                    parts.append(("same", shared.index(id(value))))
                else:
                    shared.append(id(value))
                    parts.append(
                        _response(value, reader) if name == "response" else _request_info(value)
                    )
        parts.append(reader.ids)
        # marshal (version 2: no back-references, so equal data gives equal bytes) writes
        # each value tagged with its exact type, and refuses anything but plain data.
        data = marshal.dumps(parts, 2)
        # Each request id's text, wherever it is (a str or bytes, alone or quoted in a
        # message or body), becomes the same mask: only the id differs between repeats.
        for rid in reader.masked:
            data = data.replace(rid.encode(), _MASK)
        # Python's hash of bytes is SipHash with a key secret to the process: no provider
        # text can be made to collide; with the length, 64 bits for a few hundred entries.
        digest = (len(data), hash(data))
        return Print(
            digest, message, request_id_of(reader.ids, reader.merged), tuple(reader.masked)
        )
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
