"""Step 2 of the data path: an exception becomes a :class:`~agent_guard.Verdict`.

:func:`classify` recovers the facts (:mod:`agent_guard._facts`), runs the classifier
chain over them (by default: the installed provider classifiers, then the core's, see
:mod:`agent_guard.classifiers`), always ends with the generic HTTP rules, and makes a
retry delay longer than the session can wait terminal.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import weakref
from collections.abc import Sequence

from agent_guard._facts import (
    SAFE_ERRORS,
    Classifier,
    ErrorFacts,
    describe,
    facts_from,
    provider_from_label,
)
from agent_guard._fingerprint import fingerprint, volatile_count
from agent_guard._log import log
from agent_guard._verdict import PUBLIC_MESSAGES, Category, Kind, QuotaInfo, Verdict, refill
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, _providers, http_rules
from agent_guard.classifiers._http import retry_delay
from agent_guard.classifiers._providers import first_party, run_chain

__all__ = ["DEFAULT_RETRY_HORIZON", "classify"]

#: Seconds a session can wait for a provider to accept requests again. A caller will not
#: sit through a longer pause (Azure's "retry after 86400 seconds", a Groq daily token
#: limit's "try again in 17m16s"): past it, a rate limit is as final as spent credits.
DEFAULT_RETRY_HORIZON = 60.0

_WAITABLE = frozenset({Category.RATE_LIMITED, Category.OVERLOADED})


def _as_kind(kind: Kind | str) -> Kind:
    if type(kind) is Kind:
        return kind
    try:
        return Kind(kind)
    except (ValueError, TypeError):
        valid = ", ".join(repr(k.value) for k in Kind)
        raise ValueError(f"kind must be one of {valid}, got {kind!r}") from None


def _as_horizon(horizon: float) -> float:
    if type(horizon) is float and not math.isnan(horizon):
        return horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int | float) or math.isnan(horizon):
        raise ValueError(f"retry_horizon must be a number of seconds, got {horizon!r}")
    return float(horizon)


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


def _with_delay(verdict: Verdict, facts: ErrorFacts, horizon: float) -> Verdict:
    """Fill in the provider's retry delay; past the horizon, the verdict turns terminal."""
    if verdict.category not in _WAITABLE or verdict.terminal:
        return verdict
    quota = verdict.quota or QuotaInfo()
    delay = quota.retry_after
    if delay is None:
        delay = retry_delay(facts)
        if delay is None:
            return verdict
        quota = dataclasses.replace(quota, retry_after=delay)
    if delay <= horizon:
        return verdict if quota is verdict.quota else verdict.replace(quota=quota)
    if quota.quota_type is None:
        quota = dataclasses.replace(quota, quota_type=facts.kind.value)
    return verdict.replace(
        category=Category.QUOTA_EXHAUSTED,
        terminal=True,
        public_message=PUBLIC_MESSAGES[Category.QUOTA_EXHAUSTED],
        quota=quota,
        hint=(
            f"The provider asks to wait {delay:.0f} s before retrying, longer than the "
            f"session's retry horizon ({horizon:.0f} s): a daily or tier limit."
        ),
    )


