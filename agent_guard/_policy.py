"""GuardPolicy: what the guard does, as frozen configuration validated at construction.

Variants are made with :func:`dataclasses.replace` (which re-runs validation), never by
mutation: one policy object is typically shared by every session of a worker.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias

from livekit import rtc
from livekit.agents import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from agent_guard._errors import PolicyError
from agent_guard._facts import Classifier
from agent_guard._hooks import Hook, log_verdict
from agent_guard._signal import FrontendSignal
from agent_guard._verdict import Category, Kind, Verdict
from agent_guard.classifiers import DEFAULT_CLASSIFIERS
from agent_guard.fleet._breaker import MAX_COOLDOWN
from agent_guard.fleet._registry import FleetSpec, check_spec

__all__ = [
    "MAX_FAREWELL_TIMEOUT",
    "Farewell",
    "FarewellAudio",
    "GuardPolicy",
    "MessageFactory",
    "Tolerance",
]

#: The close never waits longer than this for a farewell, whatever the policy says.
MAX_FAREWELL_TIMEOUT = 30.0

FarewellAudio: TypeAlias = (
    str
    | os.PathLike[str]
    | Sequence[rtc.AudioFrame]
    | Callable[[], AsyncIterable[rtc.AudioFrame]]
    | AsyncIterable[rtc.AudioFrame]
)
"""Pre-recorded farewell audio, played with ``say(audio=...)`` so no TTS is involved.

A path (WAV, or any format livekit's PyAV decoder reads), a sequence of frames, a
factory returning a fresh async iterable per farewell, or an async iterable. A bare
async iterable (e.g. an async generator) can be consumed only once: with a policy
shared across sessions, prefer frames or a factory.
"""


@dataclass(frozen=True, slots=True)
class Farewell:
    """A farewell: ``text`` (the transcript, and the TTS input when ``audio`` is None)."""

    text: str
    audio: FarewellAudio | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise PolicyError("Farewell.text must be a non-blank str")
        _check_audio(self.audio)


MessageFactory: TypeAlias = Callable[[Verdict], "str | Farewell | None"]
"""Computes the farewell from the verdict that closes the session (``None``: silent)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerance:
    """How many consecutive countable failures of one kind the guard tolerates.

    The session closes on failure number ``max_failures + 1``. With ``window`` set,
    only failures within the last ``window`` seconds count. Terminal verdicts
    always close at once, whatever the tolerance.
    """

    max_failures: int = 3
    window: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int):
            raise PolicyError(f"Tolerance.max_failures must be an int, got {self.max_failures!r}")
        if self.max_failures < 0:
            raise PolicyError(f"Tolerance.max_failures must be >= 0, got {self.max_failures}")
        if self.window is not None:
            _check_seconds("Tolerance.window", self.window, upper=None)

    @classmethod
    def fail_fast(cls) -> Tolerance:
        """Close on the first countable failure."""
        return cls(max_failures=0)

    @classmethod
    def allow(cls, n: int, *, within: float | None = None) -> Tolerance:
        """Tolerate ``n`` failures (optionally: within ``within`` seconds)."""
        return cls(max_failures=n, window=within)


