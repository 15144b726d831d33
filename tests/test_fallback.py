"""Guarded FallbackAdapters against livekit's stock ones, end to end.

LLM and TTS scenarios run real AgentSessions guarded with :func:`agent_guard.guard`, whose
models are real ``livekit.plugins.openai`` instances talking HTTP to one GatewaySimulator
per provider, behind real adapters. STT has no simulator endpoint: its scenarios use
small scripted ``stt.STT`` subclasses driven by livekit's own retry loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import inspect
import math
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
import tenacity
from livekit import rtc
from livekit.agents import AgentSession, APIConnectOptions, CloseReason, llm, stt, tts
from livekit.agents._exceptions import APIConnectionError, APIStatusError
from livekit.agents.language import LanguageCode
from livekit.agents.llm.fallback_adapter import FallbackLLMStream
from livekit.agents.stt.fallback_adapter import FallbackRecognizeStream
from livekit.agents.tts.fallback_adapter import FallbackChunkedStream, FallbackSynthesizeStream
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import openai

from agent_guard import Category, Guard, GuardPolicy, Kind, Reason, Verdict, classify, guard
from agent_guard._policy import DEFAULT_ERROR_MESSAGE
from agent_guard.classifiers import carried_verdict
from agent_guard.fallback import AllFailedError, FallbackLLM, FallbackSTT, FallbackTTS
from agent_guard.fallback._llm import _GuardedLLMStream
from agent_guard.fallback._stt import _GuardedRecognizeStream
from agent_guard.fallback._tts import _GuardedChunkedStream, _GuardedSynthesizeStream
from agent_guard.testing import (
    CaptureAudioOutput,
    GatewaySimulator,
    HttpError,
    QuotaExceeded,
    Reply,
    StreamError,
)
from tests.helpers import SECRET_KEY, start

TURN_TIMEOUT = 10.0
#: Short enough to keep livekit's outer retries (max_retry=3) fast.
CONN = APIConnectOptions(max_retry=3, retry_interval=0.01, timeout=5.0)
# The adapters on their own: the fleet breaker (which skips an exhausted instance before
# the adapter sees it) is tested in tests/fleet. Exact request counts per turn: no
# presynthesis request at start.
POLICY = GuardPolicy(presynthesize=False, fleet=None)
FAST_PROBES = tenacity.wait_fixed(0.05)
MID_STREAM_499 = StreamError(after_chunks=1, body={"message": "Client closed request", "code": 499})


@dataclass
class Gateways:
    """One simulator per provider endpoint."""

    primary: GatewaySimulator
    fallback: GatewaySimulator
    voice: GatewaySimulator
    """Serves whichever model is not under test (TTS in LLM tests, LLM in TTS tests)."""

    def llm_requests(self) -> tuple[int, int]:
        return len(self.primary.requests_for("llm")), len(self.fallback.requests_for("llm"))

    def tts_requests(self) -> tuple[int, int]:
        return len(self.primary.requests_for("tts")), len(self.fallback.requests_for("tts"))


@contextlib.asynccontextmanager
async def gateways() -> AsyncIterator[Gateways]:
    async with GatewaySimulator() as p, GatewaySimulator() as f, GatewaySimulator() as v:
        yield Gateways(primary=p, fallback=f, voice=v)


def openai_llm(sim: GatewaySimulator) -> openai.LLM:
    return openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key=SECRET_KEY)


def openai_tts(sim: GatewaySimulator) -> openai.TTS:
    return openai.TTS(
        model="gpt-4o-mini-tts", voice="alloy", base_url=sim.base_url, api_key=SECRET_KEY
    )


@dataclass
class Conversation:
    """A started, guarded session and what its adapter reported."""

    session: AgentSession[Any]
    guard: Guard
    out: CaptureAudioOutput
    changes: list[tuple[int, bool]] = field(default_factory=list)
    """``(instance index, available)`` per ``*_availability_changed`` event."""

    async def turn(self, text: str) -> None:
        """One user turn; a failing turn may raise, the tests look at effects instead."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TURN_TIMEOUT):
                await self.session.run(user_input=text)

    def replies(self) -> list[str]:
        return [
            m.text_content or ""
            for m in self.session.history.items
            if isinstance(m, llm.ChatMessage) and m.role == "assistant"
        ]

    async def wait_for_change(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.changes) < count:
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self.guard.close_event is None:
            await self.session.aclose()


