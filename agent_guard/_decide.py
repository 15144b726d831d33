"""Step 3 of the data path: a Verdict becomes a decision to close, or not.

Pure state, no livekit and no asyncio: failure streaks per kind (optionally within a
window), success epochs, and the one decision per run. Time comes from an injected
clock, so the rules are unit-tested in microseconds.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from agent_guard._policy import Tolerance
from agent_guard._verdict import Kind, Verdict

__all__ = ["Decider", "Decision", "Reason"]


class Reason(StrEnum):
    """Why the guard decided to close."""

    TERMINAL = "terminal"
    """The verdict says it will fail identically every turn."""
    TOLERANCE_EXCEEDED = "tolerance_exceeded"
    """Too many consecutive countable failures of one kind."""
    MODEL_GAVE_UP = "model_gave_up"
    """A realtime model reported a final (non-recoverable) error: livekit's realtime
    session has stopped reconnecting, so nothing will answer again, whatever the
    category."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The guard's decision to close the session (made at most once per run)."""

    verdict: Verdict
    reason: Reason
    at: float
    """When the decision was made, on the decider's clock (``time.monotonic()``)."""


class Decider:
    """Counts failures per kind and decides, at most once, that the session must end.

    A *ticket* (:meth:`ticket`) is taken when a failure arrives and handed back with its
    verdict to :meth:`decide`: a failure that waited (in an async hook) while the kind
    succeeded belongs to the streak that success ended, and does not count.
    """

    def __init__(
        self,
        tolerances: Mapping[Kind | str, Tolerance],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tolerances = tolerances
        self._clock = clock
        self._failures: dict[Kind, collections.deque[float]] = {
            kind: collections.deque() for kind in Kind
        }
        self._epochs: dict[Kind, int] = dict.fromkeys(Kind, 0)
        self.decision: Decision | None = None

    def ticket(self, kind: Kind) -> int:
        """The kind's success epoch now: take it when a failure arrives."""
        return self._epochs[kind]

    def succeeded(self, kind: Kind) -> None:
        """``kind`` worked (the agent spoke, a transcript arrived): its streak ends."""
        self._failures[kind].clear()
        self._epochs[kind] += 1

    def reset(self) -> None:
        """A new run (the session was started again after a close): decide afresh."""
        self.decision = None
        for failures in self._failures.values():
            failures.clear()

    def decide(self, verdict: Verdict, ticket: int) -> Decision | None:
        """Count ``verdict`` and return the decision to close, if this is it.

        Returns ``None`` when the session goes on, and always once a decision was made.
        """
        if self.decision is not None:
            return None
        reason = self._reason(verdict, ticket)
        if reason is None:
            return None
        self.decision = Decision(verdict=verdict, reason=reason, at=self._clock())
        return self.decision

    def _reason(self, verdict: Verdict, ticket: int) -> Reason | None:
        if verdict.terminal:
            # Close in the first failing turn, even on a recoverable=True attempt:
            # retrying cannot help, and every retry spends quota and time.
            return Reason.TERMINAL
        if not verdict.counts:
            return None
        if verdict.kind is Kind.REALTIME:
            if not verdict.recoverable:
                return Reason.MODEL_GAVE_UP
            # Recoverable realtime errors are failed responses and reconnect attempts;
            # stock livekit ignores them all, so a model failing every response would
            # never close. They count toward the realtime tolerance.
        elif verdict.recoverable:
            # Intermediate retry attempts are the model's business: a failed turn is
            # reported once, with recoverable=False.
            return None
        if ticket != self._epochs[verdict.kind]:
            return None
        tolerance = self._tolerances[verdict.kind]
        now = self._clock()
        failures = self._failures[verdict.kind]
        failures.append(now)
        if tolerance.window is not None:
            while failures and now - failures[0] > tolerance.window:
                failures.popleft()
        # Bounded: only the last max_failures + 1 timestamps can ever matter.
        while len(failures) > tolerance.max_failures + 1:
            failures.popleft()
        if len(failures) > tolerance.max_failures:
            return Reason.TOLERANCE_EXCEEDED
        return None
