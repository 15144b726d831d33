"""GuardPolicy: what the guard does, as frozen configuration validated at construction.

Variants are made with :func:`dataclasses.replace` (which re-runs validation), never by
mutation: one policy object is typically shared by every session of a worker.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

from livekit import rtc
from livekit.agents import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from agent_guard._audio import check_file
from agent_guard._classify import DEFAULT_RETRY_HORIZON
from agent_guard._errors import PolicyError
from agent_guard._facts import Classifier
from agent_guard._hooks import Hook
from agent_guard._signal import FrontendSignal
from agent_guard._verdict import Category, Kind, Verdict
from agent_guard.classifiers import DEFAULT_CLASSIFIERS
from agent_guard.fleet._breaker import MAX_COOLDOWN
from agent_guard.fleet._registry import FleetSpec, check_spec
from agent_guard.instrumentation import log_verdict

__all__ = [
    "DEFAULT_ERROR_MESSAGE",
    "DEFAULT_FAREWELL_AUDIO",
    "DEFAULT_STALL_AUDIO",
    "DEFAULT_STALL_MESSAGE",
    "MAX_FAREWELL_TIMEOUT",
    "MAX_RECENT_VERDICTS",
    "MAX_STALL_TIMEOUT",
    "Farewell",
    "FarewellAudio",
    "GuardPolicy",
    "MessageFactory",
    "Tolerance",
]

#: The close never waits longer than this for a farewell, whatever the policy says.
MAX_FAREWELL_TIMEOUT = 30.0

#: The watchdog never lets a caller wait longer than this in silence.
MAX_STALL_TIMEOUT = 60.0

#: ``GuardPolicy.recent_verdicts`` is at most this: a verdict history is for reading the
#: last few failures, and every verdict kept costs memory per session (about 1 KB).
MAX_RECENT_VERDICTS = 1000

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


#: Spoken on a terminal verdict when the policy leaves ``error_message`` NOT_GIVEN.
#: Generic on purpose: provider text (hints, error messages) is for developers.
DEFAULT_ERROR_MESSAGE = "Sorry, I can't continue right now. Please try again later. Goodbye."

#: A recording of DEFAULT_ERROR_MESSAGE (16 kHz mono WAV, 4.7 s), played when TTS cannot
#: speak and nothing else was configured. Made with:
#: ``espeak-ng -v en-us -s 180 -w raw.wav "<DEFAULT_ERROR_MESSAGE>"`` then
#: ``sox raw.wav -r 16000 -c 1 -b 16 farewell.wav silence 1 0.02 0.5% reverse
#: silence 1 0.02 0.5% reverse pad 0.05 0.25 norm -3``.
DEFAULT_FAREWELL_AUDIO = Path(__file__).parent / "assets" / "farewell.wav"

#: What the caller hears when a reply stalls (``GuardPolicy.stall_message``).
DEFAULT_STALL_MESSAGE = "Sorry, one moment."

#: A recording of DEFAULT_STALL_MESSAGE (16 kHz mono WAV, 1.5 s), made with the
#: farewell's recipe: ``espeak-ng -v en-us -s 180 -w raw.wav "Sorry, one moment."`` then
#: the same ``sox`` line, to ``one_moment.wav``.
DEFAULT_STALL_AUDIO = Path(__file__).parent / "assets" / "one_moment.wav"


@dataclass(frozen=True, slots=True)
class Farewell:
    """A farewell: ``text`` (the transcript, and the TTS input when ``audio`` is None).

    ``Farewell(text, audio=...)`` pairs a recording with the words it says: the text is
    what the transcript shows while the recording plays. :attr:`DEFAULT` is the packaged
    English apology and its recording.
    """

    text: str
    audio: FarewellAudio | None = None

    DEFAULT: ClassVar[Farewell]
    """The packaged farewell: a generic apology and its recording (played when TTS
    cannot speak and nothing else was configured)."""
    STALL: ClassVar[Farewell]
    """The packaged stall notice: "Sorry, one moment." and its recording."""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise PolicyError("Farewell.text must be a non-blank str")
        _check_audio(self.audio)

    @classmethod
    def _of_policy(cls, text: str, audio: FarewellAudio | None) -> Farewell:
        """A farewell from parts the policy already checked, built on the failure path.

        Not checked again: a file that was fine when the policy was built may be gone by
        now (the playback copes), and checking means reading it while a caller waits.
        """
        farewell = object.__new__(cls)
        object.__setattr__(farewell, "text", text)
        object.__setattr__(farewell, "audio", audio)
        return farewell


MessageFactory: TypeAlias = Callable[
    [Verdict], "str | Farewell | Awaitable[str | Farewell | None] | None"
]
"""Computes the farewell from the verdict that closes the session (``None``: silent).

