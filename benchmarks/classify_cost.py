"""How long one ``classify()`` takes, for the errors a guarded session really sees.

Run from the repository root::

    python -m benchmarks.classify_cost

Each case is classified many times after a warm-up; every call is timed on its own with
``time.perf_counter_ns`` so the table shows the median and the tail (p95), not just a
mean that hides outliers. The errors are built the way production builds them: the
LiveKit gateway 429 and the 401 go through the real OpenAI SDK and livekit's wrapping.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from agent_guard import Kind, classify
from agent_guard.testing import openai_status_error, openai_stream_error

WARMUP = 1_000
ITERATIONS = 20_000
LABEL = "livekit.agents.inference.llm.LLM"


def sdk_error(status: int, body: object, headers: dict[str, str] | None = None) -> BaseException:
    """An HTTP error through the SDK, wrapped as livekit/agents/inference/llm.py ``_run`` does."""
    return openai_status_error(status, json=body, headers=headers)


def mid_stream_error() -> BaseException:
    """An SSE error mid-stream: openai.APIError wrapped in livekit's APIConnectionError."""
    return openai_stream_error({"message": "reset", "code": "server_error"})


CASES: dict[str, Callable[[], BaseException]] = {
    "gateway credits 429 (SDK path)": lambda: sdk_error(
        429,
        {
            "type": "inference_quota_exceeded",
            "error": "LLM token credit quota exceeded, category: MaxGatewayCredits",
            "quota_type": "llm",
            "category": "MaxGatewayCredits",
            "hint": "Wait for the next billing cycle or upgrade your plan.",
            "remaining_limit": "0",
        },
        {"X-LiveKit-Inference-Credits-Limit": "1000", "X-LiveKit-Inference-Credits-Used": "1000"},
    ),
    "401 echoing a key (SDK path)": lambda: sdk_error(
        401,
        {
            "error": {
                "message": "Incorrect API key provided: sk-proj-BENCH0123456789abcdefABCDEF.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    ),
    "mid-stream connection error": mid_stream_error,
    "plain Exception": lambda: Exception("something went wrong"),
}


def measure(error: BaseException) -> list[int]:
    """Nanoseconds per classify() call, one sample per call."""
    for _ in range(WARMUP):
        classify(error, kind=Kind.LLM, label=LABEL)
    samples = []
    for _ in range(ITERATIONS):
        start = time.perf_counter_ns()
        classify(error, kind=Kind.LLM, label=LABEL)
        samples.append(time.perf_counter_ns() - start)
    return samples


def main() -> None:
    """Print a Markdown table of median and p95 microseconds per case."""
    print(f"classify() cost, {ITERATIONS} calls per case after {WARMUP} warm-up calls\n")
    print("| case | verdict | median (µs) | p95 (µs) |")
    print("|---|---|---:|---:|")
    for name, build in CASES.items():
        error = build()
        verdict = classify(error, kind=Kind.LLM, label=LABEL)
        samples = measure(error)
        median = statistics.median(samples) / 1000
        p95 = statistics.quantiles(samples, n=20)[-1] / 1000
        print(f"| {name} | {verdict.category.value} | {median:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
