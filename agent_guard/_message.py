"""Step 4a of the data path: what the caller hears, decided from the policy and the verdict.

Pure: no session, no audio, no I/O. :func:`resolve` picks the farewell (text, and the
recording the policy pairs with it); which recording actually plays when TTS cannot
speak is the playback's choice.
"""

from __future__ import annotations

from agent_guard._log import log
from agent_guard._policy import DEFAULT_ERROR_MESSAGE, Farewell, GuardPolicy, MessageFactory
from agent_guard._verdict import Category, Verdict

__all__ = ["resolve", "static_texts"]


def resolve(policy: GuardPolicy, verdict: Verdict, *, final: bool = False) -> Farewell | None:
    """The farewell for a close caused by ``verdict``; ``None`` means close silently.

    Precedence: ``messages[category]``, ``messages[kind]``, then ``error_message``.
    ``final`` marks a close that is as final as a terminal verdict (the model gave up):
    the default apology is spoken for it too.
    """
    for key in (verdict.category, verdict.kind):
        if key in policy.messages:
            text = policy.messages[key]
            return None if text is None else Farewell(text=text, audio=policy.farewell_audio)
    msg = policy.error_message
    if msg is None:
        return None
    if isinstance(msg, str):
        return Farewell(text=msg, audio=policy.farewell_audio)
    if callable(msg):
        return _from_factory(msg, verdict, policy)
    if not (verdict.terminal or final or verdict.category is Category.STALLED):
        # A caller told "one moment" and then left in silence is owed a goodbye.
        return None
    if policy.speak_hint and verdict.hint:
        # Opt-in only: the hint is gateway text (sanitised, bounded) meant for developers.
        return Farewell(text=verdict.hint, audio=policy.farewell_audio)
    return Farewell(text=DEFAULT_ERROR_MESSAGE, audio=policy.farewell_audio)


def _from_factory(
    factory: MessageFactory, verdict: Verdict, policy: GuardPolicy
) -> Farewell | None:
    try:
        out = factory(verdict)
    except Exception as e:
        # A broken factory must not make the close silent: fall back to the default.
        log.warning("agent_guard.message_factory_failed", error_type=type(e).__name__)
        return Farewell(text=DEFAULT_ERROR_MESSAGE, audio=policy.farewell_audio)
    if out is None or isinstance(out, Farewell):
        return out
    if isinstance(out, str) and out.strip():
        return Farewell(text=out, audio=policy.farewell_audio)
    log.warning("agent_guard.message_factory_invalid", returned=type(out).__name__)
    return Farewell(text=DEFAULT_ERROR_MESSAGE, audio=policy.farewell_audio)


def static_texts(policy: GuardPolicy) -> list[str]:
    """The farewell texts known before any failure (what presynthesis can cover)."""
    texts = [t for t in policy.messages.values() if t]
    if isinstance(policy.error_message, str):
        texts.append(policy.error_message)
    elif policy.error_message is not None and not callable(policy.error_message):
        texts.append(DEFAULT_ERROR_MESSAGE)
    return texts
