"""Fault-injection matrix: whatever breaks around a guarded close, the same invariants hold.

One parametrized test drives a real session (real openai plugins over HTTP to the
simulator) into a fault, waits for the session to close (whoever closes it), and checks
every invariant uniformly:

1. exactly one ``"close"`` event;
2. when the guard closed: ``CloseReason.ERROR``, the CloseEvent carries the triggering
   error (livekit's model, ``recoverable=False``), within the farewell bound; when the
   user closed: ``USER_INITIATED``;
3. the farewell text is nowhere in the chat context or history;
4. no ``agent_guard.*`` task is left running;
5. nothing reached the loop's exception handler (no "Task exception was never
   retrieved", no exception in a callback) that mentions the guard.

Cases that overlap ``tests/test_farewell.py`` (TTS failing or hanging, no output, user
close) are here for the invariants, which those tests check only in part.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import structlog
from livekit import rtc
from livekit.agents import Agent, AgentSession, CloseEvent, CloseReason, ErrorEvent, io, llm, stt
from livekit.agents._exceptions import APIError, APIStatusError
from livekit.plugins import openai
from structlog.testing import capture_logs

from agent_guard import Category, Guard, GuardPolicy, guard
from agent_guard._policy import DEFAULT_ERROR_MESSAGE
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    Hang,
    HttpError,
    QuotaExceeded,
    Speech,
    Unauthorized,
)
from tests.helpers import (
    SECRET_KEY,
    client_cancel,
    gateway_quota_error,
    heard,
    make_session,
    rate_limit,
)

#: Slack on top of farewell_timeout for the close itself: the guard's bound holds even
#: when the audio output or the recording misbehaves.
BOUND_MARGIN = 0.1
#: Quiet time after the close during which a second close, a stray task or a late
#: exception would show up.
SETTLE = 0.3
CASE_TIMEOUT = 15.0
FAREWELL = "Sorry, we have to stop here. Goodbye."


# -- the harness ------------------------------------------------------------------------


@dataclass
class Run:
    """One case's session and what was observed on it."""

    sim: GatewaySimulator
    session: AgentSession[Any]
    guard: Guard
    out: CaptureAudioOutput | None
    recognizer: openai.STT | None
    closes: list[CloseEvent] = field(default_factory=list)

    @property
    def model(self) -> llm.LLM[Any]:
        model = self.session.llm
        assert isinstance(model, llm.LLM)
        return model

    async def turn(self, text: str = "hi") -> None:
        """A user turn; a failing turn may raise: the invariants look at effects."""
        try:
            async with asyncio.timeout(CASE_TIMEOUT):
                await self.session.run(user_input=text)
        except Exception:
            pass

    async def until_audio(self) -> None:
        async with asyncio.timeout(5):
            while self.out is None or not self.out.frames:
                await asyncio.sleep(0.01)


def gateway_quota(quota_type: str = "llm") -> APIError:
    """A terminal gateway credits error as websocket/realtime paths deliver it."""
    return gateway_quota_error(quota_type)


def llm_error(error: Exception, *, recoverable: bool) -> llm.LLMError:
    return llm.LLMError(timestamp=time.time(), label="test", error=error, recoverable=recoverable)


# -- the actions ----------------------------------------------------------------------------


async def one_turn(run: Run) -> None:
    await run.turn()


async def user_closes_mid_farewell(run: Run) -> None:
    await run.turn()
    await run.until_audio()  # the farewell is playing (in real time)
    await run.session.aclose()


async def error_while_user_closing(run: Run) -> None:
    run.session.shutdown(drain=False)
    run.model.emit("error", llm_error(gateway_quota(), recoverable=False))


async def llm_and_stt_at_once(run: Run) -> None:
    # Same tick: both terminal verdicts arrive before the teardown task ever runs.
    assert run.recognizer is not None
    run.model.emit("error", llm_error(gateway_quota(), recoverable=True))
    run.recognizer.emit(
        "error",
        stt.STTError(
            timestamp=time.time(),
            label=run.recognizer.label,
            recoverable=False,
            error=APIStatusError("Incorrect API key provided", status_code=401, body=None),
        ),
    )


