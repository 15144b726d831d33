"""Between classify and decide: the user's hooks, a chain of plain callables.

A hook receives the Verdict and returns ``None`` (keep it) or a replacement Verdict
(override it: ``v.replace(terminal=True)`` to close now, or
``v.replace(terminal=False, counts=False)`` to suppress a close). Hooks run in order,
each seeing the previous one's result, like a structlog processor chain.

A hook is user code, so the chain is built to survive it: a hook that raises (even
``CancelledError``) or returns anything but a Verdict or ``None`` is logged and skipped;
an ``async`` hook gets ``hook_timeout`` seconds per verdict, in a task of its own so one
that ignores cancellation cannot hold the chain; and at most :data:`MAX_IN_FLIGHT`
verdicts wait in async hooks at once — past that, a verdict skips the async hooks
rather than queue behind them. Each verdict goes through the chain on its own (a slow
hook on one does not delay the next); the decision's tickets keep the streaks right
whatever order they come back in.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeAlias

from agent_guard._log import log
from agent_guard._verdict import Verdict

__all__ = ["MAX_IN_FLIGHT", "Hook", "HookChain"]

Hook: TypeAlias = Callable[[Verdict], Verdict | Awaitable[Verdict | None] | None]

Spawn: TypeAlias = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]

#: Verdicts that may wait in async hooks at once (a storm with a stuck hook stays bounded).
MAX_IN_FLIGHT = 64


class HookChain:
    """Runs each verdict through the hooks, then hands the result to a continuation."""

    def __init__(self, hooks: Iterable[Hook], *, timeout: float) -> None:
        self._hooks = list(hooks)
        self._timeout = timeout
        self._in_flight = 0
        self._overloaded_logged = False

    def add(self, hook: Hook) -> None:
        self._hooks.append(hook)

    def run(self, verdict: Verdict, then: Callable[[Verdict], None], spawn: Spawn) -> None:
        """Run the chain on ``verdict`` and call ``then`` with the result.

        Synchronous hooks run inline; from the first async one on, the chain goes on in
        a task started with ``spawn`` (passed per call: holding the guard's would tie the
        two in a reference cycle). ``then`` is called exactly once, whatever the hooks do.
        """
        for i, hook in enumerate(self._hooks):
            result = _call(hook, verdict)
            if result is None:  # the common answer: isawaitable's ABC check costs more
                continue
            if inspect.isawaitable(result):
                if self._in_flight >= MAX_IN_FLIGHT:
                    _discard(result)
                    self._log_overloaded()
                    continue
                self._in_flight += 1
                spawn(self._resume(verdict, then, i, result))
                return
            verdict = _accept(hook, result, verdict)
        then(verdict)

    async def _resume(
        self,
        verdict: Verdict,
        then: Callable[[Verdict], None],
        index: int,
        pending: Awaitable[Any],
    ) -> None:
        try:
            for i in range(index, len(self._hooks)):
                hook = self._hooks[i]
                result = pending if i == index else _call(hook, verdict)
                if inspect.isawaitable(result):
                    result = await self._bounded(hook, result)
                verdict = _accept(hook, result, verdict)
        finally:
            # Even when this task is cancelled (the loop shutting down), the verdict is
            # decided: a terminal one must still close the session.
            self._in_flight -= 1
            then(verdict)

    async def _bounded(self, hook: Hook, awaitable: Awaitable[Any]) -> Any:
        # A task of its own: awaiting the hook directly would leave this chain at the
        # mercy of a hook that swallows the cancellation asyncio.timeout() sends it.
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_retrieve)
            log.warning("agent_guard.hook_timed_out", hook=_name(hook), after=self._timeout)
            return None
        if task.cancelled():
            # The hook awaited something that was cancelled; this chain was not.
            log.warning("agent_guard.hook_failed", hook=_name(hook), error_type="CancelledError")
            return None
        if (exc := task.exception()) is not None:
            log.warning("agent_guard.hook_failed", hook=_name(hook), error_type=type(exc).__name__)
            return None
        return task.result()

    def _log_overloaded(self) -> None:
        if not self._overloaded_logged:
            self._overloaded_logged = True
            log.warning("agent_guard.hooks_overloaded", in_flight=MAX_IN_FLIGHT)


def _call(hook: Hook, verdict: Verdict) -> Any:
    try:
        return hook(verdict)
    except (Exception, asyncio.CancelledError) as e:
        # CancelledError raised by a hook is the hook's failure, not a cancellation of
        # livekit's task: letting it out would drop the verdict and unwind the model.
        log.warning("agent_guard.hook_failed", hook=_name(hook), error_type=type(e).__name__)
        return None


def _accept(hook: Hook, result: Any, verdict: Verdict) -> Verdict:
    if result is None:
        return verdict
    if isinstance(result, Verdict):
        return result
    log.warning("agent_guard.hook_invalid", hook=_name(hook), returned=type(result).__name__)
    return verdict


def _discard(awaitable: Awaitable[Any]) -> None:
    if inspect.iscoroutine(awaitable):
        awaitable.close()  # never awaited: no "coroutine was never awaited" warning
    elif isinstance(awaitable, asyncio.Future):
        awaitable.cancel()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _name(hook: Any) -> str:
    try:
        return str(getattr(hook, "__qualname__", None) or type(hook).__qualname__)
    except Exception:
        return type(hook).__qualname__
