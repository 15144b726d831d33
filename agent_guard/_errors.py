"""The guard's own exceptions: raised for misuse only.

Provider errors are never wrapped or re-raised by the guard; they reach the guard as
livekit error events and leave it as Verdicts.
"""

from __future__ import annotations

__all__ = ["GuardError", "PolicyError"]


class GuardError(RuntimeError):
    """The guard was used the wrong way (e.g. attached after ``session.start()``)."""


class PolicyError(ValueError):
    """A :class:`~agent_guard.GuardPolicy` or one of its parts is invalid."""