May be ``async``. A plain one runs in a worker thread; either gets at most
``hook_timeout`` seconds (the default apology is used after that)."""


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
        if type(self.max_failures) is not int:
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
        presynthesize: Synthesise the static farewell texts (``error_message`` as a str
            or the default apology, and ``messages``) once, as soon as the session
            starts with a TTS, and cache the audio per worker (keyed by text and voice):
            the caller hears the farewell in the agent's voice with no synthesis
            latency, even after TTS dies. On by default; skipped when
            ``farewell_audio`` is set (the recording is what plays).
        farewell_timeout: Seconds from the decision to the close, at most: the
            farewell is cut off when it runs longer, however TTS or the audio
            output behave. Bounded by :data:`MAX_FAREWELL_TIMEOUT`.
        classifiers: The classifier chain, tried in order before the generic
            HTTP rules (which always run last).
        retry_horizon: Seconds a session can wait for a provider: a rate limit whose
            ``Retry-After`` (or "retry after N seconds" in the message) is longer is
            terminal ``quota_exhausted`` (an Azure daily cap, a Groq tokens-per-day limit).
        tolerances: Per-kind :class:`Tolerance`; kinds left out keep the default.
        hooks: Callables (sync or async) that see each Verdict before the decision and
            may return a replacement (``None`` keeps it); one that raises is logged and
            ignored. Default: ``(log_verdict,)``, the ``agent_guard.error_classified``
            log line.
        hook_timeout: Seconds an async hook may take per verdict; a late hook is
            logged (``agent_guard.hook_timed_out``) and skipped, so a hook that never
            returns cannot hold a decision back.
        signal: The :class:`FrontendSignal` published on the agent's participant before
            it leaves (and, with ``on_tolerated``, on tolerated failures); ``None``
            publishes nothing.
        stall_timeout: Seconds of dead air the watchdog allows: when the agent owes a
            reply (a user turn was committed, or ``generate_reply`` was called) and no
            agent audio reaches the output within this time, or the reply ends with
            no audio at all, the stuck generation is cancelled and a ``stalled``
            Verdict is counted toward the stalled kind's tolerance (``llm``: no first
            token; ``tts``: text but no audio; ``realtime``: no audio from the model;
            ``stt``: the user spoke and no transcript came). ``None`` turns the
            watchdog off. At most :data:`MAX_STALL_TIMEOUT`.
        stall_message: What the caller hears on a stall the session survives, so
            they are never left in silence: a str (synthesised ahead if
            ``presynthesize``, else by TTS, or the packaged recording when TTS is what
            stalled), a :class:`Farewell` (text and recording), or ``None`` for
            silence. The default is a short "Sorry, one moment." and its recording,
            which needs no TTS.
        stall_retry: Retry the stalled turn once (``generate_reply`` from the same
            conversation), so a one-off stall costs the caller a few seconds, not the
            turn. A stall right after a retry that stalled gets no further retry.
        fleet: Where a provider account's breaker is shared (see
            :mod:`agent_guard.fleet`): ``"memory"`` (default) among the guarded sessions
            of this process; a ``"redis://host:port/db"`` URL or a ``redis.asyncio``
            client across processes and machines (install ``agent-guard[redis]`` and
            set ``AGENT_GUARD_FLEET_KEY`` to one secret on every worker); a
            :class:`~agent_guard.fleet.FleetBreaker`; ``None`` turns it off. While an
            account is exhausted (quota, payment, auth), no request is sent to it.
        fleet_cooldown: Seconds an opened breaker waits before one probe, when the
            provider gave no Retry-After or reset time. Bounded by 24 h.
        recent_verdicts: How many of the latest verdicts ``Guard.verdicts`` keeps
            (default 10, at most :data:`MAX_RECENT_VERDICTS`, 0 keeps none). Every
            verdict is still counted in ``Guard.verdict_counts``: an error storm costs
            a guarded session no memory per event.
    """

    error_message: NotGivenOr[str | MessageFactory | None] = NOT_GIVEN
    messages: Mapping[Category | Kind | str, str | None] = field(default_factory=dict)
    speak_hint: bool = False
    farewell_audio: FarewellAudio | None = None
    presynthesize: bool = True
    farewell_timeout: float = 8.0
    classifiers: tuple[Classifier, ...] = DEFAULT_CLASSIFIERS
    retry_horizon: float = DEFAULT_RETRY_HORIZON
    tolerances: Mapping[Kind | str, Tolerance] = field(default_factory=_default_tolerances)
    hooks: tuple[Hook, ...] = (log_verdict,)
    hook_timeout: float = 1.0
    signal: FrontendSignal | None = field(default_factory=FrontendSignal)
    stall_timeout: float | None = 4.0
    stall_message: str | Farewell | None = field(default_factory=lambda: Farewell.STALL)
    stall_retry: bool = True
    fleet: FleetSpec = "memory"
    fleet_cooldown: float = 60.0
    recent_verdicts: int = 10

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
        for flag in ("speak_hint", "presynthesize", "stall_retry"):
            _check_bool(flag, getattr(self, flag))
        _check_seconds("farewell_timeout", self.farewell_timeout, upper=MAX_FAREWELL_TIMEOUT)
        _check_seconds("hook_timeout", self.hook_timeout, upper=MAX_FAREWELL_TIMEOUT)
        _check_audio(self.farewell_audio)
        object.__setattr__(self, "classifiers", _callables("classifiers", self.classifiers))
        _check_seconds("retry_horizon", self.retry_horizon, upper=None)
        object.__setattr__(self, "tolerances", _normalise_tolerances(self.tolerances))
        object.__setattr__(self, "hooks", _callables("hooks", self.hooks))
        if self.signal is not None and not isinstance(self.signal, FrontendSignal):
            raise PolicyError(f"signal must be a FrontendSignal or None, got {self.signal!r}")
        check_spec(self.fleet)
        _check_seconds("fleet_cooldown", self.fleet_cooldown, upper=MAX_COOLDOWN)
        kept = self.recent_verdicts
        if type(kept) is not int or not 0 <= kept <= MAX_RECENT_VERDICTS:
            raise PolicyError(
                f"recent_verdicts must be an int from 0 to {MAX_RECENT_VERDICTS}, got {kept!r}"
            )
        if self.stall_timeout is not None:
            _check_seconds("stall_timeout", self.stall_timeout, upper=MAX_STALL_TIMEOUT)
        notice = self.stall_message
        if isinstance(notice, str):
            if not notice.strip():
                raise PolicyError("stall_message must not be blank: use None for no notice")
        elif notice is not None and not isinstance(notice, Farewell):
            raise PolicyError(
                f"stall_message must be a str, a Farewell or None, got {type(notice).__name__}"
            )


