"""Provider classifiers, found where they are installed and run only on their own errors.

A provider distribution (``pip install livekit-agent-guard[anthropic]``) registers its
classifier in the ``agent_guard.classifiers`` entry-point group, under the provider's
name as livekit's model labels spell it (``livekit.plugins.<name>.…``)::

    [project.entry-points."agent_guard.classifiers"]
    anthropic = "agent_guard_anthropic:classify"

:func:`by_provider` (in :data:`~agent_guard.classifiers.DEFAULT_CLASSIFIERS`) reads the
provider from the failing model's label and runs that provider's classifier, then the
core's (LiveKit gateway, OpenAI-compatible): installing every plugin costs one label
lookup per error, not one classifier per plugin. Without a label (a direct
:func:`agent_guard.classify` call, a custom model), every installed classifier is tried,
each recognising its own body shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType

from agent_guard._facts import SAFE_ERRORS, Classifier, ErrorFacts, safe_getattr, safe_str
from agent_guard._fingerprint import volatile
from agent_guard._log import log
from agent_guard._redact import redact
from agent_guard._verdict import Kind, Verdict
from agent_guard.classifiers._gateway import livekit_gateway
from agent_guard.classifiers._openai import openai_rules

__all__ = [
    "DISTRIBUTIONS",
    "ENTRY_POINT_GROUP",
    "by_provider",
    "installed_providers",
    "run_chain",
]

ENTRY_POINT_GROUP = "agent_guard.classifiers"

#: Providers whose errors need their own classifier, and the install that brings it.
DISTRIBUTIONS: Mapping[str, str] = MappingProxyType(
    {
        name: f"livekit-agent-guard[{name}]"
        for name in ("anthropic", "assemblyai", "cartesia", "deepgram", "elevenlabs", "google")
    }
)

#: The core's own provider rules, run after the provider's classifier.
_CORE: tuple[Classifier, ...] = (livekit_gateway, openai_rules)

_installed: Mapping[str, tuple[Classifier, ...]] | None = None
_every: tuple[Classifier, ...] = ()
_missing_logged: set[str] = set()


def _qualname(classifier: object) -> str:
    name = safe_getattr(classifier, "__qualname__")
    return name if isinstance(name, str) else type(classifier).__qualname__


def _log_failure(classifier: object, kind: Kind, **fields: str) -> None:
    volatile()  # logged per classification: a retry attempt must log it again
    log.warning(
        "agent_guard.classifier_failed",
        classifier=_qualname(classifier),
        kind=kind.value,
        **fields,
    )


def run_chain(classifiers: tuple[Classifier, ...], facts: ErrorFacts) -> Verdict | None:
    """Run ``classifiers`` in order; the first Verdict wins.

    One that raises (``Exception`` or ``CancelledError``) or answers something other
    than a Verdict or ``None`` is logged as ``agent_guard.classifier_failed`` (redacted)
    and skipped.
    """
    for classifier in classifiers:
        try:
            # object, not Verdict | None: third-party classifiers return anything.
            verdict: object = classifier(facts)
        except SAFE_ERRORS as exc:
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


def _load() -> Mapping[str, tuple[Classifier, ...]]:
    found: dict[str, list[Classifier]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            classifier: object = entry.load()
        except SAFE_ERRORS as exc:
            log.warning(
                "agent_guard.classifier_not_loaded",
                provider=entry.name,
                entry_point=entry.value,
                error_type=type(exc).__name__,
            )
            continue
        if not callable(classifier):
            log.warning(
                "agent_guard.classifier_not_loaded",
                provider=entry.name,
                entry_point=entry.value,
                error_type="not callable",
            )
            continue
        found.setdefault(entry.name, []).append(classifier)
    return MappingProxyType({name: tuple(chain) for name, chain in sorted(found.items())})


def installed_providers(*, reload: bool = False) -> Mapping[str, tuple[Classifier, ...]]:
    """The provider classifiers installed in this environment, by provider name.

    Read once per process from the ``agent_guard.classifiers`` entry points (a few
    milliseconds, on the first classification or at this call: call it at start-up, in
    ``prewarm``, to take that off the first error).

    Args:
        reload: Read the entry points again (after installing a plugin at run time).
    """
    global _installed, _every
    if _installed is None or reload:
        _installed = _load()
        _every = tuple(c for chain in _installed.values() for c in chain)
    return _installed


def _log_missing(provider: str, kind: Kind) -> None:
    if provider in _missing_logged:
        return
    _missing_logged.add(provider)
    log.warning(
        "agent_guard.classifier_not_installed",
        provider=provider,
        kind=kind.value,
        install=f"pip install '{DISTRIBUTIONS[provider]}'",
    )


def _chain_for(provider: str | None, kind: Kind) -> tuple[Classifier, ...]:
    installed = installed_providers()
    if provider is None:
        return _every
    chain = installed.get(provider)
    if chain is None:
        if provider in DISTRIBUTIONS:
            _log_missing(provider, kind)
        return ()
    return chain


# The packages whose classifiers read no more of an error than agent_guard._fingerprint
# digests: the core's and this repository's provider plugins.
_OWN_PACKAGES = frozenset({"agent_guard", *(f"agent_guard_{name}" for name in DISTRIBUTIONS)})
_own_for: object = None
_own: dict[str | None, bool] = {}


def _is_own(classifier: object) -> bool:
    module = safe_getattr(classifier, "__module__")
    return isinstance(module, str) and module.partition(".")[0] in _OWN_PACKAGES


def first_party(provider: str | None) -> bool:
    """Whether every classifier :func:`by_provider` runs for ``provider`` is this project's.

    Only then may a verdict be remembered for a retry attempt (see
    :mod:`agent_guard._fingerprint`): a third-party classifier may read anything.
    """
    global _own_for
    installed = installed_providers()
    if _own_for is not installed:
        _own.clear()
        _own_for = installed
    try:
        return _own[provider]
    except KeyError:
        pass
    chain = _every if provider is None else installed.get(provider, ())
    own = all(_is_own(c) for c in chain)
    if len(_own) < 1024:
        _own[provider] = own
    return own


def by_provider(facts: ErrorFacts) -> Verdict | None:
    """Dispatch to the failing provider's classifier, then the core's provider rules.

    The provider comes from the model label (:attr:`ErrorFacts.provider`). An error from
    a provider with its own distribution that is not installed is logged once per
    process (``agent_guard.classifier_not_installed``, naming the install).

    Args:
        facts: What :func:`agent_guard.classify` recovered from the error.

    Returns:
        The first Verdict of the provider's classifier, the LiveKit gateway rules or the
        OpenAI-compatible rules; ``None`` when none recognises the error.
    """
    return run_chain(_chain_for(facts.provider, facts.kind), facts) or run_chain(_CORE, facts)
