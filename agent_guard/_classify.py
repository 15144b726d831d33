"""Step 2 of the data path: an exception becomes a :class:`~agent_guard.Verdict`.

:func:`classify` recovers the facts (:mod:`agent_guard._facts`), runs the classifier
chain over them and always ends with the generic HTTP rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agent_guard._facts import Classifier, ErrorFacts, facts_from, safe_getattr, safe_str
from agent_guard._log import log
from agent_guard._redact import redact
from agent_guard._verdict import PUBLIC_MESSAGES, Category, Kind, Verdict
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, http_rules

__all__ = ["classify"]


def _as_kind(kind: Kind | str) -> Kind:
    try:
        return Kind(kind)
    except (ValueError, TypeError):
        valid = ", ".join(repr(k.value) for k in Kind)
        raise ValueError(f"kind must be one of {valid}, got {kind!r}") from None


def _qualname(classifier: object) -> str:
    name = safe_getattr(classifier, "__qualname__")
    return name if isinstance(name, str) else type(classifier).__qualname__


def _log_failure(classifier: object, kind: Kind, **fields: str) -> None:
    log.warning(
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
                error=redact(safe_str(exc), limit=200),
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
        log.warning(
            "agent_guard.classification_failed", kind=resolved.value, error_type=type(exc).__name__
        )
        return _unknown(resolved, recoverable)