async def converse(
    *,
    llm_model: llm.LLM[Any],
    tts_model: tts.TTS[Any],
    adapter: llm.FallbackAdapter | tts.FallbackAdapter,
    instances: Sequence[object],
) -> Conversation:
    """Start a guarded session and record the adapter's availability changes."""
    session: AgentSession[Any] = AgentSession(
        llm=llm_model,
        tts=tts_model,
        vad=None,
        turn_handling={"turn_detection": "manual"},
        conn_options=SessionConnectOptions(llm_conn_options=CONN, tts_conn_options=CONN),
    )
    g = guard(session, POLICY)
    conversation = Conversation(session=session, guard=g, out=await start(session))

    def on_change(ev: Any) -> None:
        model = ev.llm if isinstance(ev, llm.AvailabilityChangedEvent) else ev.tts
        index = next(i for i, known in enumerate(instances) if known is model)
        conversation.changes.append((index, ev.available))

    if isinstance(adapter, llm.FallbackAdapter):
        adapter.on("llm_availability_changed", on_change)
    else:
        adapter.on("tts_availability_changed", on_change)
    return conversation


async def llm_conversation(
    gw: Gateways,
    *,
    guarded: bool,
    backoff: Callable[[tenacity.RetryCallState], float] = FAST_PROBES,
) -> tuple[Conversation, llm.FallbackAdapter]:
    instances = [openai_llm(gw.primary), openai_llm(gw.fallback)]
    adapter = (
        FallbackLLM(list(instances), probe_backoff=backoff)
        if guarded
        else llm.FallbackAdapter(list(instances))
    )
    conversation = await converse(
        llm_model=adapter, tts_model=openai_tts(gw.voice), adapter=adapter, instances=instances
    )
    return conversation, adapter


class TestLLMClientCancel:
    async def test_mid_stream_499_keeps_the_primary(self) -> None:
        """Stock: a mid-stream 499 blacklists the primary, so the next turn goes elsewhere.
        Guarded: the primary stays available and serves the next turn."""
        async with gateways() as gw:
            gw.primary.llm.script(MID_STREAM_499)
            gw.primary.llm.default = Reply("From primary.")
            gw.fallback.llm.default = Reply("From fallback.")
            stock, _ = await llm_conversation(gw, guarded=False)
            await stock.turn("hi")
            await stock.turn("again")
            await stock.close()
            assert stock.changes[0] == (0, False)
            assert stock.replies()[1] == "From fallback."
            # ...and the primary was probed with a replay of the chat, a billed request.
            assert len(gw.primary.requests_for("llm")) == 2

        async with gateways() as gw:
            gw.primary.llm.script(MID_STREAM_499)
            gw.primary.llm.default = Reply("From primary.")
            gw.fallback.llm.default = Reply("From fallback.")
            conv, adapter = await llm_conversation(gw, guarded=True)
            assert isinstance(adapter, FallbackLLM)
            await conv.turn("hi")
            assert adapter.availability == (True, True)
            await conv.turn("again")
            await conv.close()

            assert conv.changes == []
            assert adapter.verdicts == (None, None)
            assert conv.replies() == ["Let", "From primary."]
            assert gw.llm_requests() == (2, 0)
            # Ended like livekit's own 499 path: no error ever reached the session.
            assert conv.guard.verdicts == ()


