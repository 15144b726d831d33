"""Verdict.detail is redacted when first read: no way of reading a Verdict sees it raw."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent_guard import Category, Kind, Verdict, classify
from agent_guard._verdict import _DETAIL_SLOT, _Pending, pending_detail
from agent_guard.instrumentation import log_verdict
from agent_guard.testing import openai_status_error

SECRET = "sk-proj-TESTSECRET0123456789abcdefABCDEF"
LABEL = "livekit.plugins.openai.llm.LLM"


def echoing_401() -> Verdict:
    """A fresh verdict of an OpenAI 401 that echoes the key, its detail not read yet."""
    body = {"error": {"message": f"Incorrect API key provided: {SECRET}.", "code": "x"}}
    verdict = classify(openai_status_error(401, json=body), kind=Kind.LLM, label=LABEL)
    assert type(_DETAIL_SLOT.__get__(verdict, Verdict)) is _Pending  # the mechanism is on
    return verdict


READS: dict[str, Callable[[Verdict], object]] = {
    "attribute": lambda v: v.detail,
    "repr": repr,
    "str": str,
    "as_dict": lambda v: json.dumps(v.as_dict()),
    "asdict": dataclasses.asdict,
    "astuple": dataclasses.astuple,
    "pickle": lambda v: pickle.dumps(v),
    "unpickled": lambda v: repr(pickle.loads(pickle.dumps(v))),
    "copy": lambda v: repr(copy.copy(v)),
    "deepcopy": lambda v: repr(copy.deepcopy(v)),
    "replace": lambda v: repr(v.replace(hint="h")),
    "dataclasses.replace": lambda v: repr(dataclasses.replace(v, hint="h")),
    "getstate": lambda v: v.__getstate__(),
    "match": lambda v: [v.detail for _ in [0] if isinstance(v, Verdict)],
}


class TestLazyDetail:
    """The detail is redacted on first read, whatever reads it."""

    @pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
    def test_no_read_exposes_the_secret(self, read: Callable[[Verdict], object]) -> None:
        """Every way of reading a Verdict sees the redacted detail."""
        verdict = echoing_401()
        seen = read(verdict)
        text = seen.decode("latin-1") if isinstance(seen, bytes) else repr(seen)
        assert "TESTSECRET" not in text
        assert "sk-…[redacted]" in verdict.detail

    def test_equality_and_hash_compare_redacted_text(self) -> None:
        """Two verdicts of the same error are equal and hash alike, read or not."""
        a, b = echoing_401(), echoing_401()
        assert hash(a) == hash(b)
        assert a == b
        assert type(_DETAIL_SLOT.__get__(a, Verdict)) is str  # comparing read it

    def test_logged_line_is_redacted(self) -> None:
        """The verdict's log line carries the redacted detail."""
        with capture_logs() as lines:
            log_verdict(echoing_401())
        assert lines
        assert "TESTSECRET" not in repr(lines)
        assert "sk-…[redacted]" in lines[0]["detail"]

    def test_replace_shares_one_redaction(self) -> None:
        """A copy made before the read shares the pending detail: redacted once for both."""
        calls: list[str] = []

        def finish(text: str) -> str:
            calls.append(text)
            return "clean"

        verdict = Verdict(
            kind=Kind.LLM,
            category=Category.UNKNOWN,
            terminal=False,
            counts=True,
            detail=pending_detail("raw", finish),
        )
        other = verdict.replace(hint="h")
        assert (verdict.detail, other.detail, verdict.detail) == ("clean", "clean", "clean")
        assert calls == ["raw"]

    def test_failing_redaction_gives_nothing_raw(self) -> None:
        """A redaction that raises leaves an empty detail, never the raw text."""

        def finish(text: str) -> str:
            raise RuntimeError(text)

        verdict = Verdict(
            kind=Kind.LLM,
            category=Category.UNKNOWN,
            terminal=False,
            counts=True,
            detail=pending_detail(f"key {SECRET}", finish),
        )
        assert verdict.detail == ""
        assert "TESTSECRET" not in repr(verdict)

    def test_long_detail_cut_as_before(self) -> None:
        """The pending text is cut to what redact() looks at: the result is unchanged."""
        from agent_guard._facts import _finish_detail

        long = "APIStatusError: " + "word " * 2000 + SECRET
        verdict = Verdict(
            kind=Kind.LLM,
            category=Category.UNKNOWN,
            terminal=False,
            counts=True,
            detail=pending_detail(long[:4001], _finish_detail),
        )
        assert verdict.detail == _finish_detail(long)

    @pytest.mark.parametrize("bad", [1, None, b"x"], ids=["int", "None", "bytes"])
    def test_detail_must_be_text(self, bad: Any) -> None:
        """A hook's non-str detail is still rejected at construction."""
        with pytest.raises(TypeError, match="detail"):
            Verdict(
                kind=Kind.LLM, category=Category.UNKNOWN, terminal=False, counts=True, detail=bad
            )