async def realtime_quota(run: Run) -> None:
    run.model.emit(
        "error",
        llm.RealtimeModelError(
            timestamp=time.time(),
            label="rt",
            recoverable=False,
            error=gateway_quota(),
        ),
    )


async def realtime_gives_up_unclassified(run: Run) -> None:
    # OpenAI realtime's own fatal quota error (not the gateway's): livekit raises it with
    # the RealtimeError as body, emits recoverable=False once and stops reconnecting
    # The default chain has no OpenAI classifier.
    run.model.emit(
        "error",
        llm.RealtimeModelError(
            timestamp=time.time(),
            label="livekit.plugins.openai.realtime.RealtimeModel",
            recoverable=False,
            error=APIError(
                "OpenAI Realtime API returned an error",
                retryable=False,
                body={
                    "message": "You exceeded your current quota, please check your plan.",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                },
            ),
        ),
    )


async def errors_after_close(run: Run) -> None:
    await run.turn()
    await run.guard.wait_closed()
    # The models are detached from the (gone) activity: their errors go nowhere...
    run.model.emit("error", llm_error(gateway_quota(), recoverable=False))
    # ...but the session's own emitter still reaches its listeners, the guard first.
    for _ in range(3):
        run.session.emit(
            "error",
            ErrorEvent(
                error=llm_error(gateway_quota(), recoverable=False),
                source=run.model,
            ),
        )
    await asyncio.sleep(0.1)


async def storm_of_1000(run: Run) -> None:
    # 1,000 events in one synchronous burst through the real activity path: retry
    # attempts of a rate limit, failed turns that were client cancels (they never
    # count), one terminal error in the middle, and more of the same after the decision.
    # Each a fresh error, made before the burst: the close is timed from the decision, and
    # what the burst after it costs must be the guard's and livekit's, not the test's.
    events = [
        llm_error(gateway_quota(), recoverable=True)
        if i == 500
        else llm_error(client_cancel(), recoverable=False)
        if i % 4 == 3
        else llm_error(rate_limit(), recoverable=True)
        for i in range(1000)
    ]
    for event in events:
        run.model.emit("error", event)


async def two_sessions_one_failing(run: Run) -> None:
    # A healthy neighbour in the same process must be left alone.
    other = make_session(run.sim)
    other_guard = guard(other)
    await other.start(Agent(instructions="Be brief."))
    try:
        run.model.emit("error", llm_error(gateway_quota(), recoverable=False))
        await run.guard.wait_closed()
        assert other_guard.decision is None and other_guard.close_event is None
    finally:
        await other.aclose()


async def _two_frames_then_fail() -> AsyncIterator[rtc.AudioFrame]:
    for _ in range(2):
        yield rtc.AudioFrame(b"\x00\x01" * 480, 24000, 1, 480)
    raise RuntimeError("recording storage went away")


class HungOutput(io.AudioOutput):
    """An audio output that takes frames but never reports a segment finished."""

    def __init__(self) -> None:
        super().__init__(label="HungOutput", capabilities=io.AudioOutputCapabilities(pause=False))

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)

    def flush(self) -> None:
        super().flush()

    def clear_buffer(self) -> None:
        pass


class StubbornSource:
    """A farewell source that swallows cancellation and keeps going (2 s of frames)."""

    def __init__(self) -> None:
        self._left = 100

    def __aiter__(self) -> StubbornSource:
        return self

    async def __anext__(self) -> rtc.AudioFrame:
        if self._left == 0:
            raise StopAsyncIteration
        self._left -= 1
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # ignores the cancellation for a while
        return rtc.AudioFrame(b"\x00\x01" * 480, 24000, 1, 480)