class TestLLMCredits:
    async def test_exhausted_primary_is_never_probed(self) -> None:
        """The fallback serves every turn; only the stock adapter keeps probing the primary."""
        async with gateways() as gw:
            gw.primary.llm.default = QuotaExceeded()
            gw.fallback.llm.default = Reply("From fallback.")
            stock, _ = await llm_conversation(gw, guarded=False)
            for text in ("one", "two", "three"):
                await stock.turn(text)
            await asyncio.sleep(0.1)  # let the last probe land
            await stock.close()
            stock_primary = len(gw.primary.requests_for("llm"))
        assert stock_primary >= 3  # one failure, then a probe per turn

        async with gateways() as gw:
            gw.primary.llm.default = QuotaExceeded()
            gw.fallback.llm.default = Reply("From fallback.")
            conv, adapter = await llm_conversation(gw, guarded=True)
            assert isinstance(adapter, FallbackLLM)
            for text in ("one", "two", "three"):
                await conv.turn(text)
                await asyncio.sleep(0.1)  # longer than FAST_PROBES: only the verdict holds
            await conv.close()

            assert gw.llm_requests() == (1, 3)
            assert conv.replies() == ["From fallback."] * 3
            primary, fallback = adapter.verdicts
            assert primary is not None
            assert primary.category is Category.QUOTA_EXHAUSTED and primary.terminal
            # Classified while the instance reported it: the gateway's hint and credit
            # figures (body and headers of the response) are still there.
            assert primary.hint is not None
            assert primary.quota is not None and primary.quota.usage.get("credits_limit")
            assert fallback is None
            assert adapter.availability == (False, True)
            assert conv.changes == [(0, False)]
            assert conv.guard.decision is None

    async def test_all_exhausted_closes_with_the_real_cause(self) -> None:
        """Guarded: one request per instance, a quota_exhausted verdict, a farewell and an
        ERROR close in the first turn. Stock: a cause-less "connection" error, four rounds
        of requests and probes, and the session goes on."""
        async with gateways() as gw:
            gw.primary.llm.default = QuotaExceeded()
            gw.fallback.llm.default = QuotaExceeded()
            stock, _ = await llm_conversation(gw, guarded=False)
            await stock.turn("hi")
            await stock.close()
            assert stock.guard.decision is None
            assert {v.category for v in stock.guard.verdicts} == {Category.CONNECTION}
            assert min(gw.llm_requests()) >= 4  # session max_retry=3: four rounds

        async with gateways() as gw:
            gw.primary.llm.default = QuotaExceeded()
            gw.fallback.llm.default = QuotaExceeded()
            conv, _ = await llm_conversation(gw, guarded=True)
            await conv.turn("hi")
            async with asyncio.timeout(10):
                close = await conv.guard.wait_closed()

            assert gw.llm_requests() == (1, 1)  # no outer retry, no probe
            decision = conv.guard.decision
            assert decision is not None
            assert decision.reason is Reason.TERMINAL
            assert decision.verdict.category is Category.QUOTA_EXHAUSTED
            assert decision.verdict.kind is Kind.LLM
            assert decision.verdict.quota is not None
            assert decision.verdict.quota.category == "MaxGatewayCredits"

            assert close.reason is CloseReason.ERROR
            assert isinstance(close.error, llm.LLMError)
            error = close.error.error
            assert isinstance(error, AllFailedError)
            assert [v.category for v in error.verdicts] == [Category.QUOTA_EXHAUSTED] * 2
            assert not error.retryable
            assert isinstance(error.__cause__, APIStatusError)
            assert error.__cause__.status_code == 429

            assert conv.guard.farewell is not None and conv.guard.farewell.completed
            assert conv.guard.farewell.text == DEFAULT_ERROR_MESSAGE
            assert conv.out.frames

    async def test_mixed_round_is_transient_and_spares_the_exhausted(self) -> None:
        """Primary out of credits, fallback failing with 500s: the round is transient (the
        fallback may come back), and the rounds livekit reruns never ask the primary."""
        async with gateways() as gw:
            gw.primary.llm.default = QuotaExceeded()
            gw.fallback.llm.default = HttpError(status=500)
            conv, _ = await llm_conversation(gw, guarded=True)
            await conv.turn("one")
            await conv.turn("two")
            await conv.close()

            # Two turns of four rounds each (session max_retry=3): the primary once.
            assert gw.llm_requests() == (1, 8)
            assert conv.guard.decision is None
            assert {v.category for v in conv.guard.verdicts} == {Category.SERVER_ERROR}
            assert "#0 quota_exhausted, #1 server_error" in conv.guard.verdicts[-1].detail


