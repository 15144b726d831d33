"""Speed work must not change a single verdict: every field, for a broad case set.

``tests/verdict_snapshot.json`` holds ``Verdict.as_dict()`` (category, flags, provider,
hint, quota, the redacted detail) for every case of ``docs/verdicts.md``, the benchmark's
realistic mix, and error messages carrying each redaction hole, as classified before
the cost work of issue 14. Regenerate only for an intended change of verdicts::

    .venv/bin/python -m tests.test_verdict_snapshot
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_guard import Kind, classify
from agent_guard.testing import openai_status_error
from benchmarks.classify_cost import MIX
from docs import verdict_table
from tests.redaction_holes import HOLES

SNAPSHOT = Path(__file__).with_name("verdict_snapshot.json")
OPENAI = "livekit.plugins.openai.llm.LLM"


def cases() -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    """(case id, a function classifying it afresh) for every case of the set."""

    def run(
        build: Callable[[], BaseException], kind: Kind, label: str | None
    ) -> Callable[[], dict[str, Any]]:
        def classified() -> dict[str, Any]:
            return classify(build(), kind=kind, label=label).as_dict()

        return classified

    for provider, case, _, kind, label, build in verdict_table._core_cases():
        yield f"core/{provider}/{case}", run(build, kind, label)
    for fx in verdict_table._openai_fixtures():
        yield f"openai/{fx.id}", run(fx.error, fx.kind, fx.label)
    for provider in verdict_table.PLUGINS:
        for fx in verdict_table._plugin_fixtures(provider):
            yield f"{provider}/{fx.id}", run(fx.error, fx.kind, fx.label)
    for name, kind, label, build in MIX:
        yield f"mix/{name}", per_request(run(build, kind, label))
    for name, (_, text) in HOLES.items():
        yield f"hole/{name}", run(_hole(text), Kind.LLM, OPENAI)


# The benchmark's errors carry a request id of their own per response, as providers send.
_PER_REQUEST = re.compile(r"req_[0-9a-f]{32}")


def per_request(classified: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """``classified``, with a request id new with each request replaced by its shape."""

    def normalised() -> dict[str, Any]:
        verdict = classified()
        if _PER_REQUEST.fullmatch(verdict.get("request_id") or ""):
            verdict["request_id"] = "req_<32 hex digits, new with each request>"
        return verdict

    return normalised


def _hole(text: str) -> Callable[[], BaseException]:
    body = {"error": {"message": text, "type": "invalid_request_error", "code": None}}

    def build() -> BaseException:
        return openai_status_error(401, json=body)

    return build


CASES = dict(cases())


@pytest.fixture(scope="module")
def snapshot() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SNAPSHOT.read_text())
    return loaded


def test_the_case_set_is_complete(snapshot: dict[str, Any]) -> None:
    """No case was added or dropped without regenerating the snapshot."""
    assert sorted(snapshot) == sorted(CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_verdict_unchanged(case: str, snapshot: dict[str, Any]) -> None:
    """Every field of the verdict is what it was."""
    assert json.loads(json.dumps(CASES[case]())) == snapshot[case]


if __name__ == "__main__":
    SNAPSHOT.write_text(
        json.dumps({case: build() for case, build in CASES.items()}, indent=1, sort_keys=True)
        + "\n"
    )