async def _stuck_hook(v: Any) -> None:
    await asyncio.sleep(3600)  # a metrics POST without a timeout


def _raise_on_closing(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if event.get("event") == "agent_guard.closing":
        raise RuntimeError("log shipper down")
    return event


def _slow_factory(v: Any) -> str:
    time.sleep(1.5)
    return "too late"


# -- the matrix -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    id: str
    act: Callable[[Run], Awaitable[None]]
    llm: tuple[Any, ...] = ()
    """Scripted LLM answers (then the default)."""
    llm_default: Any = None
    tts: tuple[Any, ...] = ()
    tts_default: Any = None
    policy: GuardPolicy = field(default_factory=lambda: GuardPolicy(farewell_timeout=2.0))
    closer: Literal["guard", "user"] = "guard"
    error_type: str = "llm_error"
    audio_output: bool = True
    realtime_output: bool = False
    with_tts: bool = True
    with_stt: bool = False
    max_retry: int = 0
    farewell: str = DEFAULT_ERROR_MESSAGE
    check: Callable[[Run], None] | None = None
    timeout: float = CASE_TIMEOUT
    """How long the session may take to close."""
    output: Callable[[], io.AudioOutput] | None = None
    """An audio output other than the capture sink."""
    log_processor: Any = None
    """A structlog processor put in front of the configured ones for the case."""


def _fell_back(run: Run) -> None:
    # TTS broke during the synthesised farewell: the packaged recording was played.
    farewell = run.guard.farewell
    assert farewell is not None and farewell.fell_back
    assert run.out is not None and run.out.duration > 1.0


def _timed_out(run: Run) -> None:
    assert run.guard.farewell is not None and run.guard.farewell.timed_out


def _not_completed(run: Run) -> None:
    assert run.guard.farewell is not None and not run.guard.farewell.completed


def _no_farewell(run: Run) -> None:
    # The guard may still decide (it saw a terminal error) but must not speak or close.
    assert run.guard.farewell is None


def _decided_once_on_first(run: Run) -> None:
    decision = run.guard.decision
    assert decision is not None and decision.verdict.kind.value == "llm"


def _tts_decision_packaged(run: Run) -> None:
    # The dead key is found by the presynthesis at start: the caller hears the packaged
    # recording, with its own words, before any turn is spent on a mute agent.
    decision = run.guard.decision
    assert decision is not None and decision.verdict.category is Category.AUTH
    farewell = run.guard.farewell
    assert farewell is not None and farewell.source == "default"
    assert farewell.text == DEFAULT_ERROR_MESSAGE


def _llm_decision_and_fell_back(run: Run) -> None:
    _decided_once_on_first(run)
    _fell_back(run)


def _storm_bounded(run: Run) -> None:
    # 1,000 classified events (counted; only the latest kept), one decision, on the terminal one.
    assert run.guard.verdict_counts == {
        "llm.client_cancelled": 250,
        "llm.quota_exhausted": 1,
        "llm.rate_limited": 749,
    }
    assert len(run.guard.verdicts) == run.guard.policy.recent_verdicts
    decision = run.guard.decision
    assert decision is not None and decision.verdict.terminal
    assert decision.verdict.category.value == "quota_exhausted"


FAULTS = [
    Fault(
        "tts_errors_during_farewell",
        one_turn,
        llm_default=QuotaExceeded(),
        tts_default=HttpError(status=500, body={"error": "tts down"}),
        check=_fell_back,
    ),
    Fault(
        "tts_fails_after_first_sentence",
        one_turn,
        llm_default=QuotaExceeded(),
        tts=(Speech(seconds=0.3),),
        tts_default=HttpError(status=503, body="overloaded"),
        check=_fell_back,
    ),
    Fault(
        "tts_hangs_during_farewell",
        one_turn,
        llm_default=QuotaExceeded(),
        tts_default=Hang(),
        policy=GuardPolicy(farewell_timeout=0.5),
        check=_timed_out,
    ),
    Fault(
        "recording_longer_than_bound",
        one_turn,
        llm_default=QuotaExceeded(),
        policy=GuardPolicy(
            farewell_timeout=0.5,
            farewell_audio=(rtc.AudioFrame(b"\x00\x00" * 480 * 100, 24000, 1, 480 * 100),),
        ),
        realtime_output=True,
        check=_timed_out,
    ),
    Fault(
        "recording_source_raises",
        one_turn,
        llm_default=QuotaExceeded(),
        policy=GuardPolicy(farewell_timeout=2.0, farewell_audio=_two_frames_then_fail),
        check=_not_completed,
    ),
    Fault("no_audio_output", one_turn, llm_default=QuotaExceeded(), audio_output=False),
    Fault(
        "user_closes_mid_farewell",
        user_closes_mid_farewell,
        llm_default=QuotaExceeded(),
        policy=GuardPolicy(),
        realtime_output=True,
        closer="user",
        check=_not_completed,
    ),
    Fault("error_while_user_closing", error_while_user_closing, closer="user", check=_no_farewell),
    Fault(
        "llm_quota_and_tts_401",
        one_turn,
        llm_default=QuotaExceeded(),
        tts_default=Unauthorized(key=SECRET_KEY),
        # Without presynthesis, the first request TTS sees is the farewell's own.
        policy=GuardPolicy(farewell_timeout=2.0, presynthesize=False),
        check=_llm_decision_and_fell_back,
    ),
    Fault(
        "tts_401_found_by_presynthesis",
        one_turn,
        tts_default=Unauthorized(key=SECRET_KEY),
        error_type="tts_error",
        check=_tts_decision_packaged,
    ),
    Fault(
        "llm_quota_and_stt_401_same_tick",
        llm_and_stt_at_once,
        with_stt=True,
        check=_decided_once_on_first,
    ),
    Fault(
        "tts_quota_with_custom_message",
        one_turn,
        tts_default=QuotaExceeded(quota_type="tts"),
        error_type="tts_error",
        policy=GuardPolicy(farewell_timeout=2.0, error_message=FAREWELL),
        farewell=FAREWELL,
    ),
    Fault(
        "realtime_quota_without_tts",
        realtime_quota,
        with_tts=False,
        error_type="realtime_model_error",
    ),
    Fault("errors_after_close", errors_after_close, llm_default=QuotaExceeded()),
    Fault(
        "realtime_gives_up_unclassified",
        realtime_gives_up_unclassified,
        with_tts=False,
        error_type="realtime_model_error",
        timeout=3.0,
    ),
    Fault("storm_of_1000_events", storm_of_1000, check=_storm_bounded),
    Fault(
        "audio_output_never_reports",
        one_turn,
        llm_default=QuotaExceeded(),
        policy=GuardPolicy(farewell_timeout=1.0, presynthesize=False),
        output=HungOutput,
        check=_timed_out,
    ),
    Fault(
        "recording_ignores_cancellation",
        one_turn,
        llm_default=QuotaExceeded(),
        policy=GuardPolicy(farewell_timeout=1.0, farewell_audio=StubbornSource),
        realtime_output=True,
        check=_timed_out,
    ),
    Fault(
        "hook_never_returns",
        one_turn,
        llm_default=QuotaExceeded(),
        policy=GuardPolicy(farewell_timeout=2.0, hooks=(_stuck_hook,), hook_timeout=0.2),
    ),
    Fault(
        "closing_log_raises",
        one_turn,
        llm_default=QuotaExceeded(),
        log_processor=_raise_on_closing,
    ),
    Fault(
        "message_factory_blocks",
        one_turn,
        llm_default=QuotaExceeded(),
        policy=GuardPolicy(farewell_timeout=1.0, error_message=_slow_factory),
    ),
    Fault("healthy_neighbour_session", two_sessions_one_failing),
]


@pytest.fixture
async def loop_problems() -> AsyncIterator[list[dict[str, Any]]]:
    """Everything that reaches the running loop's exception handler during the test."""
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    try:
        yield problems
    finally:
        loop.set_exception_handler(previous)


def _history_texts(session: AgentSession[Any]) -> list[str]:
    items = list(session.history.items)
    with contextlib.suppress(RuntimeError):  # no current agent any more
        items += list(session.current_agent.chat_ctx.items)
    return [m.text_content or "" for m in items if isinstance(m, llm.ChatMessage)]


@pytest.mark.parametrize(
    "fault",
    [pytest.param(f, id=f.id) for f in FAULTS],
)
async def test_fault(
    sim: GatewaySimulator, loop_problems: list[dict[str, Any]], fault: Fault
) -> None:
    """Under ``fault``: one close, the right one, no farewell in context, nothing leaked."""
    sim.llm.script(*fault.llm)
    if fault.llm_default is not None:
        sim.llm.default = fault.llm_default
    sim.tts.script(*fault.tts)
    if fault.tts_default is not None:
        sim.tts.default = fault.tts_default
    recognizer = openai.STT(base_url=sim.base_url, api_key=SECRET_KEY) if fault.with_stt else None
    session = make_session(sim, tts=fault.with_tts, max_retry=fault.max_retry, stt=recognizer)
    g = guard(session, fault.policy)
    out = CaptureAudioOutput(realtime=fault.realtime_output) if fault.audio_output else None
    run = Run(sim=sim, session=session, guard=g, out=out, recognizer=recognizer)
    closed_at: list[float] = []
    session.on("close", lambda ev: closed_at.append(time.monotonic()))
    session.on("close", run.closes.append)
    if fault.output is not None:
        session.output.audio = fault.output()
    elif out is not None:
        session.output.audio = out
    await session.start(Agent(instructions="Be brief."))

    previous = structlog.get_config()
    if fault.log_processor is not None:
        structlog.configure(processors=[fault.log_processor, *previous["processors"]])
    try:
        with capture_logs() as logs:
            async with asyncio.timeout(CASE_TIMEOUT):
                await fault.act(run)
            async with asyncio.timeout(fault.timeout):
                ev = await g.wait_closed()
            await asyncio.sleep(SETTLE)
    finally:
        structlog.configure(**previous)

    # 1. exactly one close
    assert len(run.closes) == 1, [c.reason for c in run.closes]
    assert run.closes[0] is ev
    # 2. the right close, carrying the error when the guard made it
    if fault.closer == "guard":
        assert ev.reason is CloseReason.ERROR
        assert ev.error is not None and ev.error.recoverable is False
        assert ev.error.type == fault.error_type
        assert isinstance(ev.error.error, Exception)
        assert g.decision is not None
        assert closed_at[0] - g.decision.at < fault.policy.farewell_timeout + BOUND_MARGIN
        # ... and the caller heard a farewell, or the log says why not.
        why_not = {
            "agent_guard.farewell_timed_out",
            "agent_guard.farewell_failed",
            "agent_guard.farewell_audio_failed",
        }
        if fault.policy.error_message is not None and fault.id not in ("closing_log_raises",):
            assert heard(g) is not None or why_not & {e["event"] for e in logs}
    else:
        assert ev.reason is CloseReason.USER_INITIATED
        assert ev.error is None
    # 3. the farewell is not part of the conversation
    assert not [t for t in _history_texts(session) if fault.farewell in t]
    # 4. no guard task left behind
    gc.collect()
    await asyncio.sleep(0)
    running = [
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("agent_guard.") and not t.done()
    ]
    assert running == []
    if fault.check is not None:
        fault.check(run)
    # 5. nothing unretrieved, nothing raised in a callback. "Task exception was never
    # retrieved" is reported when a failed task is collected, so drop the session first.
    del run, session, g, out, ev
    gc.collect()
    await asyncio.sleep(0)
    assert [p.get("message") for p in loop_problems] == []
