"""How long one ``classify()`` takes on the errors guarded sessions really see.

Run from the repository root::

    python -m benchmarks.classify_cost [--samples N] [--write]

The realistic mix is twelve errors, each built the way production builds it (the real
OpenAI and Anthropic SDKs over ``httpx`` responses, real aiohttp handshake errors and
websocket messages, wrapped as the livekit plugins wrap them) and labelled as livekit
labels them. Every call is timed on its own (``time.perf_counter_ns``), and the three
contenders are interleaved call by call so that they share the machine's conditions:

* ``classify()``, default chain, every provider plugin of this repository installed;
* ``classify()``, default chain, no provider plugin installed (the core alone);
* ``classify()`` of a retry attempt (``recoverable=True``) of a failure classified
  before: a new exception over the same response, answered from its fingerprint (every
  plugin installed; the verdicts are kept alive, as a guard keeps its recent ones);
* stock livekit's own cost per error event, for scale: ``llm.emit("error", LLMError)``
  on a started, unguarded ``AgentSession`` (what livekit does with a retry attempt).

``--write`` writes the tables to ``benchmarks/results/classify_cost.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import httpx2
from livekit.agents import APIStatusError, APITimeoutError
from livekit.agents._exceptions import create_api_error_from_http
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from agent_guard import Kind, _classify, classify
from agent_guard.classifiers import _providers, installed_providers
from agent_guard.testing import (
    gateway_quota_body,
    openai_status_error,
    openai_stream_error,
    raised,
    ws_handshake_error,
)
from benchmarks import _errors, _overhead
from benchmarks._report import environment, percentile, table, write

WARMUP = 500
SAMPLES = 20_000

GATEWAY_LLM = "livekit.agents.inference.llm.LLM"
GATEWAY_STT = "livekit.agents.inference.stt.STT"
OPENAI_LLM = "livekit.plugins.openai.llm.LLM"
KEY = "sk-proj-BENCH0123456789abcdefABCDEFghijkl"


def _rid() -> str:
    """A request id of its own for each response, as OpenAI, Anthropic and LiveKit
    Inference send (``x-request-id``/``request-id``): no two errors are alike."""
    return f"req_{uuid.uuid4().hex}"


def _anthropic_529() -> BaseException:
    import anthropic  # here: the SDK costs every test worker a second at collection

    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    body["request_id"] = rid = _rid()  # Anthropic's bodies carry it too
    response = httpx2.Response(529, json=body, headers={"request-id": rid}, request=request)
    client = anthropic.AsyncAnthropic(api_key="sk-ant-api03-BENCH", max_retries=0)
    e = client._make_status_error_from_response(response)
    # livekit-plugins-anthropic llm.py: APIStatusError(...) from e.
    lk = APIStatusError(e.message, status_code=e.status_code, request_id=e.request_id, body=e.body)
    return raised(lk, cause=e)


def _ws_close(message: str, code: int, reason: str) -> BaseException:
    msg = aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, code, reason)
    return raised(APIStatusError(message, status_code=code, body=f"{msg.data=} {msg.extra=}"))


def _deepgram_402() -> BaseException:
    url = URL("wss://api.deepgram.com/v1/listen?model=nova-3")
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Token {KEY}"}))
    info = aiohttp.RequestInfo(url, "GET", headers, url)
    handshake = aiohttp.WSServerHandshakeError(
        info,
        (),
        status=402,
        message="Invalid response status",
        headers=CIMultiDictProxy(CIMultiDict({"dg-error": "Insufficient credits"})),
    )
    # livekit-plugins-deepgram stt.py: `from None`, the aiohttp error on __context__.
    lk = create_api_error_from_http(handshake.message, status=handshake.status)
    return raised(lk, cause=handshake, hide_cause=True)


def _timeout() -> BaseException:
    return raised(APITimeoutError(), cause=httpx2.ReadTimeout("read timed out"))


#: (name, kind, label, build): the realistic mix.
MIX: tuple[tuple[str, Kind, str, Callable[[], BaseException]], ...] = (
    (
        "gateway rate limit 429",
        Kind.LLM,
        GATEWAY_LLM,
        lambda: openai_status_error(
            429,
            json=gateway_quota_body("MaxConcurrentGatewayLLMRpm"),
            headers={
                "X-LiveKit-Inference-RPM-Limit": "100",
                "X-LiveKit-Inference-RPM-Used": "100",
                "x-request-id": _rid(),
            },
        ),
    ),
    (
        "gateway credits 429",
        Kind.LLM,
        GATEWAY_LLM,
        lambda: openai_status_error(
            429,
            json=gateway_quota_body(),
            headers={
                "X-LiveKit-Inference-Credits-Limit": "1000",
                "X-LiveKit-Inference-Credits-Used": "1000",
                "x-request-id": _rid(),
            },
        ),
    ),
    (
        "OpenAI rate_limit_exceeded 429",
        Kind.LLM,
        OPENAI_LLM,
        lambda: openai_status_error(
            429,
            json={
                "error": {
                    "message": "Rate limit reached for gpt-4o-mini in organization org-abc on "
                    "requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again "
                    "in 20s.",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            headers={
                "retry-after": "20",
                "x-ratelimit-limit-requests": "3",
                "x-ratelimit-remaining-requests": "0",
                "x-request-id": _rid(),
            },
        ),
    ),
    (
        "OpenAI 401 echoing the key",
        Kind.LLM,
        OPENAI_LLM,
        lambda: openai_status_error(
            401,
            json={
                "error": {
                    "message": f"Incorrect API key provided: {KEY}. You can find your API "
                    "key at https://platform.openai.com/account/api-keys.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            headers={"x-request-id": _rid()},
            retryable=False,
        ),
    ),
    (
        "OpenAI 503 overloaded",
        Kind.LLM,
        OPENAI_LLM,
        lambda: openai_status_error(
            503,
            json={
                "error": {
                    "message": "Our servers are currently overloaded.",
                    "type": "service_unavailable_error",
                    "code": "server_is_overloaded",
                }
            },
            headers={"x-request-id": _rid()},
        ),
    ),
    (
        "mid-stream SSE error",
        Kind.LLM,
        OPENAI_LLM,
        lambda: openai_stream_error({"message": "reset", "code": "server_error"}),
    ),
    ("read timeout", Kind.LLM, OPENAI_LLM, _timeout),
    (
        "gateway STT handshake 429",
        Kind.STT,
        GATEWAY_STT,
        lambda: ws_handshake_error(429, headers={"X-LiveKit-Inference-Credits-Limit": "1000"}),
    ),
    ("Anthropic 529 overloaded", Kind.LLM, "livekit.plugins.anthropic.llm.LLM", _anthropic_529),
    (
        "ElevenLabs TTS close 1008",
        Kind.TTS,
        "livekit.plugins.elevenlabs.tts.TTS",
        lambda: raised(
            APIStatusError("ElevenLabs websocket connection closed unexpectedly", status_code=1008)
        ),
    ),
    ("Deepgram handshake 402", Kind.STT, "livekit.plugins.deepgram.stt.STT", _deepgram_402),
    (
        "AssemblyAI close 1008",
        Kind.STT,
        "livekit.plugins.assemblyai.stt.STT",
        lambda: _ws_close(
            "AssemblyAI connection closed unexpectedly",
            1008,
            "Unauthorized Connection: Too many concurrent sessions",
        ),
    ),
)


def _registry(installed: bool) -> None:
    """Every plugin of this environment installed, or none (the core alone)."""
    chains: Mapping[str, Any] = installed_providers(reload=True) if installed else {}
    _providers._installed = chains
    _providers._every = tuple(c for chain in chains.values() for c in chain)
    # A missing plugin is logged once per process: not what a steady state pays.
    _providers._missing_logged.update(_providers.DISTRIBUTIONS)


_ALL: Mapping[str, Any] = {}


_NONE: Mapping[str, Any] = {}
_EVERY: tuple[Any, ...] = ()


def _registry_fast(installed: bool) -> None:
    # The same registry objects each time, as in production: classify() does not answer
    # a retry attempt from a verdict made under another registry.
    _providers._installed = _ALL if installed else _NONE
    _providers._every = _EVERY if installed else ()


def verdicts(installed: bool) -> list[str]:
    """The category of each case, with or without plugins (the table shows both)."""
    _registry(installed)
    return [
        classify(build(), kind=kind, label=label).category.value for _, kind, label, build in MIX
    ]


async def _stock_calls(n: int) -> tuple[Sequence[Callable[[], object]], Any]:
    client = _overhead.sdk_client("http://127.0.0.1:9/v1")
    probe, session = await _overhead.session_probe(
        "stock", client, _errors.rate_limit_429, guarded=False, n=n
    )
    return probe.calls, session


#: New exceptions per case each contender cycles through (each with its own request id
#: where the provider sends one).
POOL = 8


async def measure(samples: int) -> dict[str, Any]:
    """Interleaved per-call samples (µs) for each case and contender, and stock's."""
    global _ALL, _EVERY
    _ALL = installed_providers(reload=True)
    _EVERY = tuple(c for chain in _ALL.values() for c in chain)
    _providers._missing_logged.update(_providers.DISTRIBUTIONS)
    # Each contender cycles through its own exceptions of each case: classify() remembers
    # its last answer for the very same error (the fleet gate and the guard both classify
    # each event), and consecutive calls on one instance would time that memo instead.
    pools = {
        name: {who: [build() for _ in range(POOL)] for who in ("plugins", "core", "repeat")}
        for name, _, _, build in MIX
    }
    per_round = len(MIX)
    rounds = (samples + per_round - 1) // per_round
    stock_calls, session = await _stock_calls(WARMUP + rounds * per_round)
    clock = time.perf_counter_ns
    times: dict[str, dict[str, list[float]]] = {
        who: {name: [] for name, *_ in MIX} for who in ("plugins", "core", "repeat")
    }
    stock: list[float] = []
    stock_iter = iter(stock_calls)
    gc.collect()
    first_sight = (("plugins", True), ("core", False))
    for i in range(WARMUP // per_round + rounds):
        warm = i < WARMUP // per_round
        for name, kind, label, _ in MIX:
            # Alternate who goes first: the second call of a pair finds warmer caches.
            for who, installed in first_sight if i % 2 else first_sight[::-1]:
                _registry_fast(installed)
                # A failure never seen before: the cache (of failures seen) is emptied.
                _classify._seen.clear()
                error = pools[name][who][i % POOL]
                start = clock()
                classify(error, kind=kind, label=label)
                elapsed = (clock() - start) / 1000
                if not warm:
                    times[who][name].append(elapsed)
            # A repeat: a new exception (and request id) for a failure seen before.
            _registry_fast(True)
            classify(pools[name]["plugins"][i % POOL], kind=kind, label=label)
            error = pools[name]["repeat"][i % POOL]
            start = clock()
            classify(error, kind=kind, label=label)
            elapsed = (clock() - start) / 1000
            if not warm:
                times["repeat"][name].append(elapsed)
            call = next(stock_iter, None)
            if call is not None:
                start = clock()
                call()
                elapsed = (clock() - start) / 1000
                if not warm:
                    stock.append(elapsed)
    await session.aclose()
    _registry(True)
    return {**times, "stock": stock}


def report(results: Mapping[str, Any], samples: int) -> str:
    plugins: dict[str, list[float]] = results["plugins"]
    core: dict[str, list[float]] = results["core"]
    retries: dict[str, list[float]] = results["repeat"]
    stock: list[float] = results["stock"]
    with_plugins, without = verdicts(True), verdicts(False)
    rows: list[tuple[str, ...]] = [
        (
            "case",
            "verdict (plugins / core only)",
            "plugins: median µs",
            "core only: median µs",
            "repeat: median µs",
        )
    ]
    for (name, *_), cat_all, cat_core in zip(MIX, with_plugins, without, strict=True):
        verdict = cat_all if cat_all == cat_core else f"{cat_all} / {cat_core}"
        rows.append(
            (
                name,
                verdict,
                f"{statistics.median(plugins[name]):.1f}",
                f"{statistics.median(core[name]):.1f}",
                f"{statistics.median(retries[name]):.1f}",
            )
        )
    pooled_plugins = [x for xs in plugins.values() for x in xs]
    pooled_core = [x for xs in core.values() for x in xs]
    mix_plugins = statistics.median(pooled_plugins)
    mix_core = statistics.median(pooled_core)
    pooled_retries = [x for xs in retries.values() for x in xs]
    mix_retries = statistics.median(pooled_retries)
    stock_median = statistics.median(stock)
    summary: list[tuple[str, ...]] = [
        ("contender (realistic mix, pooled)", "median µs", "p95 µs", "÷ stock per event"),
        (
            "`classify()`, every plugin installed",
            f"{mix_plugins:.1f}",
            f"{percentile(pooled_plugins, 95):.1f}",
            f"{mix_plugins / stock_median:.2f}",
        ),
        (
            "`classify()`, no plugin (core only)",
            f"{mix_core:.1f}",
            f"{percentile(pooled_core, 95):.1f}",
            f"{mix_core / stock_median:.2f}",
        ),
        (
            "`classify()`, a repeat of a failure seen before (every plugin)",
            f"{mix_retries:.1f}",
            f"{percentile(pooled_retries, 95):.1f}",
            f"{mix_retries / stock_median:.2f}",
        ),
        (
            'stock livekit, `llm.emit("error")` per event',
            f"{stock_median:.1f}",
            f"{percentile(stock, 95):.1f}",
            "1.00",
        ),
    ]
    added = (mix_plugins / mix_core - 1) * 100
    lines = [
        "# classify() cost",
        "",
        environment(repeat=f"{len(pooled_core):,} calls per contender, one run"),
        "",
        f"`python -m benchmarks.classify_cost --samples {samples}`: {len(pooled_core):,} calls "
        f"per contender after {WARMUP} warm-up calls, the contenders interleaved call by call.",
        "",
        table(summary, align_right_from=1),
        "",
        f"Installing every plugin adds **{added:+.1f}%** to the mix's median (target ≤ 10%): "
        "the provider is read from the model label, so only that provider's classifier runs.",
        "",
        table(rows, align_right_from=2),
        "",
        "Cases whose verdict differs without plugins are exactly the ones a plugin exists for.",
        "",
        "Every error is a new exception, and the gateway, OpenAI and Anthropic ones carry a "
        "request id of their own (as those providers send one per request), also quoted in "
        "livekit's `str()` and Anthropic's body. The first two contenders classify a failure "
        "never seen before (the cache of failures seen is emptied before each call): the "
        "fingerprint, then the full classification. *A repeat*: the same failure again (the "
        "next retry attempt, the next turn, another session), answered from the fingerprint "
        "of what classification reads (`agent_guard._fingerprint`), the request id and detail "
        "made for this error.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES, help="calls per contender")
    parser.add_argument(
        "--write", action="store_true", help="write benchmarks/results/classify_cost.md"
    )
    args = parser.parse_args()
    results = asyncio.run(measure(args.samples))
    text = report(results, args.samples)
    print(text)
    if args.write:
        write("classify_cost.md", text)


if __name__ == "__main__":
    main()
