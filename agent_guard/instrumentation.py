"""Ready-made hooks for observing verdicts: a log line per verdict, and counters.

Both are plain callables to list in ``GuardPolicy(hooks=...)``; :func:`log_verdict` is
there by default.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping

from agent_guard._log import log, verdict_fields
from agent_guard._verdict import Category, Kind, Verdict

__all__ = ["VerdictCounter", "log_verdict"]


def log_verdict(verdict: Verdict) -> None:
    """Log every verdict as ``agent_guard.error_classified`` (a default hook).

    At ``warning`` for a terminal verdict, ``info`` otherwise. Fields: ``kind``,
    ``category``, ``terminal``, ``counts``, ``recoverable`` (livekit's flag), ``model``
    (livekit's label), ``provider``, ``status_code``, ``request_id``, ``hint`` and
    ``quota`` (when the provider sent them) and ``detail`` (redacted); plus ``job_id``,
    ``room_id`` and ``room_name`` inside a livekit job.
    """
    if verdict.terminal:
        log.warning("agent_guard.error_classified", **verdict_fields(verdict))
    elif log.is_enabled(logging.INFO):  # every retry of every failure: skip the fields
        log.info("agent_guard.error_classified", **verdict_fields(verdict))


class VerdictCounter:
    """A metrics hook: counts verdicts per (kind, category).

    One instance may be shared by every session of a worker (it is only ever touched
    from the event loop's thread). Export :meth:`snapshot` to your metrics system.
    """

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[Kind, Category]] = collections.Counter()
        self._terminal = 0

    def __call__(self, verdict: Verdict) -> None:
        self._counts[(verdict.kind, verdict.category)] += 1
        self._terminal += verdict.terminal

    def __repr__(self) -> str:
        return f"VerdictCounter(terminal={self._terminal}, counts={dict(self.snapshot())})"

    @property
    def terminal(self) -> int:
        """How many terminal verdicts were seen."""
        return self._terminal

    def snapshot(self) -> Mapping[str, int]:
        """Counts keyed ``"<kind>.<category>"``, e.g. ``{"llm.quota_exhausted": 1}``."""
        return {f"{k.value}.{c.value}": n for (k, c), n in sorted(self._counts.items())}