class TestLLMServerError:
    async def test_fails_over_then_recovers_after_the_backoff(self) -> None:
        """A 500 fails over as in livekit; the probe waits for the backoff, then the
        recovered primary is available again and serves."""
        async with gateways() as gw:
            gw.primary.llm.default = HttpError(status=500)
            gw.fallback.llm.default = Reply("From fallback.")
            conv, adapter = await llm_conversation(gw, guarded=True)
            assert isinstance(adapter, FallbackLLM)
            await conv.turn("one")
            # livekit would probe right now; the backoff holds it.
            assert gw.llm_requests() == (1, 1)
            primary = adapter.verdicts[0]
            assert primary is not None and primary.category is Category.SERVER_ERROR
            assert adapter.availability == (False, True)

            gw.primary.llm.default = Reply("From primary.")
            await asyncio.sleep(0.1)  # past FAST_PROBES
            await conv.turn("two")  # served by the fallback; starts the probe
            await conv.wait_for_change(2)
            await conv.turn("three")
            await conv.close()

            assert conv.changes == [(0, False), (0, True)]
            assert adapter.availability == (True, True)
            assert adapter.verdicts == (None, None)
            assert [r.status for r in gw.primary.requests_for("llm")] == [500, 200, 200]
            assert conv.replies() == ["From fallback.", "From fallback.", "From primary."]
            assert conv.guard.verdicts == ()


class TestTTSCredits:
    async def _conversation(
        self, gw: Gateways, *, guarded: bool
    ) -> tuple[Conversation, tts.FallbackAdapter]:
        gw.primary.tts.default = QuotaExceeded(quota_type="tts")
        gw.voice.llm.default = Reply("One sentence only.")
        instances = [openai_tts(gw.primary), openai_tts(gw.fallback)]
        # No retries inside an instance: failover is the adapter's job here.
        adapter = (
            FallbackTTS(list(instances), max_retry_per_tts=0, probe_backoff=FAST_PROBES)
            if guarded
            else tts.FallbackAdapter(list(instances), max_retry_per_tts=0)
        )
        conversation = await converse(
            llm_model=openai_llm(gw.voice), tts_model=adapter, adapter=adapter, instances=instances
        )
        return conversation, adapter

    async def test_fallback_speaks_and_the_primary_is_never_probed(self) -> None:
        async with gateways() as gw:
            stock, _ = await self._conversation(gw, guarded=False)
            for text in ("one", "two", "three"):
                await stock.turn(text)
            await asyncio.sleep(0.1)
            await stock.close()
            stock_primary = gw.tts_requests()[0]
        assert stock_primary >= 3  # one failure, then a probe per sentence

        async with gateways() as gw:
            conv, adapter = await self._conversation(gw, guarded=True)
            assert isinstance(adapter, FallbackTTS)
            for text in ("one", "two", "three"):
                await conv.turn(text)
                await asyncio.sleep(0.1)
            await conv.close()

            assert gw.tts_requests() == (1, 3)
            assert len(conv.out.segments) == 3  # every reply was heard
            primary = adapter.verdicts[0]
            assert primary is not None and primary.category is Category.QUOTA_EXHAUSTED
            assert adapter.availability == (False, True)
            assert conv.changes == [(0, False)]
            assert conv.guard.decision is None


class TestCombinedVerdict:
    """AllFailedError and carried_verdict decide for the whole round."""

    @staticmethod
    def verdict(category: Category, *, status: int | None = None) -> Verdict:
        terminal = category in (Category.QUOTA_EXHAUSTED, Category.AUTH)
        return Verdict(
            kind=Kind.LLM, category=category, terminal=terminal, counts=True, status_code=status
        )

    def test_terminal_only_when_every_instance_is(self) -> None:
        error = AllFailedError(
            "all failed",
            verdicts=[self.verdict(Category.AUTH), self.verdict(Category.QUOTA_EXHAUSTED)],
        )
        assert error.verdict.terminal and error.verdict.category is Category.AUTH
        assert error.decisive == 0
        assert not error.retryable

    def test_otherwise_the_most_informative_transient_verdict(self) -> None:
        error = AllFailedError(
            "all failed",
            verdicts=[
                self.verdict(Category.QUOTA_EXHAUSTED, status=429),
                self.verdict(Category.UNKNOWN),
                self.verdict(Category.SERVER_ERROR, status=500),
            ],
        )
        assert error.decisive == 2
        assert not error.verdict.terminal
        assert error.verdict.category is Category.SERVER_ERROR
        assert error.retryable
        assert "#0 quota_exhausted" in error.verdict.detail

    def test_found_anywhere_on_the_chain(self) -> None:
        inner = AllFailedError("all failed", verdicts=[self.verdict(Category.QUOTA_EXHAUSTED)])
        try:
            try:
                raise inner
            except AllFailedError as e:
                raise APIConnectionError("failed after 4 attempts") from e
        except APIConnectionError as outer:
            verdict = classify(
                outer, kind=Kind.LLM, classifiers=(carried_verdict,), recoverable=True
            )
        assert verdict.category is Category.QUOTA_EXHAUSTED
        assert verdict.recoverable
        # Anything else is left to the next classifiers (here: the generic rules).
        plain = classify(APIConnectionError("x"), kind=Kind.LLM, classifiers=(carried_verdict,))
        assert plain.category is Category.CONNECTION

    def test_survives_copy_and_pickle(self) -> None:
        error = AllFailedError("all failed", verdicts=[self.verdict(Category.AUTH)])
        for clone in (copy.copy(error), pickle.loads(pickle.dumps(error))):
            assert isinstance(clone, AllFailedError)
            assert clone.verdicts == error.verdicts and clone.message == "all failed"
            assert not clone.retryable

    def test_needs_verdicts(self) -> None:
        with pytest.raises(ValueError, match="one verdict per instance"):
            AllFailedError("all failed", verdicts=[])


