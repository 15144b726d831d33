"""Gates: where a refused request stops before it becomes an HTTP request.

livekit starts an LLM reply's inference before the speech is even scheduled
(``AgentActivity._pipeline_reply_task`` calls ``perform_llm_inference`` first thing), and
the same model object serves replies, tool follow-ups, preemptive generations and a
FallbackAdapter's recovery probes. The one place all of them pass is the model's own
``chat()`` (TTS: ``synthesize()``/``stream()``). A gate wraps those methods on the model
instance (the class is untouched): while the account's breaker is open, they return a
stream that fails at once with :class:`FleetOpenError` (``retryable=False``) and sends
nothing. livekit then reports it like any failure, with an ``error`` event on the model:
the guard classifies it (:func:`~agent_guard.classifiers.carried_verdict` reads the
verdict it carries), plays the farewell and closes; a FallbackAdapter moves on to its
next instance, as after a real failure, without a request.

livekit retries inside a stream (its ``_main_task`` awaits the stream's ``_run`` once
per attempt), not through ``chat()``: a stream let through therefore has each attempt
gated too (``_run`` shadowed on the instance), so no retry goes to an account opened
since (``tests/fleet/test_sessions.py::TestRetries`` fails if upstream changes this).

A gate also listens to its model's own ``error`` and ``metrics_collected`` events (one
listener each, per model): an account-scope terminal failure opens the breaker, and a
served request concludes a probe.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from livekit.agents import AgentSession, llm, tts
from livekit.agents._exceptions import APIError
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from agent_guard import _seams
from agent_guard._classify import DEFAULT_RETRY_HORIZON, classify
from agent_guard._facts import Classifier
from agent_guard._log import log
from agent_guard._verdict import PUBLIC_MESSAGES, Kind, QuotaInfo, Verdict
from agent_guard.fleet._account import Account
from agent_guard.fleet._breaker import FleetBreaker, OpenState
from agent_guard.fleet._models import account_of, kind_of_model, leaves, session_models
from agent_guard.fleet._registry import breaker_for

if TYPE_CHECKING:
    from agent_guard._policy import GuardPolicy

__all__ = ["REFUSED", "FleetOpenError", "attach", "gate", "is_refusal", "refused"]

_S = TypeVar("_S")

#: ``Verdict.quota.category`` of a refusal: the request was never sent.
REFUSED = "agent_guard.fleet_breaker_open"


class FleetOpenError(APIError):
    """A request not sent: the account's fleet breaker is open.

    Carries the :class:`~agent_guard.Verdict` that opened it as ``.verdict`` (terminal,
    same category), so :func:`agent_guard.classify` needs no rule for it.
    """

    def __init__(self, account: Account, state: OpenState, kind: Kind) -> None:
        left = max(0.0, state.until - time.time())
        super().__init__(
            f"not sent: fleet breaker open for {account.provider} account "
            f"{account.id[:12]} ({state.category.value}, {left:.0f} s of cool-down left)",
            retryable=False,
        )
        self.account = account
        self.verdict = Verdict(
            kind=kind,
            category=state.category,
            terminal=True,
            counts=True,
            provider=account.provider,
            public_message=PUBLIC_MESSAGES[state.category],
            quota=QuotaInfo(quota_type=state.scope or None, category=REFUSED),
            detail=str(self),
        )


def refused(error: BaseException | None) -> bool:
    """Whether ``error`` is (or was caused by) a request the fleet breaker did not send."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 16:
        if isinstance(current, FleetOpenError):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def is_refusal(verdict: Verdict) -> bool:
    """Whether ``verdict`` is a fleet refusal (see :class:`FleetOpenError`)."""
    return verdict.quota is not None and verdict.quota.category == REFUSED