def classify(
    error: BaseException,
    *,
    kind: Kind | str,
    classifiers: Sequence[Classifier] = DEFAULT_CLASSIFIERS,
    label: str | None = None,
    recoverable: bool = False,
    retry_horizon: float = DEFAULT_RETRY_HORIZON,
) -> Verdict:
    """Classify a provider failure.

    Classifiers run in order and the first non-``None`` Verdict wins; one that raises
    (or returns something else) is logged as ``agent_guard.classifier_failed`` and
    skipped. The generic HTTP rules always run last. The default chain dispatches to the
    failing provider's installed classifier (see :mod:`agent_guard.classifiers`); an
    explicit ``classifiers`` replaces it.

    Args:
        error: The exception livekit emitted (``ev.error.error``).
        kind: Which model failed, as a :class:`~agent_guard.Kind` or its value.
        classifiers: The chain, most specific first.
        label: livekit's model label (names the provider and picks its classifier).
        recoverable: livekit's own ``recoverable`` flag, copied to the Verdict.
        retry_horizon: Seconds a session can wait: a rate limit or overload whose
            ``Retry-After`` (or "retry after N seconds" in the message) is longer becomes
            terminal ``QUOTA_EXHAUSTED``.

    Returns:
        The Verdict. Never raises because of ``error`` or a classifier (an ``Exception``
        or ``CancelledError`` they raise is absorbed; ``KeyboardInterrupt`` and
        ``SystemExit`` propagate).

    Raises:
        ValueError: ``kind`` is not a Kind, or ``retry_horizon`` not a number (a
            programming error).
    """
    resolved = _as_kind(kind)
    horizon = _as_horizon(retry_horizon)
    chain = tuple(classifiers)
    label = label if isinstance(label, str) else None
    key = (resolved, chain, label, recoverable, horizon)
    global _last
    last = _last  # read once: another thread may replace it
    if last is not None and last[0]() is error and last[1] == key:
        return last[2]
    # A repeat of a failure seen before (the next retry attempt, the next turn, another
    # session): the same facts but for the request id, the same verdict but for the
    # request id and the detail, which are made for this error.
    printed = None
    if chain == DEFAULT_CLASSIFIERS and first_party(provider_from_label(label)):
        misses = _misses.get(label, 0)
        if misses < _GIVE_UP or misses % _GIVE_UP == 0:
            printed = fingerprint(error)
        if len(_misses) < 1024 or label in _misses:
            _misses[label] = misses + 1  # until it is found a repeat, below
    if printed is not None:
        seen_key = (printed.digest, resolved, label, recoverable, horizon)
        seen = _seen.get(seen_key)
        if seen is not None and seen[0] is _providers._installed and seen[1] is _providers._every:
            try:
                verdict = refill(
                    seen[2], detail=describe(error, printed.message), request_id=printed.request_id
                )
            except SAFE_ERRORS:  # an error object no longer readable: classify it in full
                pass
            else:
                _misses[label] = 0
                _last = _memo(error, key, verdict)
                return verdict
    moved = volatile_count()
    try:
        facts = facts_from(error, kind=resolved, label=label, recoverable=recoverable)
        verdict = _with_delay(run_chain(chain, facts) or http_rules(facts), facts, horizon)
    except SAFE_ERRORS as exc:
        # Not even the generic rules managed: answer without touching the error again.
        log.warning(
            "agent_guard.classification_failed", kind=resolved.value, error_type=type(exc).__name__
        )
        return _unknown(resolved, recoverable)
    if printed is not None and volatile_count() == moved:
        _remember(seen_key, verdict, printed.masked)
    _last = _memo(error, key, verdict)
    return verdict


def _memo(error: BaseException, key: tuple[object, ...], verdict: Verdict) -> _Last | None:
    try:
        return (weakref.ref(error), key, verdict)
    except TypeError:  # a built-in exception type (ValueError()): no weak reference, no memo
        return None


def _remember(key: tuple[object, ...], verdict: Verdict, masked: tuple[str, ...]) -> None:
    # Without the detail (unredacted provider text until read) and the request id: the
    # template keeps only what classifiers made (redacted quota fields, sanitised hints).
    template = refill(verdict, detail="", request_id=None)
    if masked:
        # A hint or quota field copied from a body that quotes the request id (or, cut
        # short, the start of it) would hand this id to the next error's verdict.
        text = repr(template)
        if any(rid[:_QUOTED] in text for rid in masked):
            return
    entry = (_providers._installed, _providers._every, template)
    # pop then store, not store then move_to_end: another thread may evict the key
    # between the two, and move_to_end would raise KeyError out of classify().
    _seen.pop(key, None)
    _seen[key] = entry
    while len(_seen) > _SEEN_SIZE:
        try:
            _seen.popitem(last=False)
        except KeyError:  # emptied by another thread meanwhile
            break


# The last classification, for the same error classified again with the same arguments:
# a guarded session's error event reaches the fleet gate (the model's "error" listener)
# and then the guard, one after the other. Weakly: the error (and its traceback) must
# not outlive the event. Verdicts are immutable, so handing out the same one is safe.
_Last = tuple[weakref.ref[BaseException], tuple[object, ...], Verdict]
_last: _Last | None = None

# Verdicts of failures seen recently, by fingerprint (agent_guard._fingerprint) and the
# other arguments, each held with the provider registry it was made under. No provider
# text: digests, and templates without detail or request id. Bounded; the least recently
# stored goes first.
_SEEN_SIZE = 256
# How much of a request id quoted in a verdict's own fields keeps it from being remembered.
_QUOTED = 8

# Per model label, how many errors in a row were not answered from the cache. A provider
# whose errors never repeat (a body that quotes a countdown, say) would pay for a
# fingerprint on every one: past _GIVE_UP misses in a row, only every _GIVE_UP-th error of
# that label is fingerprinted (and remembered), until one is found a repeat.
_GIVE_UP = 8
_misses: dict[str | None, int] = {}
_seen: collections.OrderedDict[tuple[object, ...], tuple[object, object, Verdict]] = (
    collections.OrderedDict()
)