# -- STT: scripted instances, livekit's real adapter loops and retry loops -------------

Answer = str | Exception


def client_closed() -> APIStatusError:
    return APIStatusError("Client closed request", status_code=499)


def unauthorized() -> APIStatusError:
    return APIStatusError("Incorrect API key provided", status_code=401)


class ScriptedSTT(stt.STT[Any]):
    """A streaming-capable STT answering from a script (a transcript or an exception)."""

    def __init__(self, name: str, *script: Answer, default: Answer = "hello") -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False))
        self._label = f"tests.{name}"
        self._script = list(script)
        self._default = default
        self.calls = 0

    def _next(self) -> Answer:
        self.calls += 1
        return self._script.pop(0) if self._script else self._default

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        answer = self._next()
        if isinstance(answer, Exception):
            raise answer
        return final(answer)

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = CONN,
    ) -> stt.RecognizeStream:
        return _ScriptedStream(stt=self, answer=self._next(), conn_options=conn_options)


class _ScriptedStream(stt.RecognizeStream):
    def __init__(
        self, *, stt: ScriptedSTT, answer: Answer, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=stt, conn_options=conn_options)
        self._answer = answer

    async def _run(self) -> None:
        # Answers at once: waiting for end of input would hang the fallback instance,
        # since livekit ends input only on the stream that was current when it ran out.
        if isinstance(self._answer, Exception):
            raise self._answer
        self._event_ch.send_nowait(final(self._answer))


def final(text: str) -> stt.SpeechEvent:
    return stt.SpeechEvent(
        type=stt.SpeechEventType.FINAL_TRANSCRIPT,
        alternatives=[stt.SpeechData(language=LanguageCode("en"), text=text)],
    )


def silence() -> rtc.AudioFrame:
    return rtc.AudioFrame(
        data=bytes(480 * 2), sample_rate=48000, num_channels=1, samples_per_channel=480
    )


STT_KW: dict[str, Any] = {"max_retry_per_stt": 0, "retry_interval": 0.01}


def stt_pair(
    guarded: bool, primary: ScriptedSTT, fallback: ScriptedSTT
) -> tuple[stt.FallbackAdapter, list[tuple[int, bool]]]:
    adapter = (
        FallbackSTT([primary, fallback], probe_backoff=FAST_PROBES, **STT_KW)
        if guarded
        else stt.FallbackAdapter([primary, fallback], **STT_KW)
    )
    changes: list[tuple[int, bool]] = []
    adapter.on(
        "stt_availability_changed",
        lambda ev: changes.append((0 if ev.stt is primary else 1, ev.available)),
    )
    return adapter, changes


async def recognize(adapter: stt.STT[Any]) -> str:
    event = await adapter.recognize([silence()])
    return event.alternatives[0].text


async def stream_once(adapter: stt.STT[Any]) -> list[str]:
    stream = adapter.stream()
    stream.push_frame(silence())
    stream.end_input()
    async with asyncio.timeout(5):
        return [ev.alternatives[0].text async for ev in stream if ev.alternatives]


