"""The one logger: stdlib by default (livekit's handlers, levels, JSON), never raising."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from livekit.agents import APIStatusError, CloseReason
from livekit.agents.testing import fake_job_context
from structlog.testing import capture_logs

import agent_guard
from agent_guard import GuardPolicy, Kind, classify, guard
from agent_guard._log import LOGGER_NAME, log
from agent_guard.testing import GatewaySimulator, QuotaExceeded, openai_status_error
from tests.helpers import make_session, start, turn

ROOT = Path(__file__).resolve().parents[1]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def unconfigured_structlog() -> Iterator[None]:
    """structlog as in an application that never configured it (livekit workers)."""
    was_configured = structlog.is_configured()
    previous = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    if was_configured:
        structlog.configure(**previous)


@pytest.fixture
def records(unconfigured_structlog: None) -> Iterator[list[logging.LogRecord]]:
    """The records reaching a handler on the ``agent_guard`` logger, at DEBUG."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = _Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


class TestStdlibRoute:
    """Unless the application configured structlog, lines are stdlib records."""

    def test_event_is_the_message_and_fields_are_extras(
        self, records: list[logging.LogRecord]
    ) -> None:
        """JSON formatters (livekit's) render extras as fields; the caller is the line's origin."""
        log.warning("agent_guard.test_event", kind="llm", status_code=429)
        (record,) = records
        assert (record.name, record.levelno, record.getMessage()) == (
            LOGGER_NAME,
            logging.WARNING,
            "agent_guard.test_event",
        )
        assert (record.kind, record.status_code) == ("llm", 429)  # type: ignore[attr-defined]
        assert record.funcName == "test_event_is_the_message_and_fields_are_extras"

    def test_fields_named_like_record_attributes_are_renamed(
        self, records: list[logging.LogRecord]
    ) -> None:
        """A field called ``name`` or ``message`` would make stdlib raise: it gets a ``_``."""
        log.info("agent_guard.test_event", name="x", message="y", args=1)
        (record,) = records
        assert record.name == LOGGER_NAME
        assert (record.name_, record.message_, record.args_) == ("x", "y", 1)  # type: ignore[attr-defined]

    def test_level_is_the_stdlib_level(self, records: list[logging.LogRecord]) -> None:
        """At INFO, debug lines are dropped before any work is done."""
        logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)
        log.debug("agent_guard.presynthesized", chars=3)
        log.info("agent_guard.test_event")
        assert [r.getMessage() for r in records] == ["agent_guard.test_event"]

    def test_is_enabled_follows_the_level(self, records: list[logging.LogRecord]) -> None:
        """What lets log_verdict skip building fields for a line nobody will see."""
        logging.getLogger(LOGGER_NAME).setLevel(logging.WARNING)
        assert (log.is_enabled(logging.INFO), log.is_enabled(logging.WARNING)) == (False, True)

    def test_exception_carries_the_traceback(self, records: list[logging.LogRecord]) -> None:
        """``log.exception`` inside an ``except`` attaches exc_info, at ERROR."""
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("agent_guard.test_event")
        (record,) = records
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None and record.exc_info[0] is ValueError

    async def test_job_fields_inside_a_livekit_job(self, records: list[logging.LogRecord]) -> None:
        """Inside a job: job_id, room_id and room_name, as livekit's own lines carry."""
        with fake_job_context(job_id="job-123"):
            log.info("agent_guard.test_event")
        log.info("agent_guard.test_event")
        inside, outside = records
        assert inside.job_id == "job-123"  # type: ignore[attr-defined]
        assert inside.room_id.startswith("RM_")  # type: ignore[attr-defined]
        assert inside.room_name == "fake-room"  # type: ignore[attr-defined]
        assert not hasattr(outside, "job_id")


class TestStructlogRoute:
    """An application that configured structlog gets the lines through its processors."""

    def test_captured_by_structlog_testing(self, records: list[logging.LogRecord]) -> None:
        """capture_logs() configures structlog: the line is captured, not sent to stdlib."""
        with capture_logs() as logs:
            log.warning("agent_guard.test_event", kind="tts")
        assert logs == [{"event": "agent_guard.test_event", "kind": "tts", "log_level": "warning"}]
        assert records == []


