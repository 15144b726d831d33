"""Error hooks: plain callables that see each Verdict before the guard decides.

A hook receives the Verdict and returns ``None`` (keep it) or a replacement Verdict
(override it: e.g. ``v.replace(terminal=True)`` to close now, or
``v.replace(terminal=False, counts=False)`` to suppress a close). Hooks run in order,
each seeing the previous one's result, like a structlog processor chain. A hook may
be ``async``; the decision then waits for it (the guard already holds livekit's
built-in close off, so waiting is safe). A hook that raises, or returns anything
else, is logged and ignored: a hook can never break the session.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias

from agent_guard._log import log
from agent_guard._verdict import Category, Kind, Verdict

__all__ = ["Hook", "VerdictCounter", "log_verdict"]

Hook: TypeAlias = Callable[[Verdict], Verdict | Awaitable[Verdict | None] | None]


def log_verdict(verdict: Verdict) -> None:
    """Log every verdict as ``agent_guard.error_classified`` (a default hook).

    Fields: ``kind``, ``category``, ``terminal``, ``counts``, ``recoverable``
    (livekit's flag), ``provider``, ``status_code`` and ``detail`` (redacted).
    """
    emit = log.warning if verdict.terminal else log.info
    emit(
        "agent_guard.error_classified",
        kind=verdict.kind.value,
        category=verdict.category.value,
        terminal=verdict.terminal,
        counts=verdict.counts,
        recoverable=verdict.recoverable,
        provider=verdict.provider,
        status_code=verdict.status_code,
        detail=verdict.detail,
    )


class VerdictCounter:
    """A metrics hook: counts verdicts per (kind, category).

    One instance may be shared by every session of a worker (it is only ever
    touched from the event loop's thread). Export :meth:`snapshot` to your metrics
    system.
    """

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[Kind, Category]] = collections.Counter()
        self._terminal = 0

    def __call__(self, verdict: Verdict) -> None:
        self._counts[(verdict.kind, verdict.category)] += 1
        self._terminal += verdict.terminal

    @property
    def terminal(self) -> int:
        """How many terminal verdicts were seen."""
        return self._terminal

    def snapshot(self) -> Mapping[str, int]:
        """Counts keyed ``"<kind>.<category>"``, e.g. ``{"llm.quota_exhausted": 1}``."""
        return {f"{k.value}.{c.value}": n for (k, c), n in sorted(self._counts.items())}