class TestSTT:
    @pytest.mark.parametrize("path", [recognize, stream_once], ids=["recognize", "stream"])
    async def test_client_cancel_keeps_the_primary(
        self, path: Callable[[stt.STT[Any]], Awaitable[object]]
    ) -> None:
        """livekit's STT does not swallow a 499 (unlike LLM and TTS): stock marks the
        primary unavailable; guarded fails over for this request only, and sends no probe."""
        primary = ScriptedSTT("primary", client_closed(), default="from primary")
        fallback = ScriptedSTT("fallback", default="from fallback")
        stock, changes = stt_pair(False, primary, fallback)
        assert "from fallback" in str(await path(stock))
        assert changes[0] == (0, False)
        await stock.aclose()

        primary = ScriptedSTT("primary", client_closed(), default="from primary")
        fallback = ScriptedSTT("fallback", default="from fallback")
        adapter, changes = stt_pair(True, primary, fallback)
        assert isinstance(adapter, FallbackSTT)
        assert "from fallback" in str(await path(adapter))
        await asyncio.sleep(0.1)  # past FAST_PROBES
        assert changes == []
        assert adapter.availability == (True, True)
        assert adapter.verdicts == (None, None)
        assert primary.calls == 1
        assert "from primary" in str(await path(adapter))
        await adapter.aclose()

    async def test_terminal_primary_is_never_asked_again(self) -> None:
        primary = ScriptedSTT("primary", default=unauthorized())
        fallback = ScriptedSTT("fallback", default="from fallback")
        adapter, changes = stt_pair(True, primary, fallback)
        assert isinstance(adapter, FallbackSTT)
        for _ in range(3):
            assert await recognize(adapter) == "from fallback"
            await asyncio.sleep(0.1)  # past FAST_PROBES: only the verdict holds probes back
        assert primary.calls == 1
        verdict = adapter.verdicts[0]
        assert verdict is not None and verdict.category is Category.AUTH and verdict.terminal
        assert changes == [(0, False)]
        await adapter.aclose()

    async def test_all_failed_carries_each_cause(self) -> None:
        primary = ScriptedSTT("primary", default=unauthorized())
        fallback = ScriptedSTT("fallback", default=APIStatusError("boom", status_code=503))
        adapter, _ = stt_pair(True, primary, fallback)
        with pytest.raises(AllFailedError) as caught:
            await recognize(adapter)
        error = caught.value
        assert [v.category for v in error.verdicts] == [Category.AUTH, Category.OVERLOADED]
        assert error.verdict.category is Category.OVERLOADED and not error.verdict.terminal
        assert isinstance(error.__cause__, APIStatusError) and error.__cause__.status_code == 503
        await adapter.aclose()


# -- probe_backoff: any tenacity wait strategy ------------------------------------------

NOWHERE = "http://127.0.0.1:9/v1"


def adapter_with(kind: Kind, backoff: Any) -> llm.LLM[Any] | tts.TTS[Any] | stt.STT[Any]:
    """A guarded adapter of ``kind`` over instances that are never asked anything."""
    if kind is Kind.LLM:
        return FallbackLLM(
            [openai.LLM(base_url=NOWHERE, api_key=SECRET_KEY)], probe_backoff=backoff
        )
    if kind is Kind.TTS:
        voice = openai.TTS(base_url=NOWHERE, api_key=SECRET_KEY)
        return FallbackTTS([voice], probe_backoff=backoff)
    return FallbackSTT([ScriptedSTT("primary")], probe_backoff=backoff)