def _check_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise PolicyError(f"{name} must be a bool, got {value!r}")


def _callables(name: str, value: object) -> tuple[Any, ...]:
    # A single callable where a sequence is expected is the classic slip
    # (hooks=log_verdict): say so rather than "object is not iterable".
    if callable(value) or isinstance(value, str | bytes | Mapping):
        raise PolicyError(f"{name} must be a sequence of callables, got {value!r}")
    if not isinstance(value, Iterable):
        raise PolicyError(f"{name} must be a sequence of callables, got {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        raise PolicyError(f"{name} must be a sequence of callables, got {value!r}") from None
    for item in items:
        if not callable(item):
            raise PolicyError(f"{name} must be callables, got {item!r}")
    return items


def _check_seconds(name: str, value: object, *, upper: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{name} must be a number of seconds, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float (10**400)
        finite = False
    if not finite or value <= 0:
        raise PolicyError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    if upper is not None and value > upper:
        raise PolicyError(f"{name} must be at most {upper} s, got {value}")


def _check_audio(audio: object) -> None:
    if audio is None or callable(audio) or isinstance(audio, AsyncIterable):
        return
    if isinstance(audio, str | os.PathLike):
        # Fail at configuration time, not in the middle of a failing call: the file must
        # exist and decode to audio.
        if (problem := check_file(Path(audio))) is not None:
            raise PolicyError(f"farewell_audio file {str(audio)!r} cannot be played: {problem}")
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


Farewell.DEFAULT = Farewell(text=DEFAULT_ERROR_MESSAGE, audio=DEFAULT_FAREWELL_AUDIO)
Farewell.STALL = Farewell(text=DEFAULT_STALL_MESSAGE, audio=DEFAULT_STALL_AUDIO)
