"""Step 4a of the data path: what the caller hears, decided from the policy and the verdict.

No session, no audio: :func:`resolve` picks the farewell (text, and the recording the
policy pairs with it); which recording actually plays when TTS cannot speak is the
playback's choice. The one piece of user code here, an ``error_message`` factory, is
bounded: an ``async`` one is awaited, a plain one runs in a worker thread (a factory
that blocks must not block the event loop, nor push the close past its deadline), each
for at most ``budget`` seconds, after which the default apology is used.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from agent_guard._log import log
from agent_guard._policy import DEFAULT_ERROR_MESSAGE, Farewell, GuardPolicy, MessageFactory
from agent_guard._verdict import Category, Verdict

__all__ = ["resolve", "static_texts"]


async def resolve(
    policy: GuardPolicy, verdict: Verdict, *, final: bool = False, budget: float = 1.0
) -> Farewell | None:
    """The farewell for a close caused by ``verdict``; ``None`` means close silently.

    Precedence: ``messages[category]``, ``messages[kind]``, then ``error_message``.
    ``final`` marks a close that is as final as a terminal verdict (the model gave up):
    the default apology is spoken for it too. ``budget`` bounds a factory. Never raises.
    """
    for key in (verdict.category, verdict.kind):
        if key in policy.messages:
            text = policy.messages[key]
            return None if text is None else Farewell._of_policy(text, policy.farewell_audio)
    msg = policy.error_message
    if msg is None:
        return None
    if isinstance(msg, str):
        return Farewell._of_policy(msg, policy.farewell_audio)
    if callable(msg):
        return await _from_factory(msg, verdict, policy, budget)
    if not (verdict.terminal or final or verdict.category is Category.STALLED):
        # A caller told "one moment" and then left in silence is owed a goodbye.
        return None
    if policy.speak_hint and verdict.hint:
        # Opt-in only: the hint is gateway text (sanitised, bounded) meant for developers.
        return Farewell._of_policy(verdict.hint, policy.farewell_audio)
    return Farewell._of_policy(DEFAULT_ERROR_MESSAGE, policy.farewell_audio)


async def _from_factory(
    factory: MessageFactory, verdict: Verdict, policy: GuardPolicy, budget: float
) -> Farewell | None:
    try:
        out = await asyncio.wait_for(_call(factory, verdict), budget)
    except TimeoutError:
        log.warning("agent_guard.message_factory_timed_out", after=budget)
        return Farewell._of_policy(DEFAULT_ERROR_MESSAGE, policy.farewell_audio)
    except (Exception, asyncio.CancelledError) as e:
        task = asyncio.current_task()
        if isinstance(e, asyncio.CancelledError) and task is not None and task.cancelling():
            raise
        # A broken factory must not make the close silent: fall back to the default.
        log.warning("agent_guard.message_factory_failed", error_type=type(e).__name__)
        return Farewell._of_policy(DEFAULT_ERROR_MESSAGE, policy.farewell_audio)
    if out is None or isinstance(out, Farewell):
        return out
    if isinstance(out, str) and out.strip():
        return Farewell._of_policy(out, policy.farewell_audio)
    log.warning("agent_guard.message_factory_invalid", returned=type(out).__name__)
    return Farewell._of_policy(DEFAULT_ERROR_MESSAGE, policy.farewell_audio)


async def _call(factory: MessageFactory, verdict: Verdict) -> Any:
    if _is_async(factory):
        out = factory(verdict)
    else:
        out = await asyncio.to_thread(factory, verdict)
    if inspect.isawaitable(out):  # a plain callable that returns a coroutine
        out = await out
    return out


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an async __call__, not callable()
    )


def static_texts(policy: GuardPolicy) -> list[str]:
    """The farewell texts known before any failure (what presynthesis can cover)."""
    texts = [t for t in policy.messages.values() if t]
    if isinstance(policy.error_message, str):
        texts.append(policy.error_message)
    elif policy.error_message is not None and not callable(policy.error_message):
        texts.append(DEFAULT_ERROR_MESSAGE)
    return texts
