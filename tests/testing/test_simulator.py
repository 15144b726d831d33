"""GatewaySimulator, driven by the real livekit openai plugins and openai SDK over HTTP.

These tests also pin the upstream behaviour the guard is built on (which exception, which
``__cause__``/``__context__``, which body and headers), so an upstream change fails here first.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import openai
import pytest
from livekit import rtc
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    llm,
    stt,
)
from livekit.agents.inference._utils import extract_quota_usage
from livekit.agents.voice.run_result import RunResult
from livekit.plugins import openai as lk_openai

from agent_guard import Category, Kind, Verdict, classify
from agent_guard.testing import (
    CaptureAudioOutput,
    ClientCancelled,
    GatewaySimulator,
    Hang,
    HttpError,
    QuotaExceeded,
    RateLimited,
    Reply,
    Speech,
    StreamError,
    Transcript,
    Unauthorized,
)

FAIL_FAST = APIConnectOptions(max_retry=0, timeout=2.0)


@pytest.fixture
async def sim() -> AsyncIterator[GatewaySimulator]:
    async with GatewaySimulator() as simulator:
        yield simulator


@pytest.fixture
async def model(sim: GatewaySimulator) -> AsyncIterator[lk_openai.LLM]:
    instance = lk_openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key="sk-test")
    yield instance
    await instance.aclose()


@dataclass
class SeenError:
    """An LLM ``"error"`` event, with ``__context__`` read while the event was being emitted."""

    error: Exception
    recoverable: bool
    context_at_emit: BaseException | None


def watch_errors(model: llm.LLM[Any]) -> list[SeenError]:
    seen: list[SeenError] = []

    def on_error(ev: llm.LLMError) -> None:
        seen.append(SeenError(ev.error, ev.recoverable, ev.error.__context__))

    model.on("error", on_error)
    return seen


def chat_ctx() -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="hello")
    return ctx


async def complete(
    model: llm.LLM[Any],
    conn_options: APIConnectOptions = FAIL_FAST,
    *,
    received: list[str] | None = None,
) -> str:
    """The streamed text; each piece also goes to ``received`` as it arrives."""
    received = [] if received is None else received
    async with model.chat(chat_ctx=chat_ctx(), conn_options=conn_options) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                received.append(chunk.delta.content)
    return "".join(received)


async def synthesize(tts: lk_openai.TTS, text: str) -> tuple[bytes, int]:
    """All samples the plugin decoded for ``text``, and their sample rate."""
    async with asyncio.timeout(5):
        frames = [audio.frame async for audio in tts.synthesize(text, conn_options=FAIL_FAST)]
    assert {f.sample_rate for f in frames} == {24_000}
    return b"".join(bytes(f.data) for f in frames), 24_000


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


class TestServer:
    """The simulator listens, records every request and closes promptly."""

    async def test_base_url_requires_start(self) -> None:
        simulator = GatewaySimulator()
        with pytest.raises(RuntimeError):
            _ = simulator.base_url
        await simulator.start()
        assert simulator.base_url.startswith("http://127.0.0.1:")
        assert simulator.base_url.endswith("/v1")
        await simulator.aclose()
        await simulator.aclose()  # idempotent

    async def test_unknown_path_is_404_and_recorded(self, sim: GatewaySimulator) -> None:
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{sim.base_url}/nope") as response:
                assert response.status == 404
            async with client.get(f"{sim.base_url}/models") as response:
                assert response.status == 200
        assert [(r.endpoint, r.path, r.status) for r in sim.requests] == [
            ("other", "/v1/nope", 404),
            ("other", "/v1/models", 200),
        ]
        assert not sim.requests[0].authorization_present

    async def test_scripts_refuse_answers_of_the_other_endpoint(
        self, sim: GatewaySimulator
    ) -> None:
        with pytest.raises(TypeError):
            sim.tts.script(Reply())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            sim.llm.default = Speech()  # type: ignore[assignment]

    async def test_aclose_cuts_off_hanging_requests(self, sim: GatewaySimulator) -> None:
        sim.llm.default = Hang()

        async def post(client: aiohttp.ClientSession) -> int:
            async with client.post(f"{sim.base_url}/chat/completions", json={}) as response:
                return response.status

        async with aiohttp.ClientSession() as client:
            pending = asyncio.create_task(post(client))
            async with asyncio.timeout(2):
                await sim.wait_for_request("llm")
            started = time.monotonic()
            await sim.aclose()
            assert time.monotonic() - started < 0.5
            with pytest.raises(aiohttp.ClientError):
                await pending
        assert sim.requests[0].status is None


class TestLLMReplies:
    """Reply streams a completion the openai plugin parses like OpenAI's."""

    async def test_reply_streams_text_and_is_recorded(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        sim.llm.script(Reply("Hi there."))
        assert await complete(model) == "Hi there."
        assert await complete(model) == "Hello! How can I help?"  # the default once consumed

        first, second = sim.requests_for("llm")
        assert (first.method, first.path, first.status) == ("POST", "/v1/chat/completions", 200)
        assert first.authorization_present
        assert first.json is not None
        assert first.json["model"] == "gpt-4o-mini"
        assert first.json["stream_options"] == {"include_usage": True}
        assert first.responded_at is not None
        assert first.at <= first.responded_at <= second.at
        assert sim.llm.pending == 0

    async def test_usage_chunk_reaches_the_plugin(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        async with model.chat(chat_ctx=chat_ctx(), conn_options=FAIL_FAST) as stream:
            usages = [chunk.usage async for chunk in stream if chunk.usage]
        assert len(usages) == 1
        assert usages[0].completion_tokens == 5  # one per word of the default reply

    async def test_slow_first_token(self, sim: GatewaySimulator, model: lk_openai.LLM) -> None:
        sim.llm.script(Reply("Slow start.", first_token_delay=0.3))
        started = time.monotonic()
        async with model.chat(chat_ctx=chat_ctx(), conn_options=FAIL_FAST) as stream:
            async for chunk in stream:
                if chunk.delta and chunk.delta.content:
                    first_token_after = time.monotonic() - started
                    break
        assert 0.3 <= first_token_after < 1.0
        (record,) = sim.requests_for("llm")
        assert record.responded_at is not None
        assert record.responded_at - record.at < 0.1  # the status line is not delayed

    async def test_non_streaming_request(self, sim: GatewaySimulator) -> None:
        client = openai.AsyncClient(base_url=sim.base_url, api_key="sk-test", max_retries=0)
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
        await client.close()
        assert completion.choices[0].message.content == "Hello! How can I help?"


class TestLLMFailures:
    """Each scripted failure surfaces through openai.LLM as it would from the real gateway."""

    async def test_quota_exceeded_keeps_the_gateway_body_on_context(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        quota = QuotaExceeded()
        sim.llm.script(quota)
        seen = watch_errors(model)
        with pytest.raises(APIStatusError) as raised:
            await complete(model)

        error = raised.value
        assert error.status_code == 429
        assert error.retryable  # livekit exempts 429 from "4xx is not retryable"
        assert error.request_id == sim.requests[0].request_id
        # The SDK narrows the body to the "error" string: category and hint are gone here.
        assert error.body == "LLM token credit quota exceeded, category: MaxGatewayCredits"

        (event,) = seen
        assert event.error is error
        assert not event.recoverable
        context = event.context_at_emit
        assert isinstance(context, openai.RateLimitError)
        assert context.response.json() == {
            "error": "LLM token credit quota exceeded, category: MaxGatewayCredits",
            "type": "inference_quota_exceeded",
            "quota_type": "llm",
            "category": "MaxGatewayCredits",
            "hint": "Wait for the next billing cycle or upgrade your plan.",
        }
        assert extract_quota_usage(context.response.headers) == {
            "credits_limit": "1000",
            "credits_used": "1000",
        }
        assert context.response.headers["x-request-id"] == error.request_id
        # LLMStream.__anext__ re-raises the task's exception inside `except
        # StopAsyncIteration` (livekit/agents/llm/llm.py), which overwrites
        # __context__: the gateway response is only reachable while the event is emitted.
        assert isinstance(error.__context__, StopAsyncIteration)

    async def test_after_retries_the_cause_keeps_its_context(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        sim.llm.script(QuotaExceeded(), QuotaExceeded())
        with pytest.raises(APIConnectionError) as raised:
            await complete(model, APIConnectOptions(max_retry=1, timeout=2.0))
        cause = raised.value.__cause__
        assert isinstance(cause, APIStatusError)
        assert cause.status_code == 429
        # The last attempt's error is chained with `from e`, never re-raised itself.
        assert isinstance(cause.__context__, openai.RateLimitError)
        assert len(sim.requests_for("llm")) == 2

    async def test_rate_limited_stamps_rpm_headers_and_the_rate_hint(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        sim.llm.script(RateLimited(retry_after=1.5, remaining_limit="0"))
        seen = watch_errors(model)
        with pytest.raises(APIStatusError):
            await complete(model)
        context = seen[0].context_at_emit
        assert isinstance(context, openai.RateLimitError)
        body = context.response.json()
        assert body["category"] == "MaxConcurrentGatewayLLMRpm"
        assert body["hint"] == "Reduce request rate or upgrade your plan."
        assert body["remaining_limit"] == "0"
        assert context.response.headers["Retry-After"] == "1.5"
        assert extract_quota_usage(context.response.headers) == {
            "rpm_limit": "100",
            "rpm_used": "100",
        }

    async def test_unauthorized_echoes_the_key(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        sim.llm.script(Unauthorized(key="sk-live-SECRET"))
        with pytest.raises(APIStatusError) as raised:
            await complete(model)
        assert raised.value.status_code == 401
        assert not raised.value.retryable
        assert isinstance(raised.value.body, dict)
        assert raised.value.body["code"] == "invalid_api_key"
        assert "sk-live-SECRET" in raised.value.body["message"]
        assert "sk-live-SECRET" in raised.value.message  # the SDK copies it into the message

    async def test_non_json_body(self, sim: GatewaySimulator, model: lk_openai.LLM) -> None:
        sim.llm.script(HttpError(502, b"<html>bad gateway</html>"))
        with pytest.raises(APIStatusError) as raised:
            await complete(model)
        assert raised.value.status_code == 502
        assert raised.value.retryable
        assert raised.value.body == "<html>bad gateway</html>"

    async def test_json_fields_of_the_wrong_type(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        sim.llm.script(HttpError(400, {"error": {"message": 42, "code": ["x"]}}))
        with pytest.raises(APIStatusError) as raised:
            await complete(model)
        assert raised.value.status_code == 400
        assert raised.value.body == {"message": 42, "code": ["x"]}

    async def test_client_cancelled_is_swallowed_silently(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        sim.llm.script(ClientCancelled())
        seen = watch_errors(model)
        # LLMStream._main_task returns on APIStatusError(499): no event, no raise, no text.
        assert await complete(model) == ""
        assert seen == []
        assert sim.requests[0].status == 499

    async def test_stream_error_becomes_a_connection_error(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        sim.llm.script(StreamError(after_chunks=2, body={"message": "gone", "code": 499}))
        received: list[str] = []
        with pytest.raises(APIConnectionError) as raised:
            await complete(model, received=received)
        assert "".join(received) == "Let me"
        assert not raised.value.retryable  # text was already sent
        cause = raised.value.__cause__
        assert isinstance(cause, openai.APIError)
        assert not isinstance(cause, openai.APIStatusError)
        assert cause.body == {"message": "gone", "code": 499}
        assert sim.requests[0].status == 200

    async def test_hang_times_out(self, sim: GatewaySimulator, model: lk_openai.LLM) -> None:
        sim.llm.script(Hang())
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await complete(model, APIConnectOptions(max_retry=0, timeout=0.3))
        assert 0.3 <= time.monotonic() - started < 1.0
        assert sim.requests[0].status is None
        assert sim.requests[0].responded_at is None


class TestQuotaBodies:
    """QuotaExceeded picks the gateway's hint and headers from the category and fields."""

    @pytest.mark.parametrize(
        ("category", "terminal"),
        [
            ("MaxGatewayCredits", True),
            ("MaxBargeInRequests", True),
            ("MaxEotRequests", True),
            ("MaxConcurrentGatewayLLMRpm", False),
            ("MaxConcurrentGatewayLLMTpm", False),
            ("MaxConcurrentGatewaySTT", False),
            ("MaxConcurrentGatewayTTS", False),
            ("MaxBargeInRPM", False),
        ],
    )
    def test_hint_follows_the_category(self, category: str, terminal: bool) -> None:
        body = QuotaExceeded(category=category).body
        assert body["type"] == "inference_quota_exceeded"
        assert body["error"].endswith(f", category: {category}")
        assert ("billing cycle" in body["hint"]) is terminal
        assert ("Reduce request rate" in body["hint"]) is not terminal

    def test_only_given_headers_are_sent(self) -> None:
        quota = QuotaExceeded(credits_limit=None, credits_used=None, tpm_limit=5000, tpm_used=5012)
        assert quota.headers == {
            "X-LiveKit-Inference-TPM-Limit": "5000",
            "X-LiveKit-Inference-TPM-Used": "5012",
        }
        assert QuotaExceeded(retry_after=30).headers["Retry-After"] == "30"

    def test_explicit_texts_win(self) -> None:
        body = QuotaExceeded(message="custom", hint="", remaining_limit=0).body
        assert (body["error"], body["hint"], body["remaining_limit"]) == ("custom", "", 0)


class TestSpeech:
    """Speech answers with real audio the openai TTS plugin decodes, in every format."""

    @pytest.mark.parametrize("response_format", ["pcm", "wav", "mp3", "aac", "flac", "opus"])
    @pytest.mark.parametrize("tts_model", ["tts-1", "gpt-4o-mini-tts"])  # raw body, then SSE
    async def test_formats_decode_to_the_tone(
        self, sim: GatewaySimulator, response_format: str, tts_model: str
    ) -> None:
        tts = lk_openai.TTS(
            base_url=sim.base_url,
            api_key="sk-test",
            model=tts_model,
            response_format=response_format,
        )
        pcm, rate = await synthesize(tts, "x" * 20)
        await tts.aclose()

        # 20 characters at 0.06 s each; livekit's flac decoding drops ~0.1 s of the tail.
        assert len(pcm) / 2 / rate == pytest.approx(1.2, abs=0.12)
        assert rms(pcm) > 3000
        (record,) = sim.requests_for("tts")
        assert record.json is not None
        assert record.json["stream_format"] == ("audio" if tts_model == "tts-1" else "sse")
        assert record.status == 200

    async def test_seconds_and_frequency(self, sim: GatewaySimulator) -> None:
        sim.tts.script(Speech(seconds=0.5, frequency=1000.0))
        tts = lk_openai.TTS(base_url=sim.base_url, api_key="sk-test", response_format="pcm")
        pcm, rate = await synthesize(tts, "a much longer text that would otherwise last longer")
        await tts.aclose()
        samples = np.frombuffer(pcm, dtype="<i2")
        assert len(samples) / rate == pytest.approx(0.5, abs=0.02)
        crossings = np.count_nonzero(np.diff(np.signbit(samples[: int(0.5 * rate)])))
        assert math.isclose(crossings / 2 / 0.5, 1000.0, rel_tol=0.05)

    async def test_duration_is_bounded(self, sim: GatewaySimulator) -> None:
        tts = lk_openai.TTS(base_url=sim.base_url, api_key="sk-test", response_format="pcm")
        short, rate = await synthesize(tts, "Hi")
        await tts.aclose()
        assert len(short) / 2 / rate == pytest.approx(0.3, abs=0.02)

    async def test_unsupported_format_is_a_400(self, sim: GatewaySimulator) -> None:
        tts = lk_openai.TTS(base_url=sim.base_url, api_key="sk-test", response_format="vorbis")
        with pytest.raises(APIStatusError) as raised:
            await synthesize(tts, "hello")
        await tts.aclose()
        assert raised.value.status_code == 400

    async def test_tts_quota(self, sim: GatewaySimulator) -> None:
        sim.tts.script(QuotaExceeded(category="MaxConcurrentGatewayTTS", quota_type="tts"))
        tts = lk_openai.TTS(base_url=sim.base_url, api_key="sk-test")
        with pytest.raises(APIStatusError) as raised:
            await synthesize(tts, "hello")
        await tts.aclose()
        assert raised.value.status_code == 429
        assert raised.value.body == (
            "TTS concurrency limit exceeded, category: MaxConcurrentGatewayTTS"
        )


def speech(seconds: float = 0.1) -> list[rtc.AudioFrame]:
    samples = int(24_000 * seconds)
    return [
        rtc.AudioFrame(
            data=b"\0\0" * samples, sample_rate=24_000, num_channels=1, samples_per_channel=samples
        )
    ]


class TestTranscriptions:
    """Transcript answers livekit.plugins.openai.STT as OpenAI's transcriptions API does."""

    @pytest.mark.parametrize(
        ("model", "response_format"),
        [("gpt-4o-mini-transcribe", "json"), ("whisper-1", "verbose_json")],
    )
    async def test_recognize(self, sim: GatewaySimulator, model: str, response_format: str) -> None:
        """The plugin gets the text; the multipart form is recorded, the audio by size."""
        sim.stt.script(Transcript("A table for two, please."))
        recognizer = lk_openai.STT(base_url=sim.base_url, api_key="sk-test", model=model)
        event = await recognizer.recognize(speech(0.1), conn_options=FAIL_FAST)
        await recognizer.aclose()
        assert event.type is stt.SpeechEventType.FINAL_TRANSCRIPT
        assert event.alternatives[0].text == "A table for two, please."
        (request,) = sim.requests_for("stt")
        assert request.path == "/v1/audio/transcriptions" and request.status == 200
        assert request.form == {
            "model": model,
            "language": "en",
            "response_format": response_format,
        }
        assert request.files == {"file": 44 + 2 * 2400}  # a 16-bit mono WAV of 0.1 s
        assert request.json is None

    async def test_plain_text_and_unsupported_formats(self, sim: GatewaySimulator) -> None:
        """``text`` is the bare transcript; formats the simulator cannot make get a 400."""
        sim.stt.default = Transcript("Hello.")

        async def post(response_format: str) -> tuple[int, str]:
            form = aiohttp.FormData({"model": "whisper-1", "response_format": response_format})
            form.add_field("file", b"RIFF", filename="a.wav", content_type="audio/wav")
            async with (
                aiohttp.ClientSession() as client,
                client.post(f"{sim.base_url}/audio/transcriptions", data=form) as response,
            ):
                return response.status, await response.text()

        assert await post("text") == (200, "Hello.")
        status, body = await post("srt")
        assert status == 400 and "response_format" in body

    async def test_quota(self, sim: GatewaySimulator) -> None:
        """An STT quota 429 travels the plugin's real path and classifies as such."""
        sim.stt.default = QuotaExceeded(quota_type="stt")
        recognizer = lk_openai.STT(base_url=sim.base_url, api_key="sk-test")
        verdicts: list[Verdict] = []
        recognizer.on(
            "error",
            lambda ev: verdicts.append(classify(ev.error, kind=Kind.STT, label=ev.label)),
        )
        with pytest.raises(APIStatusError):
            await recognizer.recognize(speech(), conn_options=FAIL_FAST)
        await recognizer.aclose()
        (verdict,) = verdicts
        assert (verdict.category, verdict.terminal) == (Category.QUOTA_EXHAUSTED, True)
        assert verdict.quota is not None and verdict.quota.quota_type == "stt"
        assert verdict.model == "livekit.plugins.openai.stt.STT"

    async def test_only_stt_answers(self, sim: GatewaySimulator) -> None:
        """Speech cannot answer a transcription, nor Transcript a completion."""
        with pytest.raises(TypeError):
            sim.stt.script(Speech())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            sim.llm.default = Transcript()  # type: ignore[assignment]


class TestWebsockets:
    """LiveKit Inference's streaming endpoints connect and hear nothing."""

    async def test_accepted_and_silent(self, sim: GatewaySimulator) -> None:
        async with (
            aiohttp.ClientSession() as client,
            client.ws_connect(f"{sim.base_url}/stt") as ws,
        ):
            await ws.send_str('{"type": "session.create"}')
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.2)
        assert [(r.path, r.status) for r in sim.requests] == [("/v1/stt", 101)]


class TestAgentSession:
    """A room-less AgentSession speaks through the simulator into CaptureAudioOutput."""

    async def test_reply_is_spoken_and_session_closes(
        self, sim: GatewaySimulator, model: lk_openai.LLM
    ) -> None:
        tts = lk_openai.TTS(
            base_url=sim.base_url, api_key="sk-test", model="gpt-4o-mini-tts", voice="ash"
        )
        session: AgentSession[None] = AgentSession(
            llm=model, tts=tts, vad=None, turn_handling={"turn_detection": "manual"}
        )
        sink = CaptureAudioOutput()
        session.output.audio = sink
        async with asyncio.timeout(10):
            await session.start(Agent(instructions="be brief"))
            result: RunResult[None] = await session.run(user_input="hello")
            result.expect.next_event().is_message(role="assistant")
            await session.aclose()
        await tts.aclose()  # the session leaves the models it was given open

        spoken = [r.json["input"] for r in sim.requests_for("tts") if r.json is not None]
        assert " ".join(spoken) == "Hello! How can I help?"
        expected = sum(min(max(len(text) * 0.06, 0.3), 8.0) for text in spoken)
        assert sink.duration == pytest.approx(expected, abs=0.1)  # mp3 adds a few ms
        assert rms(sink.pcm()) > 3000
        assert all(segment.finished_at is not None for segment in sink.segments)
        assert not any(segment.interrupted for segment in sink.segments)
