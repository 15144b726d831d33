"""The Verdict: what the guard concluded about one provider failure.

A Verdict is the only thing the rest of the guard (policy, farewell, hooks, logs,
frontend signal) looks at. It never holds the exception itself: provider messages
can echo API keys, so only redacted text leaves classification.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, cast

__all__ = [
    "Category",
    "Kind",
    "QuotaInfo",
    "Verdict",
]


E = TypeVar("E", bound=StrEnum)


class Kind(StrEnum):
    """Which model of the session failed (mirrors livekit's ``*_error`` types)."""

    STT = "stt"
    LLM = "llm"
    TTS = "tts"
    REALTIME = "realtime"


class Category(StrEnum):
    """Why it failed: a closed set, shared by every provider."""

    QUOTA_EXHAUSTED = "quota_exhausted"
    """Credits, prepaid balance or spend limit used up: fails identically until billing changes."""
    RATE_LIMITED = "rate_limited"
    """Per-minute/concurrency limit: recovers within seconds to minutes."""
    CLIENT_CANCELLED = "client_cancelled"
    """The request was cancelled by us (HTTP 499, interruption): not a provider failure."""
    AUTH = "auth"
    PERMISSION = "permission"
    PAYMENT_REQUIRED = "payment_required"
    BAD_REQUEST = "bad_request"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    STALLED = "stalled"
    """The provider accepted the work, then went silent: no first token, no audio, no
    transcript within ``GuardPolicy.stall_timeout`` (reported by the guard's watchdog,
    not by livekit)."""
    UNKNOWN = "unknown"


#: Categories that fail identically on every turn: waiting or retrying cannot help.
TERMINAL_CATEGORIES: frozenset[Category] = frozenset(
    {
        Category.QUOTA_EXHAUSTED,
        Category.AUTH,
        Category.PERMISSION,
        Category.PAYMENT_REQUIRED,
    }
)

#: What an end user may hear or read. Deliberately vague: never provider text.
PUBLIC_MESSAGES: Mapping[Category, str] = {
    Category.QUOTA_EXHAUSTED: "The assistant is unavailable right now.",
    Category.RATE_LIMITED: "The assistant is busy right now.",
    Category.CLIENT_CANCELLED: "The request was cancelled.",
    Category.AUTH: "The assistant is unavailable right now.",
    Category.PERMISSION: "The assistant is unavailable right now.",
    Category.PAYMENT_REQUIRED: "The assistant is unavailable right now.",
    Category.BAD_REQUEST: "The assistant ran into a problem.",
    Category.OVERLOADED: "The assistant is busy right now.",
    Category.SERVER_ERROR: "The assistant ran into a problem.",
    Category.TIMEOUT: "The assistant is not responding.",
    Category.CONNECTION: "The assistant is not responding.",
    Category.STALLED: "The assistant is not responding.",
    Category.UNKNOWN: "The assistant ran into a problem.",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaInfo:
    """Quota details a provider reported, where present (all optional)."""

    quota_type: str | None = None
    """What ran out, e.g. ``"llm"``, ``"tts"`` (LiveKit gateway ``quota_type``)."""
    category: str | None = None
    """The provider's own category, e.g. ``"MaxGatewayCredits"``."""
    remaining_limit: str | None = None
    retry_after: float | None = None
    """Seconds, from ``Retry-After`` or the body."""
    usage: Mapping[str, int] = field(default_factory=dict)
    """Numeric quota headers, e.g. ``{"credits_limit": 1000, "credits_used": 1000}``."""


def _enum(enum: type[E], value: object, name: str) -> E:
    try:
        return enum(value)  # type: ignore[arg-type]  # anything: a bad value is a ValueError
    except ValueError:
        valid = ", ".join(repr(member.value) for member in enum)
        raise ValueError(f"Verdict.{name} must be one of {valid}, got {value!r}") from None


# weakref_slot: classify() remembers the verdicts of retry attempts weakly.
@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)
class Verdict:
    """The classification of one failure.

    Built by a classifier with :meth:`agent_guard.classifiers.ErrorFacts.verdict`; read it
    from :attr:`agent_guard.Guard.verdicts`.
    """

    kind: Kind
    category: Category
    terminal: bool
    """It will fail identically every turn: close now."""
    counts: bool
    """Counts toward the kind's tolerance (client cancellations never do)."""
    provider: str | None = None
    status_code: int | None = None
    hint: str | None = None
    """Developer-facing explanation (sanitised, bounded). Never spoken by default."""
    public_message: str = ""
    """Safe to speak or show an end user."""
    quota: QuotaInfo | None = None
    detail: str = ""
    """Redacted, bounded description of the error for logs."""
    recoverable: bool = False
    """livekit's own flag as emitted (``True`` for intermediate retry attempts)."""
    model: str | None = None
    """livekit's label of the model that failed, e.g. ``"livekit.plugins.openai.llm.LLM"``."""
    request_id: str | None = None
    """The provider's request id (``x-request-id``), to quote to its support."""

    def __post_init__(self) -> None:
        # A Verdict is built by classifiers and hooks (user code) and read by the decision
        # and the teardown: a wrong type found there, after the decision, could keep a
        # decided session from closing. So it is normalised or rejected here, where the
        # hook or classifier that built it is blamed (and skipped) instead.
        status = self.status_code
        detail = _DETAIL_SLOT.__get__(self, Verdict)  # not the property: that would redact
        if (
            type(self.kind) is Kind
            and type(self.category) is Category
            and type(self.terminal) is bool
            and type(self.counts) is bool
            and type(self.recoverable) is bool
            and (self.provider is None or type(self.provider) is str)
            and (self.hint is None or type(self.hint) is str)
            and type(self.public_message) is str
            and (type(detail) is str or type(detail) is _Pending)
            and (status is None or (type(status) is int and 100 <= status <= 599))
            and (self.quota is None or type(self.quota) is QuotaInfo)
        ):
            return  # every verdict the classifiers build: nothing to normalise
        if type(self.kind) is not Kind:
            object.__setattr__(self, "kind", _enum(Kind, self.kind, "kind"))
        if type(self.category) is not Category:
            object.__setattr__(self, "category", _enum(Category, self.category, "category"))
        for name in ("terminal", "counts", "recoverable"):
            if type(getattr(self, name)) is not bool:
                raise TypeError(f"Verdict.{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("provider", "hint"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Verdict.{name} must be a str or None, got {value!r}")
        if not isinstance(self.public_message, str):
            raise TypeError(f"Verdict.public_message must be a str, got {self.public_message!r}")
        if not isinstance(detail, str | _Pending):
            raise TypeError(f"Verdict.detail must be a str, got {detail!r}")
        if status is not None and (type(status) is not int or not 100 <= status <= 599):
            raise TypeError(f"Verdict.status_code must be an HTTP status or None, got {status!r}")
        if self.quota is not None and not isinstance(self.quota, QuotaInfo):
            raise TypeError(f"Verdict.quota must be a QuotaInfo or None, got {self.quota!r}")

    def replace(self, **changes: Any) -> Verdict:
        """Return a copy with ``changes`` (used by hooks that override a decision)."""
        if "detail" not in changes:
            # A detail not read yet stays so in the copy (and is redacted once for both).
            changes["detail"] = _DETAIL_SLOT.__get__(self, Verdict)
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able, redacted view (for logs and the frontend)."""
        data = dataclasses.asdict(self)
        data["kind"] = self.kind.value
        data["category"] = self.category.value
        if self.quota is not None:
            data["quota"]["usage"] = dict(self.quota.usage)
        return data


class _Pending:
    """A detail to redact when it is first read (see :func:`pending_detail`)."""

    __slots__ = ("_finish", "_result", "_text")

    def __init__(self, text: str, finish: Callable[[str], str]) -> None:
        self._text = text
        self._finish: Callable[[str], str] | None = finish
        self._result = ""

    def text(self) -> str:
        # Shared by a verdict and its replace() copies: redacted once, for all of them.
        if self._finish is not None:
            try:
                self._result = self._finish(self._text)
            except Exception:
                self._result = ""  # never the unredacted text
            self._finish, self._text = None, ""
        return self._result


def pending_detail(text: str, finish: Callable[[str], str]) -> str:
    """A ``Verdict.detail`` that is ``finish(text)`` (the redaction), computed on first read.

    Most verdicts of a storm are never read past their category (the logs filter INFO,
    the decision reads ``terminal``): redaction is the dearest part of a classification,
    so it is paid when the detail is read (a log line, ``as_dict()``, ``repr()``, ``==``),
    once. ``text`` must be bounded and hold no reference to the error.
    """
    return cast(str, _Pending(text, finish))


# Verdict.detail is a dataclass field stored in its slot; reading it goes through this
# property, which swaps a _Pending for the redacted text on first read. Writing still
# needs object.__setattr__ (dataclasses' __init__ and __setstate__ do), as for any field.
_DETAIL_SLOT: Any = Verdict.__dict__["detail"]


def _read_detail(verdict: Verdict) -> str:
    value = _DETAIL_SLOT.__get__(verdict, Verdict)
    if type(value) is _Pending:
        value = value.text()
        _DETAIL_SLOT.__set__(verdict, value)
    return cast(str, value)


def _write_detail(verdict: Verdict, value: str) -> None:
    _DETAIL_SLOT.__set__(verdict, value)


type.__setattr__(
    Verdict,
    "detail",
    property(
        _read_detail, _write_detail, doc="Redacted, bounded description of the error for logs."
    ),
)

# The fields' own slots, for refill(); detail's is _DETAIL_SLOT (its name is the property).
_COPIED_SLOTS: tuple[Any, ...] = tuple(
    Verdict.__dict__[f.name]
    for f in dataclasses.fields(Verdict)
    if f.name not in ("detail", "request_id")
)
_REQUEST_ID_SLOT: Any = Verdict.__dict__["request_id"]


def refill(template: Verdict, *, detail: str, request_id: str | None) -> Verdict:
    """A copy of ``template`` with its own ``detail`` and ``request_id``.

    For classify()'s answer to a repeat of a failure: the template was validated when it
    was built, and the two new values come from the classification's own helpers
    (``describe`` and ``request_id_of``), so the copy skips ``__post_init__``.
    """
    verdict: Verdict = object.__new__(Verdict)
    for slot in _COPIED_SLOTS:
        slot.__set__(verdict, slot.__get__(template, Verdict))
    _DETAIL_SLOT.__set__(verdict, detail)
    _REQUEST_ID_SLOT.__set__(verdict, request_id)
    return verdict