class TestStructlogLevel:
    """A configured structlog's level filter is asked before a line's fields are built."""

    @pytest.fixture
    def at_warning(self) -> Iterator[None]:
        previous = structlog.get_config()
        structlog.configure(
            processors=[structlog.processors.JSONRenderer()],
            logger_factory=structlog.ReturnLoggerFactory(),
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        )
        yield
        structlog.configure(**previous)

    def test_is_enabled_follows_the_filtering_logger(self, at_warning: None) -> None:
        """INFO is off and WARNING on under make_filtering_bound_logger(WARNING)."""
        assert not log.is_enabled(logging.INFO)
        assert log.is_enabled(logging.WARNING)

    async def test_filtered_line_builds_nothing(
        self, at_warning: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A filtered line skips the job fields (a job context lookup per retry)."""
        looked_up: list[MutableMapping[str, Any]] = []
        monkeypatch.setattr("agent_guard._log._add_job_fields", looked_up.append)
        log.info("agent_guard.test_event", kind="llm")
        assert looked_up == []
        log.warning("agent_guard.test_event", kind="llm")
        assert len(looked_up) == 1

    def test_other_wrapper_classes_are_not_second_guessed(self) -> None:
        """A wrapper without is_enabled_for (stdlib's BoundLogger) filters for itself."""
        previous = structlog.get_config()
        structlog.configure(wrapper_class=structlog.stdlib.BoundLogger)
        try:
            assert log.is_enabled(logging.DEBUG)
        finally:
            structlog.configure(**previous)


class _Explodes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("a broken log filter")


def _explodes(logger: Any, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    raise RuntimeError("a broken structlog processor")


class TestNeverRaises:
    """A broken processor, filter or handler can neither raise into the guard nor keep a
    decided session open."""

    def test_raising_filter_is_swallowed(
        self, unconfigured_structlog: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The call returns; the drop is counted."""
        logger = logging.getLogger(LOGGER_NAME)
        broken = _Explodes()
        logger.addFilter(broken)
        before = log.dropped
        try:
            log.error("agent_guard.test_event")
        finally:
            logger.removeFilter(broken)
        assert log.dropped == before + 1

    @pytest.mark.parametrize("route", ["stdlib", "structlog"])
    async def test_decided_session_still_closes(
        self, route: str, sim: GatewaySimulator, unconfigured_structlog: None
    ) -> None:
        """Out of credits with every log line failing: farewell, then an ERROR close."""
        logger = logging.getLogger(LOGGER_NAME)
        broken = _Explodes()
        if route == "stdlib":
            logger.addFilter(broken)
        else:
            structlog.configure(processors=[_explodes])
        before = log.dropped
        try:
            sim.llm.default = QuotaExceeded()
            session = make_session(sim)
            g = guard(session, GuardPolicy(error_message="We are out of minutes today."))
            await start(session)
            await turn(session, "hi")
            async with asyncio.timeout(10):
                ev = await g.wait_closed()
        finally:
            logger.removeFilter(broken)
        assert ev.reason is CloseReason.ERROR
        assert g.farewell is not None and g.farewell.completed
        assert g.farewell.text == "We are out of minutes today."
        assert log.dropped >= before + 2  # error_classified and closing, at least


class TestOperatorFields:
    """What error_classified and closing carry, built by ErrorFacts.verdict()."""

    LABEL = "livekit.plugins.openai.llm.LLM"

    def test_body_message_once_and_request_id_apart(self) -> None:
        """An OpenAI 401: the message once, no status/request id/body repetition."""
        body = {"error": {"message": "Incorrect API key provided: sk-proj-abc123.", "code": "x"}}
        error = openai_status_error(401, json=body, headers={"x-request-id": "req_0123abc"})
        verdict = classify(error, kind=Kind.LLM, label=self.LABEL)
        assert verdict.detail == (
            "APIStatusError: Error code: 401 - Incorrect API key provided: sk-…[redacted]."
        )
        assert (verdict.model, verdict.request_id) == (self.LABEL, "req_0123abc")

    def test_long_detail_is_cut_at_a_word(self) -> None:
        """At most 500 characters, ending on a whole word and an ellipsis."""
        words = " ".join(f"word{i}" for i in range(200))
        verdict = classify(
            APIStatusError(words, status_code=500, request_id="req_1"), kind=Kind.LLM
        )
        assert len(verdict.detail) <= 500 and verdict.detail.endswith("…")
        kept = verdict.detail.removeprefix("APIStatusError: ").removesuffix("…")
        assert words.startswith(kept) and words[len(kept)] == " "

    def test_request_id_from_the_header(self) -> None:
        """No request id on the error: the response header's."""
        error = openai_status_error(500, json={"error": "x"}, headers={"request-id": "abc-123"})
        error.request_id = None
        assert classify(error, kind=Kind.LLM).request_id == "abc-123"

    @pytest.mark.parametrize("value", ["sk-proj-0123456789abcdef", "not an id", "x" * 200])
    def test_implausible_request_ids_are_dropped(self, value: str) -> None:
        """A key-shaped, spaced or unbounded value is not logged as a request id."""
        error = APIStatusError("boom", status_code=500, request_id=value)
        assert classify(error, kind=Kind.LLM).request_id is None


_WORKER_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys, traceback
    from livekit.agents.cli.log import setup_logging
    from agent_guard import GuardPolicy, Kind, classify, guard
    from agent_guard import _audio
    from agent_guard.testing import GatewaySimulator, QuotaExceeded, Reply
    from tests.helpers import make_session, start, turn

    async def main() -> None:
        async with GatewaySimulator() as sim:
            sim.llm.script(Reply("Hi."))
            sim.llm.default = QuotaExceeded()
            session = make_session(sim, max_retry=0)
            g = guard(session, GuardPolicy(presynthesize=True))
            await start(session, realtime=False)
            # Presynthesis logs agent_guard.presynthesized at DEBUG once it is done.
            async with asyncio.timeout(20):
                while not _audio._PRESYNTH:
                    await asyncio.sleep(0.02)
            await turn(session, "hi")
            await turn(session, "book a table")
            async with asyncio.timeout(20):
                await g.wait_closed()

    # One worker process per level, forked once the imports are done (they are most of its
    # cost); each prints to a file of its own.
    out_dir, levels = sys.argv[1], sys.argv[2:]
    for level in levels:
        if (pid := os.fork()) == 0:
            try:
                with open(os.path.join(out_dir, level + ".out"), "w") as out:
                    os.dup2(out.fileno(), sys.stdout.fileno())
                setup_logging(level, devmode=False, console=False)  # what `start` does
                asyncio.run(main())
                sys.stdout.flush()
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        if os.waitpid(pid, 0)[1] != 0:
            sys.exit(f"the {level} worker failed")
    """
)


@pytest.fixture(scope="class")
def worker_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """agent_guard's lines as a livekit worker in `start` mode prints them (JSON), by level."""
    out_dir = tmp_path_factory.mktemp("worker")
    script = out_dir / "worker.py"
    script.write_text(_WORKER_SCRIPT)
    levels = ("INFO", "DEBUG")
    done = subprocess.run(
        [sys.executable, str(script), str(out_dir), *levels],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    by_level: dict[str, list[dict[str, Any]]] = {}
    for level in levels:
        printed = (out_dir / f"{level}.out").read_text().splitlines()
        lines = [json.loads(line) for line in printed if line.startswith("{")]
        by_level[level] = [line for line in lines if line.get("name") == LOGGER_NAME]
    return by_level


class TestLivekitWorker:
    """In a worker configured by livekit's CLI, the lines are livekit's JSON lines."""

    def test_start_mode_at_info(self, worker_lines: dict[str, list[dict[str, Any]]]) -> None:
        """JSON with the operator fields; the terminal close at ERROR; no debug lines."""
        by_event = {line["message"]: line for line in worker_lines["INFO"]}
        assert "agent_guard.presynthesized" not in by_event
        classified = by_event["agent_guard.error_classified"]
        closing = by_event["agent_guard.closing"]
        assert (classified["level"], closing["level"]) == ("WARNING", "ERROR")
        for line in (classified, closing):
            assert line["model"] == "livekit.plugins.openai.llm.LLM"
            assert line["provider"] == "livekit"
            assert re.fullmatch(r"req_sim_\d+", line["request_id"])
            assert line["hint"] == "Wait for the next billing cycle or upgrade your plan."
            assert line["quota"] == {
                "type": "llm",
                "category": "MaxGatewayCredits",
                "credits_limit": 1000,
                "credits_used": 1000,
            }
            # Each piece of provider text once; status and request id have their fields.
            assert line["detail"] == (
                "APIStatusError: Error code: 429: "
                "LLM token credit quota exceeded, category: MaxGatewayCredits"
            )
        assert closing["reason"] == "terminal"

    def test_debug_lines_at_debug(self, worker_lines: dict[str, list[dict[str, Any]]]) -> None:
        """--log-level DEBUG shows them: the level, not the logger, filtered them out."""
        lines = worker_lines["DEBUG"]
        debug = [line for line in lines if line["message"] == "agent_guard.presynthesized"]
        assert debug and debug[0]["level"] == "DEBUG"


def _event_names() -> set[str]:
    """Every ``agent_guard.*`` event name logged by the package (first argument of a call)."""
    names: set[str] = set()
    for path in (ROOT / "agent_guard").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and node.args
                and isinstance(first := node.args[0], ast.Constant)
                and isinstance(first.value, str)
                and re.fullmatch(r"agent_guard\.[a-z_]+", first.value)
            ):
                names.add(first.value)
    return names


class TestReadme:
    """The README's log-event list is complete."""

    def test_every_event_is_listed(self) -> None:
        """Add a new event to the README's Logs section when this fails."""
        readme = (ROOT / "README.md").read_text()
        section = readme[readme.index("### Logs") :]
        section = section[: section.index("\n## ")]
        names = _event_names()
        assert len(names) > 10, names  # the scan itself works
        assert sorted(n for n in names if f"`{n}`" not in section) == []

    def test_public_logger_name(self) -> None:
        """The logger operators configure is named after the import package."""
        assert agent_guard.__name__ == LOGGER_NAME
