"""What a failed round says: every instance's verdict, and the one that decides."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from livekit.agents._exceptions import APIConnectionError

from agent_guard._verdict import Category, Verdict

__all__ = ["AllFailedError", "decisive"]


def decisive(verdicts: Sequence[Verdict]) -> int:
    """The index of the verdict that speaks for a whole failed round.

    Terminal only when every instance is: then the first (the primary). Otherwise the
    first transient verdict, preferring one that knows more (a known category, then an
    HTTP status) over a bare UNKNOWN or a status-less one.
    """
    if all(v.terminal for v in verdicts):
        return 0
    transient = [i for i, v in enumerate(verdicts) if not v.terminal]
    return min(
        transient,
        key=lambda i: (
            verdicts[i].category is Category.UNKNOWN,
            verdicts[i].status_code is None,
            i,
        ),
    )


class AllFailedError(APIConnectionError):
    """Every instance of a guarded fallback adapter failed; each one's verdict is kept.

    Raised instead of livekit's cause-less ``APIConnectionError("all LLMs failed ...")``.
    ``__cause__`` is the decisive instance's own error (see :attr:`verdict`), so even a
    classifier chain without :func:`~agent_guard.classifiers.carried_verdict` reads the
    real status and body.
    ``retryable`` is False when every instance failed terminally: livekit's retry loop then
    stops instead of rerunning the round.

    Attributes:
        verdicts: One Verdict per instance, in the adapter's order: its failure in this
            round, or the last one that made it unavailable.
        decisive: The index of the verdict :attr:`verdict` is built from.
        verdict: The combined verdict: terminal only if every instance's is (then the
            primary's, with its real category, e.g. ``QUOTA_EXHAUSTED``), otherwise the
            most informative transient one. :func:`~agent_guard.classifiers.carried_verdict`
            hands it to the session.
    """

    def __init__(self, message: str, *, verdicts: Sequence[Verdict]) -> None:
        if not verdicts:
            raise ValueError("AllFailedError needs one verdict per instance")
        self.verdicts = tuple(verdicts)
        self.decisive = decisive(self.verdicts)
        chosen = self.verdicts[self.decisive]
        summary = ", ".join(f"#{i} {v.category.value}" for i, v in enumerate(self.verdicts))
        self.verdict = chosen.replace(
            detail=f"all {len(self.verdicts)} instances failed ({summary}); "
            f"#{self.decisive}: {chosen.detail}"
        )
        super().__init__(message, retryable=not self.verdict.terminal)

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException copies and pickles as cls(*args); verdicts is keyword-only.
        return functools.partial(AllFailedError, verdicts=self.verdicts), (self.message,)
