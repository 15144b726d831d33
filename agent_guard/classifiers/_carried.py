"""Errors that already know their Verdict speak for themselves.

The guarded fallback adapters (:mod:`agent_guard.fallback`) classify each instance's
failure as it happens and raise an ``AllFailedError`` carrying the round's combined
Verdict as ``.verdict``. Reading that attribute, rather than importing the class, keeps
the classifiers below the adapters (which call :func:`agent_guard.classify`): the data
path imports downward only.
"""

from __future__ import annotations

from agent_guard._facts import ErrorFacts, safe_getattr
from agent_guard._verdict import Verdict

__all__ = ["carried_verdict"]


def carried_verdict(facts: ErrorFacts) -> Verdict | None:
    """The Verdict an exception on the chain carries as ``.verdict``, if any.

    Put it before any classifier that reads statuses or bodies: behind a guarded
    FallbackAdapter the whole round decides, not the one instance error on the chain.

    Args:
        facts: What :func:`agent_guard.classify` recovered from the error.

    Returns:
        The carried Verdict, with this report's kind and livekit ``recoverable`` flag;
        ``None`` when no error on the chain carries one.
    """
    for error in facts.chain:
        carried = safe_getattr(error, "verdict")
        if isinstance(carried, Verdict):
            return carried.replace(kind=facts.kind, recoverable=facts.recoverable)
    return None
