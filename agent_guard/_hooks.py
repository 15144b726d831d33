"""Between classify and decide: the user's hooks, a chain of plain callables.

A hook receives the Verdict and returns ``None`` (keep it) or a replacement Verdict
(override it: ``v.replace(terminal=True)`` to close now, or
``v.replace(terminal=False, counts=False)`` to suppress a close). Hooks run in order,
each seeing the previous one's result, like a structlog processor chain. A hook may be
``async``; the rest of the chain, and the decision, then wait for it in a task, and
later verdicts queue behind it so they are decided in the order they arrived. A hook
that raises, or returns anything else, is logged and ignored: a hook can never break
the session.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeAlias

from agent_guard._log import log
from agent_guard._verdict import Verdict

__all__ = ["Hook", "HookChain"]

Hook: TypeAlias = Callable[[Verdict], Verdict | Awaitable[Verdict | None] | None]

Spawn: TypeAlias = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class HookChain:
    """Runs each verdict through the hooks, then hands the result to a continuation."""

    def __init__(self, hooks: Iterable[Hook]) -> None:
        self._hooks = list(hooks)
        # The last verdict still in an async hook: later ones queue behind it.
        self._pending: asyncio.Task[None] | None = None

    def add(self, hook: Hook) -> None:
        self._hooks.append(hook)

    def run(self, verdict: Verdict, then: Callable[[Verdict], None], spawn: Spawn) -> None:
        """Run the chain on ``verdict`` and call ``then`` with the result.

        Synchronous hooks run inline; from the first async one on, the chain goes on in
        a task started with ``spawn`` (passed per call: holding the guard's would tie the
        two in a reference cycle).
        """
        if self._pending is not None and not self._pending.done():
            self._pending = spawn(self._resume(verdict, then, 0, previous=self._pending))
            return
        for i, hook in enumerate(self._hooks):
            result = _call(hook, verdict)
            if inspect.isawaitable(result):
                self._pending = spawn(self._resume(verdict, then, i, awaiting=result))
                return
            verdict = _accept(hook, result, verdict)
        then(verdict)

    async def _resume(
        self,
        verdict: Verdict,
        then: Callable[[Verdict], None],
        first: int,
        *,
        previous: asyncio.Task[None] | None = None,
        awaiting: Awaitable[Any] | None = None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        for i in range(first, len(self._hooks)):
            hook = self._hooks[i]
            result = awaiting if i == first and awaiting is not None else _call(hook, verdict)
            if inspect.isawaitable(result):
                try:
                    result = await result
                except Exception as e:
                    log.warning(
                        "agent_guard.hook_failed", hook=_name(hook), error_type=type(e).__name__
                    )
                    result = None
            verdict = _accept(hook, result, verdict)
        then(verdict)


def _call(hook: Hook, verdict: Verdict) -> Any:
    try:
        return hook(verdict)
    except Exception as e:
        log.warning("agent_guard.hook_failed", hook=_name(hook), error_type=type(e).__name__)
        return None


def _accept(hook: Hook, result: Any, verdict: Verdict) -> Verdict:
    if result is None:
        return verdict
    if isinstance(result, Verdict):
        return result
    log.warning("agent_guard.hook_invalid", hook=_name(hook), returned=type(result).__name__)
    return verdict


def _name(hook: Any) -> str:
    return str(getattr(hook, "__qualname__", None) or type(hook).__qualname__)