def retry_state(attempt: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = attempt
    return state


KINDS = [Kind.LLM, Kind.TTS, Kind.STT]


class TestProbeBackoff:
    """probe_backoff= takes tenacity waits, fed with each instance's failure streak."""

    @pytest.mark.parametrize("adapter", [FallbackLLM, FallbackTTS, FallbackSTT])
    def test_default_doubles_from_one_second_up_to_thirty(self, adapter: type[object]) -> None:
        """1, 2, 4, ... s after the 1st, 2nd, 3rd consecutive failure, at most 30 s."""
        default = inspect.signature(adapter).parameters["probe_backoff"].default
        assert [default(retry_state(n)) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
        assert default(retry_state(10_000)) == 30  # no OverflowError

    async def test_the_strategy_sees_the_failure_streak(self) -> None:
        """attempt_number counts consecutive failures, probes included, and outcome holds
        the failure; a served request (here a successful probe) starts a new streak."""
        seen: list[tuple[int, int | None]] = []

        def record(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            seen.append((state.attempt_number, getattr(error, "status_code", None)))
            return 0  # probe at once, as livekit does

        async def seen_count(count: int) -> None:
            async with asyncio.timeout(5):
                while len(seen) < count:
                    await asyncio.sleep(0.01)

        async with gateways() as gw:
            gw.primary.llm.default = HttpError(status=500)
            gw.fallback.llm.default = Reply("From fallback.")
            conv, _ = await llm_conversation(gw, guarded=True, backoff=record)
            await conv.turn("one")  # fails, then its probe at once
            await seen_count(2)
            await conv.turn("two")  # a probe
            await seen_count(3)

            gw.primary.llm.default = Reply("From primary.")
            await conv.turn("three")  # the probe succeeds
            await conv.wait_for_change(2)
            gw.primary.llm.script(HttpError(status=500))
            await conv.turn("four")  # fails again: a new streak, then a served probe
            await conv.wait_for_change(4)
            await conv.close()

        assert seen == [(1, 500), (2, 500), (3, 500), (1, 500)]
        assert conv.changes == [(0, False), (0, True), (0, False), (0, True)]

    @pytest.mark.parametrize(
        "broken",
        [lambda _: 1 / 0, lambda _: math.nan, lambda _: -1.0, lambda _: "soon"],
        ids=["raises", "nan", "negative", "not-a-number"],
    )
    async def test_a_broken_strategy_gives_way_to_the_default(
        self, broken: Callable[[tenacity.RetryCallState], float]
    ) -> None:
        """Failover goes on, the failure is logged, and the default backoff (1 s after a
        first failure) holds the probe that a zero wait would have sent at once."""
        async with gateways() as gw:
            gw.primary.llm.default = HttpError(status=500)
            gw.fallback.llm.default = Reply("From fallback.")
            with structlog.testing.capture_logs() as logs:
                conv, adapter = await llm_conversation(gw, guarded=True, backoff=broken)
                await conv.turn("one")
                await asyncio.sleep(0.1)
                await conv.close()

            assert conv.replies() == ["From fallback."]
            assert gw.llm_requests() == (1, 1)
            assert isinstance(adapter, FallbackLLM)
            assert adapter.availability == (False, True)
            assert [e["event"] for e in logs].count("agent_guard.probe_backoff_failed") == 1

    @pytest.mark.parametrize(
        "value",
        [1.0, 0, True, None, "exponential", tenacity.wait_exponential],
        ids=["float", "int", "bool", "none", "str", "uninstantiated"],
    )
    @pytest.mark.parametrize("kind", KINDS, ids=str)
    def test_rejects_what_is_not_a_wait_strategy(self, kind: Kind, value: object) -> None:
        with pytest.raises(TypeError, match="probe_backoff must be a tenacity wait strategy"):
            adapter_with(kind, value)

    @pytest.mark.parametrize(
        "value",
        [
            tenacity.wait_none(),
            tenacity.wait_fixed(1) + tenacity.wait_random(0, 1),
            tenacity.wait_chain(tenacity.wait_fixed(1), tenacity.wait_fixed(5)),
            tenacity.wait_random_exponential(max=60),
            lambda state: 2.0 * state.attempt_number,
        ],
        ids=["none", "combined", "chain", "random-exponential", "callable"],
    )
    @pytest.mark.parametrize("kind", KINDS, ids=str)
    def test_accepts_any_tenacity_wait(self, kind: Kind, value: object) -> None:
        adapter = adapter_with(kind, value)
        assert adapter.label == f"agent_guard.fallback.Fallback{kind.value.upper()}"


# -- Seams: the private livekit methods and attributes the adapters build on ------------

#: (livekit's class, ours, what ours overrides that livekit's loops call by name).
OVERRIDES: list[tuple[type[object], type[object], tuple[str, ...]]] = [
    (FallbackLLMStream, _GuardedLLMStream, ("__init__", "_try_generate", "_try_recovery", "_run")),
    (
        FallbackChunkedStream,
        _GuardedChunkedStream,
        ("__init__", "_try_synthesize", "_try_recovery", "_run"),
    ),
    (
        FallbackSynthesizeStream,
        _GuardedSynthesizeStream,
        ("__init__", "_try_synthesize", "_try_recovery", "_run"),
    ),
    (FallbackRecognizeStream, _GuardedRecognizeStream, ("__init__", "_try_recovery", "_run")),
    (llm.FallbackAdapter, FallbackLLM, ("chat", "aclose")),
    (tts.FallbackAdapter, FallbackTTS, ("synthesize", "stream", "aclose")),
    (
        stt.FallbackAdapter,
        FallbackSTT,
        ("_try_recognize", "_try_recovery", "_recognize_impl", "emit", "stream", "aclose"),
    ),
]
#: The adapters' own constructors: livekit's keywords, then ours.
OUR_KEYWORDS = ["classifiers", "probe_backoff"]


def shape(function: Callable[..., object]) -> tuple[str, list[tuple[str, object, object]]]:
    """What a caller relies on: sync/async/generator, then each parameter's name, kind
    and default."""
    if inspect.isasyncgenfunction(function):
        flavour = "async generator"
    elif inspect.iscoroutinefunction(function):
        flavour = "coroutine"
    else:
        flavour = "function"
    parameters = inspect.signature(function).parameters.values()
    return flavour, [(p.name, p.kind, p.default) for p in parameters]


class TestSeams:
    """What agent_guard.fallback overrides or reads, against the installed livekit-agents."""

    @pytest.mark.parametrize(
        ("upstream", "ours", "names"), OVERRIDES, ids=[o.__name__ for _, o, _ in OVERRIDES]
    )
    def test_each_override_matches_livekit(
        self, upstream: type[object], ours: type[object], names: tuple[str, ...]
    ) -> None:
        """Every overridden method still exists upstream with the very same shape, so
        livekit's loops still call ours, with the arguments ours passes on."""
        for name in names:
            assert name in vars(ours), f"{ours.__name__}.{name} is listed but not overridden"
            original = getattr(upstream, name, None)
            assert original is not None, f"livekit {upstream.__qualname__}.{name} is gone"
            assert shape(vars(ours)[name]) == shape(original), f"{upstream.__qualname__}.{name}"

    @pytest.mark.parametrize(
        ("upstream", "ours", "names"), OVERRIDES, ids=[o.__name__ for _, o, _ in OVERRIDES]
    )
    def test_no_override_is_left_out(
        self, upstream: type[object], ours: type[object], names: tuple[str, ...]
    ) -> None:
        """The table above lists every livekit method the guarded classes replace."""
        replaced = {
            name
            for name, value in vars(ours).items()
            if callable(value) and hasattr(upstream, name) and not name.startswith("__")
        }
        assert replaced <= set(names)

    @pytest.mark.parametrize(
        "pair",
        [
            (llm.FallbackAdapter, FallbackLLM),
            (tts.FallbackAdapter, FallbackTTS),
            (stt.FallbackAdapter, FallbackSTT),
        ],
        ids=["llm", "tts", "stt"],
    )
    def test_constructors_are_drop_in(self, pair: tuple[type[object], type[object]]) -> None:
        """Ours take exactly livekit's parameters, then classifiers= and probe_backoff=."""
        upstream, ours = pair
        _, theirs = shape(vars(upstream)["__init__"])
        _, mine = shape(vars(ours)["__init__"])
        assert [p[:2] for p in mine] == [p[:2] for p in theirs] + [
            (name, inspect.Parameter.KEYWORD_ONLY) for name in OUR_KEYWORDS
        ]
        assert [p[2] for p in mine[: len(theirs)]] == [p[2] for p in theirs]

    def test_the_private_attributes_read_exist(self) -> None:
        """The instance lists and per-instance ``available`` flags, and STT's availability
        event (read in FallbackSTT.emit)."""
        llms = [openai.LLM(base_url=NOWHERE, api_key=SECRET_KEY) for _ in range(2)]
        voices = [openai.TTS(base_url=NOWHERE, api_key=SECRET_KEY) for _ in range(2)]
        stts = [ScriptedSTT("primary"), ScriptedSTT("fallback")]
        adapters: list[tuple[Any, list[Any], str]] = [
            (FallbackLLM(list(llms)), llms, "_llm_instances"),
            (FallbackTTS(list(voices)), voices, "_tts_instances"),
            (FallbackSTT(list(stts), **STT_KW), stts, "_stt_instances"),
        ]
        for adapter, instances, attribute in adapters:
            known = getattr(adapter, attribute)
            assert len(known) == len(instances)
            assert all(a is b for a, b in zip(known, instances, strict=True))
            assert [status.available for status in adapter._status] == [True, True]
        fields = {f.name for f in dataclasses.fields(stt.AvailabilityChangedEvent)}
        assert fields == {"stt", "available"}