def _default_tolerances() -> Mapping[Kind | str, Tolerance]:
    # Same count as livekit's SessionConnectOptions.max_unrecoverable_errors=3, so a
    # guarded session tolerates transient failures exactly as long as a stock one.
    return MappingProxyType({kind: Tolerance() for kind in Kind})


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardPolicy:
    """What the guard does when a provider fails.

    Attributes:
        error_message: ``NOT_GIVEN`` speaks a generic apology when a terminal verdict
            (or a realtime model giving up) closes the session; a ``str`` is spoken
            on every close the guard makes;
            ``None`` closes silently; a callable gets the closing Verdict and returns
            text, a :class:`Farewell` (text and audio) or ``None``.
        messages: Overrides per :class:`Category` or :class:`Kind` (a category
            entry wins over a kind entry): text, or ``None`` for silence.
        speak_hint: Speak the provider's (sanitised) hint instead of the generic
            apology when ``error_message`` is NOT_GIVEN. Off by default: hints are
            written for developers, not callers.
        farewell_audio: Pre-recorded audio played instead of synthesising the
            farewell (see :data:`FarewellAudio`). ``None`` uses TTS, except when TTS
            cannot speak (it is what failed, or the session has none): then the
            pre-synthesised farewell, or the packaged default recording, is played.
        presynthesize: Synthesise the farewell text(s) once while TTS is healthy and
            cache the audio per worker (keyed by text and voice), so the farewell is
            heard in the agent's voice with no synthesis latency, even after TTS dies.
        farewell_timeout: Seconds from the decision to the close, at most: the
            farewell is cut off when it runs longer, however TTS or the audio
            output behave. Bounded by :data:`MAX_FAREWELL_TIMEOUT`.
        classifiers: The classifier chain, tried in order before the generic
            HTTP rules (which always run last).
        tolerances: Per-kind :class:`Tolerance`; kinds left out keep the default.
        fleet: Where a provider account's breaker is shared (see
            :mod:`agent_guard.fleet`): ``"memory"`` (default) among the guarded sessions
            of this process; a ``"redis://host:port/db"`` URL or a ``redis.asyncio``
            client across processes and machines (install ``agent-guard[redis]`` and
            set ``AGENT_GUARD_FLEET_KEY`` to one secret on every worker); a
            :class:`~agent_guard.fleet.FleetBreaker`; ``None`` turns it off. While an
            account is exhausted (quota, payment, auth), no request is sent to it.
        fleet_cooldown: Seconds an opened breaker waits before one probe, when the
            provider gave no Retry-After or reset time. Bounded by 24 h.
    """

    error_message: NotGivenOr[str | MessageFactory | None] = NOT_GIVEN
    messages: Mapping[Category | Kind | str, str | None] = field(default_factory=dict)
    speak_hint: bool = False
    farewell_audio: FarewellAudio | None = None
    presynthesize: bool = False
    farewell_timeout: float = 8.0
    classifiers: tuple[Classifier, ...] = DEFAULT_CLASSIFIERS
    tolerances: Mapping[Kind | str, Tolerance] = field(default_factory=_default_tolerances)
    hooks: tuple[Hook, ...] = (log_verdict,)
    signal: FrontendSignal | None = field(default_factory=FrontendSignal)
    fleet: FleetSpec = "memory"
    fleet_cooldown: float = 60.0

    def __post_init__(self) -> None:
        msg = self.error_message
        if is_given(msg) and msg is not None and not isinstance(msg, str) and not callable(msg):
            raise PolicyError(
                "error_message must be NOT_GIVEN, a str, None or a callable, "
                f"got {type(msg).__name__}"
            )
        if isinstance(msg, str) and not msg.strip():
            raise PolicyError("error_message must not be blank: use None for a silent close")
        object.__setattr__(self, "messages", _normalise_messages(self.messages))
        for flag in ("speak_hint", "presynthesize"):
            if not isinstance(getattr(self, flag), bool):
                raise PolicyError(f"{flag} must be a bool")
        _check_seconds("farewell_timeout", self.farewell_timeout, upper=MAX_FAREWELL_TIMEOUT)
        _check_audio(self.farewell_audio)
        classifiers = tuple(self.classifiers)
        for c in classifiers:
            if not callable(c):
                raise PolicyError(f"classifiers must be callables, got {c!r}")
        object.__setattr__(self, "classifiers", classifiers)
        object.__setattr__(self, "tolerances", _normalise_tolerances(self.tolerances))
        hooks = tuple(self.hooks)
        for h in hooks:
            if not callable(h):
                raise PolicyError(f"hooks must be callables, got {h!r}")
        object.__setattr__(self, "hooks", hooks)
        if self.signal is not None and not isinstance(self.signal, FrontendSignal):
            raise PolicyError(f"signal must be a FrontendSignal or None, got {self.signal!r}")
        check_spec(self.fleet)
        _check_seconds("fleet_cooldown", self.fleet_cooldown, upper=MAX_COOLDOWN)


def _check_seconds(name: str, value: object, *, upper: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise PolicyError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    if upper is not None and value > upper:
        raise PolicyError(f"{name} must be at most {upper} s, got {value}")


def _check_audio(audio: object) -> None:
    if audio is None or callable(audio) or isinstance(audio, AsyncIterable):
        return
    if isinstance(audio, str | os.PathLike):
        path = Path(audio)
        if not path.is_file():
            # Fail at configuration time, not in the middle of a failing call.
            raise PolicyError(f"farewell_audio file not found: {path}")
        return
    if isinstance(audio, Sequence) and not isinstance(audio, str | bytes):
        if not audio:
            raise PolicyError("farewell_audio must not be an empty sequence of frames")
        if not all(isinstance(f, rtc.AudioFrame) for f in audio):
            raise PolicyError("farewell_audio sequence must hold only rtc.AudioFrame")
        return
    raise PolicyError(
        "farewell_audio must be None, a path, a sequence of rtc.AudioFrame, "
        f"an async iterable of frames or a factory returning one, got {type(audio).__name__}"
    )


def _normalise_tolerances(value: object) -> Mapping[Kind | str, Tolerance]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"tolerances must be a mapping of kind to Tolerance, got {value!r}")
    merged: dict[Kind | str, Tolerance] = dict(_default_tolerances())
    for key, tol in value.items():
        try:
            kind = Kind(key)
        except ValueError:
            raise PolicyError(
                f"unknown kind {key!r} in tolerances (expected one of {[k.value for k in Kind]})"
            ) from None
        if not isinstance(tol, Tolerance):
            raise PolicyError(f"tolerances[{kind.value!r}] must be a Tolerance, got {tol!r}")
        merged[kind] = tol
    return MappingProxyType(merged)


def _normalise_messages(value: object) -> Mapping[Category | Kind | str, str | None]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"messages must be a mapping, got {value!r}")
    out: dict[Category | Kind | str, str | None] = {}
    for key, text in value.items():
        k = _message_key(key)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise PolicyError(f"messages[{key!r}] must be a non-blank str or None")
        out[k] = text
    return MappingProxyType(out)


def _message_key(key: object) -> Category | Kind:
    if isinstance(key, Category | Kind):
        return key
    # Category and Kind values never overlap, so a plain string is unambiguous.
    if isinstance(key, str):
        for enum in (Category, Kind):
            with contextlib.suppress(ValueError):
                return enum(key)
    raise PolicyError(f"messages key {key!r} is neither a Category nor a Kind")
