"""Fixtures and the run's shape (scheduling, order); shared helpers are in ``tests/helpers.py``."""

from __future__ import annotations

import gc
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling, Scheduling

if TYPE_CHECKING:
    from agent_guard.testing import GatewaySimulator

# Shared helpers live in tests/helpers.py: this module is imported by pytest-xdist's
# controller as well, which runs no test and should not wait for livekit's imports.


def pytest_configure(config: pytest.Config) -> None:
    # Every openai SDK client (two per session, ~800 in a run) builds an SSL context, and a
    # CA *file* (SSL_CERT_FILE, or OpenSSL's default bundle) is parsed each time: ~45 ms
    # each, a sixth of the suite's CPU. Nothing here speaks TLS (the simulator is plain
    # HTTP on loopback); the system's CA *directory* trusts the same roots and is read
    # lazily, at a handshake. Worker processes the tests start inherit it.
    os.environ.pop("SSL_CERT_FILE", None)
    os.environ["SSL_CERT_DIR"] = ssl.get_default_verify_paths().openssl_capath


#: Tests that share a fixture wider than a test (the Redis server and its worker processes;
#: one worker process logging at two levels): one pytest-xdist worker runs each group.
ONE_WORKER = ("tests/fleet/test_redis.py", "tests/test_log.py::TestLivekitWorker")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """``--dist loadgroup`` (``make unit``): a test is a unit of work, except the groups.

    pytest-xdist's own grouping reads ``xdist_group`` marks through node ids, which pytest
    9.2 no longer lets it change (pytest-dev/pytest-xdist#1386): the groups are named here.
    """
    if config.getvalue("dist") != "loadgroup":
        return None

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((g for g in ONE_WORKER if nodeid.startswith(g + "::")), nodeid)

    return ByGroup(config, log)


#: The slowest tests' modules, longest first: the workers are handed tests in this order, so
#: these start at once and the workers finish together.
SLOW_FIRST = (
    "tests/test_log.py",  # a worker process per log level (class fixture)
    "tests/test_classify_fuzz.py",
    "tests/reliability/test_soak.py",
    "tests/test_examples.py",
    "tests/watchdog/test_stt.py",
    "tests/watchdog/test_llm.py",
    "tests/watchdog/test_exemptions.py",
    "tests/watchdog/test_tts.py",
    "tests/watchdog/test_realtime.py",
    "tests/reliability/test_faults.py",
    "tests/test_failsafe.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: each module's tests keep their order.
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything imported so far (livekit, openai, the provider SDKs, hypothesis) lives
    # until the end: out of the collector's way, a full collection (the leak checks run
    # several) takes a few milliseconds instead of ~0.5 s.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _fresh_fleet() -> Iterator[None]:
    """Every test starts with no fleet breaker: the default ``"memory"`` one is per process."""
    yield
    from agent_guard.fleet import _registry

    _registry.reset()


@pytest.fixture
async def sim() -> AsyncIterator[GatewaySimulator]:
    from agent_guard.testing import GatewaySimulator

    async with GatewaySimulator() as s:
        yield s