class _Gate:
    """One model's gate: its account, breaker, and how its own failures are judged."""

    def __init__(
        self,
        model: Any,
        account: Account,
        kind: Kind,
        breaker: FleetBreaker,
        classifiers: Sequence[Classifier],
        cooldown: float,
        retry_horizon: float = DEFAULT_RETRY_HORIZON,
    ) -> None:
        self.account = account
        self.kind = kind
        self.breaker = breaker
        self.classifiers = tuple(classifiers)
        self.cooldown = cooldown
        # The guard's own horizon: a rate limit it calls exhausted credits (a long
        # Retry-After) must open the breaker too, and the classify memo then serves both.
        self.retry_horizon = retry_horizon
        self.label = str(getattr(model, "label", "") or "")

    def refusal(self) -> FleetOpenError | None:
        state = self.breaker.check(self.account, self.kind.value)
        if state is None:
            return None
        return FleetOpenError(self.account, state, self.kind)

    def admit(self, open_stream: Callable[[], _S]) -> _S | FleetOpenError:
        """The stream ``open_stream()`` makes, its attempts gated; or the refusal."""
        seen = self.breaker.tokens(self.account, self.kind.value)
        refusal = self.refusal()
        if refusal is not None:
            return refusal
        stream = open_stream()
        _gate_attempts(stream, self, seen)
        return stream

    def on_error(self, event: Any) -> None:
        # A model's "error" listener: a TypeError escaping it would break livekit's retry
        # loop (rtc.EventEmitter.emit re-raises TypeError): catch everything.
        try:
            error = getattr(event, "error", None)
            if not isinstance(error, BaseException) or isinstance(error, FleetOpenError):
                return
            recoverable = bool(getattr(event, "recoverable", False))
            verdict = classify(
                error,
                kind=self.kind,
                classifiers=self.classifiers,
                label=self.label,
                recoverable=recoverable,
                retry_horizon=self.retry_horizon,
            )
            self.breaker.failed(self.account, verdict, cooldown=self.cooldown)
        except Exception as e:
            log.error("agent_guard.fleet_failed", error_type=type(e).__name__)

    def on_metrics(self, _metrics: Any) -> None:
        # livekit emits metrics only for an attempt that produced output without error
        # (LLMStream/ChunkedStream._metrics_monitor_task): the request was served.
        try:
            self.breaker.served(self.account, self.kind.value)
        except Exception as e:
            log.error("agent_guard.fleet_failed", error_type=type(e).__name__)


# One gate per model object, for its lifetime.
_GATES: weakref.WeakKeyDictionary[Any, _Gate] = weakref.WeakKeyDictionary()


def gate(
    model: object,
    breaker: FleetBreaker,
    *,
    classifiers: Sequence[Classifier],
    cooldown: float,
    retry_horizon: float = DEFAULT_RETRY_HORIZON,
) -> _Gate | None:
    """Gate ``model`` (idempotent; the first breaker to gate a model keeps it)."""
    existing = _GATES.get(model)
    if existing is not None:
        return existing
    kind = kind_of_model(model)
    if kind not in (Kind.LLM, Kind.TTS):
        # STT streams open with the session, before any reply, and realtime models
        # hold one connection: neither has a per-request seam (see the README).
        return None
    account = account_of(model)
    if account is None:
        return None
    g = _Gate(model, account, kind, breaker, classifiers, cooldown, retry_horizon)
    if kind is Kind.LLM:
        _wrap(model, "chat", _llm_chat(g, model))
    else:
        _wrap(model, "synthesize", _tts_synthesize(g, model))
        _wrap(model, "stream", _tts_stream(g, model))
    emitter: Any = model
    emitter.on("error", _seams.listener(g.on_error))
    emitter.on("metrics_collected", _seams.listener(g.on_metrics))
    _GATES[model] = g
    breaker.register(account)
    return g


def attach(session: AgentSession[Any], policy: GuardPolicy) -> None:
    """Gate every model ``session`` calls now, per ``policy.fleet``. Never raises.

    Idempotent and cheap (a lookup per model): the guard calls it before ``start()``
    and again whenever a speech is created, before that speech's first request, to
    catch the models an ``Agent`` brings with it.
    """
    try:
        breaker = breaker_for(policy.fleet)
        if breaker is None:
            return
        classifiers, cooldown = policy.classifiers, policy.fleet_cooldown
        breaker.start()
        for model in session_models(session):
            for leaf in leaves(model):
                if kind_of_model(leaf) is not None and leaf not in _GATES:
                    gate(
                        leaf,
                        breaker,
                        classifiers=classifiers,
                        cooldown=cooldown,
                        retry_horizon=policy.retry_horizon,
                    )
    except Exception as e:
        log.error("agent_guard.fleet_failed", error_type=type(e).__name__)


