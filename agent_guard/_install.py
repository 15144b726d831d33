"""Worker-wide default: guard every AgentSession a worker process starts.

One call in a worker's ``prewarm`` (or at the top of the entrypoint) replaces editing
each session's code. It wraps ``AgentSession.start`` so that :func:`guard` runs at the
very beginning of ``start()``, which is still before livekit registers its own
listeners (SessionHost registers during ``start()``), so the ordering guarantee of an
explicit ``guard()`` call holds. Sessions guarded explicitly keep their own policy.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from livekit.agents import AgentSession

from agent_guard import _guard
from agent_guard._errors import GuardError
from agent_guard._policy import GuardPolicy

__all__ = ["install", "uninstall"]

_ORIGINAL_START: Callable[..., Any] | None = None
_WRAPPER: Callable[..., Any] | None = None


def install(policy: GuardPolicy | None = None) -> None:
    """Guard every ``AgentSession`` started in this process from now on with ``policy``.

    Calling it again replaces the policy for sessions started afterwards. ``guard(session)``
    without a policy uses it too.
    """
    global _ORIGINAL_START, _WRAPPER
    if policy is not None and not isinstance(policy, GuardPolicy):
        raise TypeError(f"policy must be a GuardPolicy, got {type(policy).__name__}")
    _guard.set_worker_policy(policy or GuardPolicy())
    if _ORIGINAL_START is not None:
        return
    original = AgentSession.start
    _ORIGINAL_START = original

    @functools.wraps(original)
    async def start(self: AgentSession[Any], *args: Any, **kwargs: Any) -> Any:
        if _guard.worker_policy() is not None and _guard.guarded(self) is None:
            # A restarted session was guarded (or deliberately not) before its first start.
            with contextlib.suppress(GuardError):
                _guard.guard(self)
        return await original(self, *args, **kwargs)

    AgentSession.start = start  # type: ignore[method-assign]
    _WRAPPER = start


def uninstall() -> None:
    """Stop guarding new sessions by default (sessions already guarded stay guarded)."""
    global _ORIGINAL_START, _WRAPPER
    _guard.set_worker_policy(None)  # the wrapper does nothing without a policy
    if _WRAPPER is not None and AgentSession.start is _WRAPPER:
        AgentSession.start = _ORIGINAL_START  # type: ignore[method-assign, assignment]
        _ORIGINAL_START = _WRAPPER = None
    # Otherwise someone patched start() after us: unwrapping would drop their patch, so
    # our wrapper stays in their chain, inert, and a later install() re-arms it.
