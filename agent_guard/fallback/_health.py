"""What one guarded adapter knows about its instances, and when it may probe them."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, cast

import tenacity
from livekit.agents import stt as _stt
from livekit.agents._exceptions import APIConnectionError

from agent_guard import _seams
from agent_guard._classify import classify
from agent_guard._log import log as _log
from agent_guard._verdict import Category, Kind, Verdict
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, Classifier
from agent_guard.fallback._causes import AllFailedError
from agent_guard.fleet import refused as fleet_refused

__all__ = [
    "DEFAULT_PROBE_WAIT",
    "Health",
    "Observable",
    "ProbeWait",
    "SkippedError",
    "probe_wait",
]

ProbeWait: TypeAlias = tenacity.wait.wait_base | Callable[[tenacity.RetryCallState], float]
"""Any tenacity wait strategy: seconds to hold probes back, given the failure streak."""

DEFAULT_PROBE_WAIT = tenacity.wait_exponential(multiplier=1, exp_base=2, max=30)
"""1, 2, 4, ... seconds after the 1st, 2nd, 3rd, ... consecutive failure, at most 30."""


def probe_wait(value: object) -> ProbeWait:
    """``value`` if it can be a ``probe_backoff=``, checked before anything is built.

    Raises:
        TypeError: ``value`` is not a tenacity wait strategy (a number, ``None``, a class).
    """
    if isinstance(value, type) or not callable(value):
        raise TypeError(
            "probe_backoff must be a tenacity wait strategy, e.g. "
            "tenacity.wait_exponential(max=30), or a callable taking a "
            f"tenacity.RetryCallState and returning seconds; got {value!r}"
        )
    return cast(ProbeWait, value)


class Instance(Protocol):
    @property
    def label(self) -> str: ...


@dataclass(slots=True)
class _InstanceState:
    verdict: Verdict | None = None
    """The last failure since the instance last served; None while healthy."""
    error: BaseException | None = None
    streak: tenacity.RetryCallState | None = None
    """The consecutive failures, probes included, as tenacity sees a retried call:
    ``attempt_number`` counts them, ``outcome`` holds the last one."""
    probe_after: float = 0.0
    """``time.monotonic()`` before which no probe is sent."""
    cancelled: bool = False
    """STT only: its last failure was a client cancellation (see FallbackSTT.emit)."""
    witnessed: tuple[BaseException, Verdict] | None = None
    """The last error the instance reported through its own "error" event, classified
    right then (see :meth:`Health.witness`)."""


class SkippedError(APIConnectionError):
    """Stands in for a request not sent to an instance whose last verdict is terminal."""


class Health:
    """What one guarded adapter knows about its instances."""

    def __init__(
        self,
        instances: Sequence[Instance],
        *,
        kind: Kind,
        classifiers: Sequence[Classifier] | None,
        wait: ProbeWait,
    ) -> None:
        self._instances = list(instances)
        self._kind = kind
        self._classifiers = tuple(DEFAULT_CLASSIFIERS if classifiers is None else classifiers)
        self._wait = wait
        # The retry_object every streak names, so a strategy sees what it would in tenacity.
        self._retrying = tenacity.Retrying(wait=wait)
        self._states = [_InstanceState() for _ in self._instances]

    @property
    def verdicts(self) -> tuple[Verdict | None, ...]:
        return tuple(state.verdict for state in self._states)

    def _index(self, instance: Instance) -> int:
        # By identity, as livekit's own ``_instances.index()``: models do not define __eq__.
        return next(i for i, known in enumerate(self._instances) if known is instance)

    def classify(self, instance: Instance, error: BaseException) -> Verdict:
        return classify(error, kind=self._kind, classifiers=self._classifiers, label=instance.label)

    def failed(self, instance: Instance, error: BaseException, *, probe: bool) -> Verdict:
        """Classify a failure; record it unless it is a client cancellation."""
        index = self._index(instance)
        state = self._states[index]
        verdict = self._witnessed(state, error) or self.classify(instance, error)
        if verdict.category is Category.CLIENT_CANCELLED:
            _log.info("agent_guard.fallback_cancel_ignored", kind=self._kind.value, instance=index)
            return verdict
        state.verdict = verdict
        state.error = error
        if state.streak is None:
            state.streak = tenacity.RetryCallState(self._retrying, None, (), {})
        else:
            state.streak.prepare_for_next_attempt()
        state.streak.set_exception((type(error), error, error.__traceback__))
        state.probe_after = time.monotonic() + self._probe_delay(index, state.streak)
        _log.info(
            "agent_guard.fallback_instance_failed",
            kind=self._kind.value,
            instance=index,
            category=verdict.category.value,
            terminal=verdict.terminal,
            probe=probe,
        )
        return verdict

    def _probe_delay(self, index: int, streak: tenacity.RetryCallState) -> float:
        try:
            delay = float(self._wait(streak))
            if not delay >= 0:  # NaN included
                raise ValueError(f"the wait strategy returned {delay!r}")
        except Exception as e:
            # The strategy runs inside livekit's failover loop, on a failure already being
            # handled: it must not replace that failure. The default backoff stands in.
            # No traceback: the strategy saw the provider's error and may quote it.
            _log.error(
                "agent_guard.probe_backoff_failed",
                kind=self._kind.value,
                instance=index,
                error_type=type(e).__name__,
            )
            return float(DEFAULT_PROBE_WAIT(streak))
        return delay

    def served(self, instance: Instance) -> None:
        self._states[self._index(instance)] = _InstanceState()

    def ensure_askable(self, instance: Instance) -> None:
        """Raise instead of sending a request that would fail identically.

        With every instance down, livekit's loops ask all of them again; one whose last
        verdict is terminal is not asked. The error stands in for its failure: the loop
        goes on to the next instance, as after a real one.

        Raises:
            SkippedError: The instance's last verdict is terminal.
        """
        state = self._states[self._index(instance)]
        if _benched(state):
            assert state.verdict is not None
            raise SkippedError(
                f"{instance.label} not asked: it failed with {state.verdict.category}"
            )

    def may_probe(self, instance: Instance) -> bool:
        index = self._index(instance)
        state = self._states[index]
        allowed = not _benched(state) and time.monotonic() >= state.probe_after
        if not allowed:
            _log.debug("agent_guard.fallback_probe_held", kind=self._kind.value, instance=index)
        return allowed

    def all_failed(self, error: APIConnectionError) -> tuple[AllFailedError, BaseException | None]:
        """livekit's cause-less all-failed error, rebuilt with the causes, and its cause."""
        verdicts = [
            # No record (an STT instance that was cancelled, or failed without an "error"
            # event): the adapter's own words.
            state.verdict or self.classify(instance, error)
            for instance, state in zip(self._instances, self._states, strict=True)
        ]
        rebuilt = AllFailedError(error.message, verdicts=verdicts)
        return rebuilt, self._states[rebuilt.decisive].error

    # -- instance failures, seen through their own "error" events -------------------------

    def witness(self, instance: Instance) -> Callable[[Any], None]:
        """A listener for ``instance``'s "error" events (LLM and TTS instances).

        livekit re-raises an instance's error to the adapter only after its own retry
        loop, and by then ``__context__`` no longer holds the response: the full body,
        the gateway hint and the quota headers are gone. While the instance emits its
        "error" event they are still there, so the failure is classified then, and
        :meth:`failed` uses that verdict for the same error.
        """
        return _seams.listener(functools.partial(self._on_witnessed, instance))

    def _on_witnessed(self, instance: Instance, event: Any) -> None:
        try:  # a TypeError escaping a listener breaks livekit's retry loop
            error = event.error
            if isinstance(error, BaseException):
                state = self._states[self._index(instance)]
                state.witnessed = (error, self.classify(instance, error))
        except Exception as e:
            _log.error("agent_guard.hook_failed", error_type=type(e).__name__)

    @staticmethod
    def _witnessed(state: _InstanceState, error: BaseException) -> Verdict | None:
        if state.witnessed is None:
            return None
        seen, verdict = state.witnessed
        # The error itself, or livekit's "failed after N attempts" wrapping it.
        if error is seen or error.__cause__ is seen:
            return verdict
        return None

    # -- STT: instance failures are seen through their "error" events ---------------------

    def listener(self, instance: Instance) -> Callable[[_stt.STTError], None]:
        return _seams.listener(functools.partial(self._on_instance_error, instance))

    def _on_instance_error(self, instance: Instance, event: _stt.STTError) -> None:
        # A TypeError escaping an "error" listener breaks livekit's retry loop
        # (rtc.EventEmitter.emit re-raises it): swallow everything.
        try:
            if event.recoverable:
                return  # the instance retries by itself; its final report decides
            verdict = self.failed(instance, event.error, probe=False)
            self._states[self._index(instance)].cancelled = (
                verdict.category is Category.CLIENT_CANCELLED
            )
        except Exception as e:
            # Not log.exception: the traceback could carry provider text.
            _log.error("agent_guard.hook_failed", error_type=type(e).__name__)

    def take_cancelled(self, instance: Instance) -> bool:
        state = self._states[self._index(instance)]
        cancelled, state.cancelled = state.cancelled, False
        return cancelled


class Observable:
    """The read-only views every guarded adapter adds to livekit's."""

    _health: Health
    _status: Any  # livekit: list[_LLMStatus | _TTSStatus | _STTStatus]

    @property
    def verdicts(self) -> tuple[Verdict | None, ...]:
        """Per instance, in order: its last failure's Verdict, ``None`` if it has not
        failed since it last served."""
        return self._health.verdicts

    @property
    def availability(self) -> tuple[bool, ...]:
        """Per instance, in order: whether livekit considers it available."""
        return tuple(status.available for status in self._status)


def _benched(state: _InstanceState) -> bool:
    """Whether the instance's last failure was terminal: never asked nor probed again.

    Except a request the fleet breaker refused: it was never sent, and the instance's
    gate refuses the next at once (without a request) until the breaker closes.
    """
    verdict = state.verdict
    return verdict is not None and verdict.terminal and not fleet_refused(state.error)