def _gate_attempts(stream: Any, g: _Gate, seen: frozenset[str]) -> None:
    """Refuse every attempt of ``stream`` made once an opening it did not see exists.

    livekit retries a failed request inside the stream (``_main_task`` awaits ``_run``
    once per attempt, ``max_retry`` times, the first retry 0.1 s after the failure), not
    through ``chat()``/``synthesize()``: a request let through before the account was
    found exhausted would otherwise be retried into it, by the session whose own failure
    opened the breaker as by any other, whenever its guard takes longer than that to
    cancel it (a loaded worker). The refusal is not retryable: the retries stop there.
    """
    run = getattr(stream, "_run", None)
    if not callable(run):
        return

    async def attempt(*args: Any, **kwargs: Any) -> None:
        state = g.breaker.opened_since(g.account, g.kind.value, seen)
        if state is not None:
            raise FleetOpenError(g.account, state, g.kind)
        await run(*args, **kwargs)

    # The stream's task is created in its constructor and first runs at the next loop
    # iteration: shadowing _run on the instance now catches every attempt, the first too.
    stream._run = attempt


def _wrap(model: object, name: str, wrapper: Callable[..., Any]) -> None:
    # An instance attribute shadows the class's method for this object only.
    setattr(model, name, wrapper)


def _llm_chat(g: _Gate, model: Any) -> Callable[..., llm.LLMStream]:
    original = model.chat

    def chat(**kwargs: Any) -> llm.LLMStream:
        served: llm.LLMStream | FleetOpenError = g.admit(lambda: original(**kwargs))
        if not isinstance(served, FleetOpenError):
            return served
        return _RefusedLLMStream(
            model,
            served,
            chat_ctx=kwargs.get("chat_ctx") or llm.ChatContext.empty(),
            tools=list(kwargs.get("tools") or []),
            conn_options=kwargs.get("conn_options", DEFAULT_API_CONNECT_OPTIONS),
        )

    return chat


def _tts_synthesize(g: _Gate, model: Any) -> Callable[..., tts.ChunkedStream]:
    original = model.synthesize

    def synthesize(
        text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        chunked: tts.ChunkedStream | FleetOpenError = g.admit(
            lambda: original(text, conn_options=conn_options)
        )
        if not isinstance(chunked, FleetOpenError):
            return chunked
        return _RefusedChunkedStream(chunked, tts=model, input_text=text, conn_options=conn_options)

    return synthesize


def _tts_stream(g: _Gate, model: Any) -> Callable[..., tts.SynthesizeStream]:
    original = model.stream

    def stream(
        *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.SynthesizeStream:
        streamed: tts.SynthesizeStream | FleetOpenError = g.admit(
            lambda: original(conn_options=conn_options)
        )
        if not isinstance(streamed, FleetOpenError):
            return streamed
        return _RefusedSynthesizeStream(streamed, tts=model, conn_options=conn_options)

    return stream


class _RefusedLLMStream(llm.LLMStream):
    def __init__(self, model: llm.LLM[Any], refusal: FleetOpenError, **kwargs: Any) -> None:
        self._refusal = refusal
        super().__init__(model, **kwargs)

    async def _run(self) -> None:
        raise self._refusal


class _RefusedChunkedStream(tts.ChunkedStream):
    def __init__(self, refusal: FleetOpenError, **kwargs: Any) -> None:
        self._refusal = refusal
        super().__init__(**kwargs)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        raise self._refusal


class _RefusedSynthesizeStream(tts.SynthesizeStream):
    def __init__(self, refusal: FleetOpenError, **kwargs: Any) -> None:
        self._refusal = refusal
        super().__init__(**kwargs)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        raise self._refusal
