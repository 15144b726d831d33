"""agent_guard_assemblyai: AssemblyAI streaming closes, as livekit-plugins-assemblyai raises."""

from __future__ import annotations

import pytest
from agent_guard_assemblyai import classify as classify_only
from assemblyai_fixtures import FIXTURES, STT_LABEL, Fixture
from livekit.agents import APIStatusError

from agent_guard import Category, Kind, classify
from agent_guard.classifiers import installed_providers
from agent_guard.testing.plugins import assert_fixture_verdict, check_classifier_is_total

IDS = [fx.id for fx in FIXTURES]


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict_by_default(self, fx: Fixture) -> None:
        """Installed, the classifier is found with no configuration (entry point)."""
        assert_fixture_verdict(fx, (), provider="assemblyai")

    def test_discovered(self) -> None:
        """The entry point names the provider as livekit's labels do."""
        assert installed_providers()["assemblyai"] == (classify_only,)

    def test_close_reason_decides_1008(self) -> None:
        """1008 is concurrency or funds or the key: the reason, not the code, decides."""
        by_id = {fx.id: classify(fx.error(), kind=Kind.STT, label=STT_LABEL) for fx in FIXTURES}
        assert by_id["v3_1008_concurrency"].category is Category.RATE_LIMITED
        assert by_id["v3_1008_insufficient_balance"].category is Category.QUOTA_EXHAUSTED


class TestDefers:
    def test_http_status_is_not_a_close_code(self) -> None:
        """A plain HTTP 402 from this label is left to the generic rules."""
        error = APIStatusError("Payment Required", status_code=402)
        assert classify_only_facts(error) is None

    def test_unknown_close_code(self) -> None:
        """An undocumented close code is not claimed."""
        error = APIStatusError("closed", status_code=4999, body="msg.data=4999 msg.extra='x'")
        assert classify_only_facts(error) is None


def classify_only_facts(error: BaseException) -> object:
    from agent_guard.classifiers import facts_from

    return classify_only(facts_from(error, kind=Kind.STT, label=STT_LABEL))


def test_classifier_is_total() -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    check_classifier_is_total(classify_only, kind=Kind.STT, label=STT_LABEL)
