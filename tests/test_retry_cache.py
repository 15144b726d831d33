"""classify() answers a repeat of a failure from the verdict it made for the first one.

livekit reports each retry attempt with a new exception over an identical response (but
a new request id): the repeat is answered from a fingerprint of what classification reads
(``agent_guard._fingerprint``). These tests hold the cache to answering exactly what a full
classification would (request id and detail included), never for a different failure, and
to keeping no provider text and no error alive.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from agent_guard import Kind, Verdict, classify
from agent_guard import _classify as classify_module
from agent_guard._facts import facts_from
from agent_guard._fingerprint import READ_HEADERS, READ_PREFIX, fingerprint
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, _providers
from agent_guard.testing import gateway_quota_body, openai_status_error
from benchmarks.classify_cost import MIX
from docs import verdict_table
from tests.redaction_holes import HOLES
from tests.test_verdict_snapshot import OPENAI, SNAPSHOT, _hole, per_request

GATEWAY = "livekit.agents.inference.llm.LLM"
SECRET = "sk-proj-RETRYcache0123456789abcdefABCDEF"


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    classify_module._seen.clear()
    classify_module._misses.clear()
    classify_module._last = None
    yield
    classify_module._seen.clear()
    classify_module._misses.clear()


@pytest.fixture
def full_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the classifications that ran in full (recovered the facts)."""
    runs: list[int] = []
    real = facts_from

    def counting(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(classify_module, "facts_from", counting)
    return runs


def rate_limit(**headers: str) -> Exception:
    return openai_status_error(
        429,
        json=gateway_quota_body("MaxConcurrentGatewayLLMRpm", error="rate limit exceeded"),
        headers=headers,
    )


def retry(error: BaseException, *, label: str | None = GATEWAY, **kwargs: Any) -> Verdict:
    return classify(
        error, kind=kwargs.pop("kind", Kind.LLM), label=label, recoverable=True, **kwargs
    )


class TestHits:
    def test_a_second_attempt_is_answered_without_classifying(self, full_runs: list[int]) -> None:
        first = retry(rate_limit())
        second = retry(rate_limit())  # a new exception, the same response
        assert second == first and second is not first
        assert len(full_runs) == 1

    def test_a_new_request_id_is_answered_with_its_own_id(self, full_runs: list[int]) -> None:
        ids = [_long_id(i) for i in range(3)]
        verdicts = [retry(rate_limit(**{"x-request-id": rid})) for rid in ids]
        assert len(full_runs) == 1
        assert [v.request_id for v in verdicts] == ids
        assert verdicts[1].replace(request_id=ids[0]) == verdicts[0]

    def test_an_id_quoted_in_the_body_and_message_is_this_errors(
        self, full_runs: list[int]
    ) -> None:
        # Anthropic's error bodies carry the request id, and the SDK's message quotes the body.
        def attempt(n: int) -> Exception:
            body = {
                "type": "error",
                "error": {"type": "api_error", "message": f"Internal error ({_long_id(n)})"},
                "request_id": _long_id(n),
            }
            return openai_status_error(500, json=body, headers={"x-request-id": _long_id(n)})

        retry(attempt(1), label=OPENAI)
        answered = retry(attempt(2), label=OPENAI)
        assert len(full_runs) == 1
        classify_module._seen.clear()
        full = retry(attempt(2), label=OPENAI)
        assert len(full_runs) == 2
        assert answered == full  # the detail quotes this attempt's id, as a full run's does

    def test_final_attempts_are_remembered_too(self, full_runs: list[int]) -> None:
        finals = [classify(rate_limit(), kind=Kind.LLM, label=GATEWAY) for _ in range(2)]
        assert len(full_runs) == 1
        assert finals[0] == finals[1] and finals[1].recoverable is False

    def test_the_final_attempt_is_classified_anew(self, full_runs: list[int]) -> None:
        retry(rate_limit())
        final = classify(rate_limit(), kind=Kind.LLM, label=GATEWAY, recoverable=False)
        assert len(full_runs) == 2
        assert final.recoverable is False

    def test_every_snapshot_case_keeps_its_verdict_when_remembered(self) -> None:
        """The second attempt of each case is the cached verdict: it must be the snapshot's."""
        snapshot = json.loads(SNAPSHOT.read_text())
        for case_id, build, kind, label in _cases():
            attempt = functools.partial(_attempt, build, kind, label)
            first, second = per_request(attempt)(), per_request(attempt)()
            expected = dict(snapshot[case_id], recoverable=True)
            assert first == expected, case_id
            assert second == expected, case_id


def _attempt(build: Callable[[], BaseException], kind: Kind, label: str | None) -> dict[str, Any]:
    return classify(build(), kind=kind, label=label, recoverable=True).as_dict()


def _long_id(n: int) -> str:
    # The shape of OpenAI's ids: "req_" and 32 hex digits.
    return f"req_{n:032x}"


def _cases() -> Iterator[tuple[str, Callable[[], BaseException], Kind, str | None]]:
    for provider, case, _, kind, label, build in verdict_table._core_cases():
        yield f"core/{provider}/{case}", build, kind, label
    for fx in verdict_table._openai_fixtures():
        yield f"openai/{fx.id}", fx.error, fx.kind, fx.label
    for provider in verdict_table.PLUGINS:
        for fx in verdict_table._plugin_fixtures(provider):
            yield f"{provider}/{fx.id}", fx.error, fx.kind, fx.label
    for name, kind, label, build in MIX:
        yield f"mix/{name}", build, kind, label
    for name in HOLES:
        yield f"hole/{name}", _hole(HOLES[name][1]), Kind.LLM, OPENAI


class TestNeverAnotherFailure:
    """Each pair differs in one fact only: the cache must not answer for the second."""

    def test_another_body(self) -> None:
        rpm = retry(openai_status_error(429, json=gateway_quota_body("MaxConcurrentGatewayLLMRpm")))
        credits = retry(openai_status_error(429, json=gateway_quota_body("MaxGatewayCredits")))
        assert (rpm.category.value, credits.category.value) == ("rate_limited", "quota_exhausted")

    def test_another_status(self) -> None:
        body = {"error": {"message": "try later", "type": "server_error"}}
        overloaded = retry(openai_status_error(503, json=body), label=OPENAI)
        server = retry(openai_status_error(500, json=body), label=OPENAI)
        assert (overloaded.status_code, server.status_code) == (503, 500)
        assert overloaded.category != server.category

    def test_another_header(self) -> None:
        soon = retry(rate_limit(**{"retry-after": "20"}))
        tomorrow = retry(rate_limit(**{"retry-after": "86400"}))
        assert (soon.category.value, tomorrow.category.value) == ("rate_limited", "quota_exhausted")

    def test_another_short_request_id(self, full_runs: list[int]) -> None:
        # Too short to tell from provider text: kept in the digest, so classified anew.
        one = retry(rate_limit(**{"x-request-id": "req_one"}))
        two = retry(rate_limit(**{"x-request-id": "req_two"}))
        assert (one.request_id, two.request_id) == ("req_one", "req_two")
        assert len(full_runs) == 2

    def test_another_text_around_the_same_request_id(self) -> None:
        rid = _long_id(7)
        rpm = retry(rate_limit(**{"x-request-id": rid}))
        body = gateway_quota_body("MaxGatewayCredits", error=f"credits gone ({rid})")
        credits = retry(openai_status_error(429, json=body, headers={"x-request-id": rid}))
        assert (rpm.category.value, credits.category.value) == ("rate_limited", "quota_exhausted")

    def test_another_model_or_kind(self) -> None:
        gateway = retry(rate_limit())
        openai = retry(rate_limit(), label=OPENAI)
        tts = retry(rate_limit(), kind=Kind.TTS)
        assert gateway.model == GATEWAY and openai.model == OPENAI
        assert tts.kind is Kind.TTS and gateway.kind is Kind.LLM

    def test_another_retry_horizon(self) -> None:
        waits = retry(rate_limit(**{"retry-after": "120"}), retry_horizon=300.0)
        gives_up = retry(rate_limit(**{"retry-after": "120"}), retry_horizon=60.0)
        assert (waits.terminal, gives_up.terminal) == (False, True)

    def test_another_exception_type(self) -> None:
        from livekit.agents import APIStatusError

        body = "upstream said no"
        sdk = retry(APIStatusError("no", status_code=400, body=body))

        class Custom(APIStatusError):
            pass

        custom = retry(Custom("no", status_code=400, body=body))
        assert custom is not sdk
        assert custom.detail.startswith("Custom:")


class TestOnlyWhereSafe:
    def test_a_custom_chain_is_classified_every_time(self, full_runs: list[int]) -> None:
        def mine(facts: Any) -> None:
            return None

        for _ in range(2):
            retry(rate_limit(), classifiers=(mine, *DEFAULT_CLASSIFIERS))
        assert len(full_runs) == 2

    def test_a_third_party_provider_classifier_is_classified_every_time(
        self, full_runs: list[int], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def theirs(facts: Any) -> None:  # may read any attribute of the error
            return None

        installed = dict(_providers.installed_providers())
        installed["openai"] = (theirs,)
        monkeypatch.setattr(_providers, "_installed", installed)
        for _ in range(2):
            retry(rate_limit(), label=OPENAI)
        assert len(full_runs) == 2
        assert not _providers.first_party("openai")

    def test_a_reloaded_registry_is_not_answered_from_the_old_one(
        self, full_runs: list[int], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        retry(rate_limit())
        monkeypatch.setattr(_providers, "_installed", dict(_providers.installed_providers()))
        retry(rate_limit())
        assert len(full_runs) == 2

    def test_a_retry_after_date_is_read_against_the_clock_every_time(
        self, full_runs: list[int]
    ) -> None:
        for _ in range(2):
            retry(rate_limit(**{"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"}))
        assert len(full_runs) == 2

    def test_a_failing_classifier_is_logged_every_time(
        self, full_runs: list[int], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(facts: Any) -> None:
            raise RuntimeError("bug")

        installed = dict(_providers.installed_providers())
        installed["anthropic"] = (broken,)
        monkeypatch.setattr(_providers, "_installed", installed)
        monkeypatch.setattr(_providers, "_is_own", lambda classifier: True)
        label = "livekit.plugins.anthropic.llm.LLM"
        for _ in range(2):
            retry(rate_limit(), label=label)
        assert len(full_runs) == 2

    def test_what_it_cannot_read_is_not_fingerprinted(self) -> None:
        error = rate_limit()
        error.body = object()  # type: ignore[attr-defined]  # an object it cannot read
        assert fingerprint(error) is None
        assert fingerprint(ExceptionGroup("g", [rate_limit()])) is None

    def test_bytes_like_bodies_are_not_taken_for_bytes(self) -> None:
        # marshal writes a memoryview or bytearray as it writes bytes; facts_from does not
        # read them alike (a memoryview body is no body).
        from livekit.agents import APIStatusError

        as_bytes = APIStatusError("no", status_code=400, body=b'{"error": "quota"}')
        as_view = APIStatusError("no", status_code=400, body=memoryview(b'{"error": "quota"}'))
        assert fingerprint(as_bytes) is not None
        assert fingerprint(as_view) is None

    def test_what_livekits_str_shows_is_in_the_digest(self) -> None:
        # str() of livekit's APIStatusError is not built for the digest: what it shows is.
        from livekit.agents import APIStatusError

        def printed(error: BaseException) -> Any:
            found = fingerprint(error)
            assert found is not None
            return found

        retried = printed(APIStatusError("no", status_code=503, body="x", retryable=True))
        final = printed(APIStatusError("no", status_code=503, body="x", retryable=False))
        assert retried.digest != final.digest and retried.message is None

        class Told(APIStatusError):
            def __str__(self) -> str:
                return "told " + self.message

        assert printed(Told("no", status_code=503, body="x")).message == "told no"

    def test_a_long_request_id_is_masked_a_short_one_kept(self) -> None:
        def digest(rid: str) -> tuple[int, int]:
            printed = fingerprint(rate_limit(**{"x-request-id": rid}))
            assert printed is not None and printed.request_id == rid
            return printed.digest

        assert digest(_long_id(1)) == digest(_long_id(2))
        assert digest("req_1") != digest("req_2")

    def test_headers_it_cannot_read_as_facts_from_does_are_not_fingerprinted(self) -> None:
        many = {f"x-filler-{i}": "1" for i in range(70)}
        assert fingerprint(rate_limit(**many)) is None  # facts_from reads the first 64
        assert fingerprint(rate_limit(**{"x-filler": "1"})) is not None

    def test_the_request_id_is_the_one_a_full_classification_finds(self) -> None:
        # livekit's request_id, the SDK's, then the header: as facts_from reads them.
        for headers in ({"x-request-id": _long_id(1)}, {"request-id": _long_id(2)}, {}):
            error = rate_limit(**headers)
            printed = fingerprint(error)
            classify_module._seen.clear()
            full = classify(error, kind=Kind.LLM, label=GATEWAY)
            assert printed is not None and printed.request_id == full.request_id


class TestFailuresThatNeverRepeat:
    """A provider whose errors are all different must not pay for a fingerprint each."""

    @pytest.fixture
    def printed(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        calls: list[int] = []
        real = fingerprint

        def counting(error: BaseException) -> Any:
            calls.append(1)
            return real(error)

        monkeypatch.setattr(classify_module, "fingerprint", counting)
        return calls

    def test_past_a_run_of_misses_only_some_are_fingerprinted(self, printed: list[int]) -> None:
        give_up = classify_module._GIVE_UP
        for i in range(give_up + 4 * give_up):
            retry(openai_status_error(429, json=gateway_quota_body(f"Countdown{i}")))
        assert len(printed) == give_up + 4

    def test_a_repeat_found_again_fingerprints_every_error(self, printed: list[int]) -> None:
        give_up = classify_module._GIVE_UP
        for i in range(2 * give_up):  # misses: the first give_up and the next one printed
            retry(openai_status_error(429, json=gateway_quota_body(f"Countdown{i}")))
        assert len(printed) == give_up + 1
        # The next one is fingerprinted: a repeat of the last one remembered, then each is.
        again = gateway_quota_body(f"Countdown{give_up}")
        retry(openai_status_error(429, json=again))
        assert classify_module._misses[GATEWAY] == 0
        retry(openai_status_error(429, json=gateway_quota_body("Another")))
        assert len(printed) == give_up + 3


class _Reads(Mapping[str, str]):
    """Headers that note every name read (iterating them reads them all)."""

    def __init__(self, headers: Mapping[str, str], read: set[str]) -> None:
        self._headers, self._read = headers, read

    def __getitem__(self, name: str) -> str:
        self._read.add(name)
        return self._headers[name]

    def __contains__(self, name: object) -> bool:
        self._read.add(str(name))
        return name in self._headers

    def __iter__(self) -> Iterator[str]:
        self._read.add("*every header*")
        return iter(self._headers)

    def __len__(self) -> int:
        return len(self._headers)


def test_classification_reads_only_the_headers_the_fingerprint_digests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every first-party classifier, over the whole verdict corpus: a header read that the
    digest leaves out would let one failure be answered with another's verdict."""
    read: set[str] = set()
    real = facts_from

    def recording(*args: Any, **kwargs: Any) -> Any:
        facts = real(*args, **kwargs)
        return dataclasses.replace(facts, headers=_Reads(facts.headers, read))

    monkeypatch.setattr(classify_module, "facts_from", recording)
    for _, build, kind, label in _cases():
        for recoverable in (True, False):
            classify_module._seen.clear()
            classify(build(), kind=kind, label=label, recoverable=recoverable)
    unread = {
        name for name in read if name not in READ_HEADERS and not name.startswith(READ_PREFIX)
    }
    assert read and not unread


class TestKeepsNothing:
    def test_no_provider_text_and_no_error_is_kept(self) -> None:
        body = {"error": {"message": f"Incorrect API key provided: {SECRET}.", "code": "x"}}
        error = openai_status_error(401, json=body)
        error_ref = weakref.ref(error)
        verdict = retry(error, label=OPENAI)
        assert SECRET not in verdict.detail and "Incorrect API key" in verdict.detail
        verdict_ref = weakref.ref(verdict)
        assert len(classify_module._seen) == 1
        assert SECRET not in repr(list(classify_module._seen.items()))
        (digest, *_), (_, _, held) = next(iter(classify_module._seen.items()))
        assert type(digest) is tuple and all(type(n) is int for n in digest)
        assert (held.detail, held.request_id) == ("", None)  # a template: no provider text
        del error, verdict
        classify_module._last = None
        gc.collect()
        assert error_ref() is None and verdict_ref() is None

    def test_bounded(self) -> None:
        keep = []
        for i in range(classify_module._SEEN_SIZE + 50):
            classify_module._misses.clear()  # each one fingerprinted
            keep.append(retry(openai_status_error(429, json=gateway_quota_body(f"Category{i}"))))
        assert len(keep) > len(classify_module._seen) == classify_module._SEEN_SIZE


def _anthropic_id(n: int) -> str:
    # The shape of Anthropic's request ids, which redaction keeps (a hex id it redacts).
    return f"req_011CSHoEeqs5C35K2UU{n:07d}"


def rid_cut_short(hint: str | None) -> bool:
    return hint is not None and hint.endswith("\u2026") and "SHoEeqs5C35K2UU" not in hint


class TestWhatOnlyThisErrorSays:
    """A repeat shares the digest but for its request id: nothing else it is answered
    with may carry the first error's id."""

    def test_a_hint_quoting_the_request_id_is_this_errors(self, full_runs: list[int]) -> None:
        # A body field the classifier copies (the gateway's hint, its remaining_limit)
        # quoting the request id: the template would hand the first id to every repeat.
        def attempt(n: int) -> Exception:
            rid = _anthropic_id(n)
            body = gateway_quota_body(
                "MaxGatewayCredits",
                hint=f"Quote request {rid} to support.",
                remaining_limit=f"0 ({rid})",
            )
            return openai_status_error(429, json=body, headers={"x-request-id": rid})

        retry(attempt(1))
        answered = retry(attempt(2))
        classify_module._seen.clear()
        full = retry(attempt(2))
        assert _anthropic_id(2) in (full.hint or "")
        assert answered.as_dict() == full.as_dict()

    def test_a_hint_quoting_the_start_of_the_request_id_is_this_errors(self) -> None:
        # The hint cut short (sanitize_hint bounds it) in the middle of the id.
        def attempt(n: int) -> Exception:
            rid = f"req_011C{n:07d}SHoEeqs5C35K2UU"
            body = gateway_quota_body("MaxGatewayCredits", hint=f"{'x' * 180} {rid}")
            return openai_status_error(429, json=body, headers={"x-request-id": rid})

        retry(attempt(1))
        answered = retry(attempt(2))
        classify_module._seen.clear()
        full = retry(attempt(2))
        assert "req_011C0000002" in (full.hint or "") and rid_cut_short(full.hint)
        assert answered.as_dict() == full.as_dict()


@pytest.mark.xfail(
    strict=True,
    reason="marshal writes a nested bytearray (any buffer) as bytes; the Google classifier "
    "reads quotaId with str(), which tells them apart (not fixed: JSON bodies never hold "
    "either)",
)
def test_a_nested_bytes_like_value_is_not_taken_for_bytes() -> None:
    from livekit.agents import APIStatusError

    label = "livekit.plugins.google.llm.LLM"

    def attempt(quota_id: object) -> dict[str, Any]:
        violation = {"quotaId": quota_id}
        details = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}
        ]
        body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}}
        error = APIStatusError("quota", status_code=429, body=body)
        return classify(error, kind=Kind.LLM, label=label, recoverable=True).as_dict()

    attempt(b"GenerateRequestsPerDay")
    answered = attempt(bytearray(b"GenerateRequestsPerDay"))
    classify_module._seen.clear()
    assert answered == attempt(bytearray(b"GenerateRequestsPerDay"))
