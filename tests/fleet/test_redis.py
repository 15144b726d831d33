"""The fleet across processes: worker processes sharing one simulator and a real Redis.

Each worker (``tests/fleet/worker.py``) is a separate Python process running guarded
sessions with the real openai plugin against the simulator this test process serves;
their only link is the redis-server started here. Request counts come from the
simulator's log. Each test uses its own API keys, so tests do not see each other's
accounts.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from agent_guard import Category, Kind, Verdict
from agent_guard.fleet import FleetBreaker, RedisStore, account
from agent_guard.testing import GatewaySimulator, QuotaExceeded, Reply
from tests.fleet import worker
from tests.fleet._redis_server import RedisServer

QUOTA = QuotaExceeded(category="MaxGatewayCredits")
DEPLOYMENT_KEY = "test-deployment-key"
# A refused session's first farewell frame, at most, in seconds (see its test).
REFUSAL_BOUND = 0.5


# Workers are forked from one server process that imported tests.fleet.worker (livekit,
# the openai plugin, the guard) once, instead of three interpreters importing it each.
_PROCESSES = multiprocessing.get_context("forkserver")
_PROCESSES.set_forkserver_preload(["tests.fleet.worker"])


class Worker:
    def __init__(self, url: str) -> None:
        self.conn, theirs = _PROCESSES.Pipe()
        self.proc = _PROCESSES.Process(
            target=worker.serve, args=(url, theirs, DEPLOYMENT_KEY), daemon=True
        )
        self.proc.start()
        theirs.close()

    def ready(self) -> None:
        assert self.conn.poll(60), "the worker did not start"
        assert self.conn.recv() == {"ready": True}

    async def call(self, **cmd: Any) -> dict[str, Any]:
        self.conn.send(cmd)
        answer: dict[str, Any] = await asyncio.to_thread(self.conn.recv)
        assert "error" not in answer, answer
        return answer

    async def session(
        self, sim: GatewaySimulator, key: str, cooldown: float = 30.0
    ) -> dict[str, Any]:
        return await self.call(cmd="session", base_url=sim.base_url, key=key, cooldown=cooldown)

    def stop(self) -> None:
        self.conn.close()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def workers(redis_server: RedisServer) -> Iterator[list[Worker]]:
    started = [Worker(redis_server.url) for _ in range(3)]
    try:
        for w in started:
            w.ready()
        yield started
    finally:
        for w in started:
            w.stop()


def billed(sim: GatewaySimulator, since: int = 0) -> list[str]:
    """Billed requests since ``since``: chat completions, not the farewell's speech (the
    gateway's ``quota_type`` says only the LLM quota ran out, so TTS still serves)."""
    return [r.endpoint for r in sim.requests[since:] if r.endpoint == "llm"]


async def until(check: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def account_id(sim: GatewaySimulator, key: str) -> str:
    """The id the workers' breakers give ``key`` at the simulator (same deployment key)."""
    provider = sim.base_url.split("//", 1)[1].split("/", 1)[0]
    return account(provider, sim.base_url, key, key=DEPLOYMENT_KEY.encode()).id


async def all_see(
    workers: list[Worker],
    sim: GatewaySimulator,
    key: str,
    *,
    opened: bool,
    since: float | None = None,
) -> None:
    """Until every worker has ``key``'s account open (cooling down) or not.

    ``since``: open means an opening whose cool-down ends after ``since`` (an opening made
    since then), whether or not it has ended by now: a sub-second cool-down may be over
    before a loaded machine has asked every worker.
    """
    prefix = account_id(sim, key)

    async def check() -> bool:
        states = [await w.call(cmd="state") for w in workers]
        after = time.time() if since is None else since
        return all(
            any(k.startswith(prefix) and u > after for k, u in s["open"].items()) is opened
            for s in states
        )

    await until(check)


async def test_breaker_opens_across_processes(workers: list[Worker], sim: GatewaySimulator) -> None:
    """One worker pays for the discovery; the others refuse the account, unsent."""
    # Each worker has served a call, as a worker in production has: the bound is the
    # refusal's, not a cold process's first imports, pydantic builds and connections.
    # The speed figure (refused: turn -> farewell, p95 <= 100 ms, ~10 ms measured) is the
    # fleet benchmark's, on a quiet machine; here, beside other test workers and mypy on
    # 2 cores, the bound says the refusal waits for nothing (no request, no retry backoff,
    # no Redis timeout): 0.1 s failed 1 run in 3 at 0.109-0.117 s.
    for w in workers:
        served = await w.session(sim, "sk-warm-up")
        assert served["closed"] != "error" and not served["decided"]
    sim.requests.clear()
    sim.llm.default = QUOTA
    first = await workers[0].session(sim, "sk-opens")
    assert first["closed"] == "error" and not first["refused"]
    assert billed(sim) == ["llm"]
    await all_see(workers, sim, "sk-opens", opened=True)
    before = len(sim.requests)
    for w in workers[1:]:
        result = await w.session(sim, "sk-opens")
        assert result["closed"] == "error" and result["refused"]
        assert result["first_frame"] is not None and result["first_frame"] <= REFUSAL_BOUND
    assert billed(sim, before) == []


async def test_exactly_one_probe_fleet_wide(workers: list[Worker], sim: GatewaySimulator) -> None:
    """After the cool-down, of many sessions in three processes one probes (still
    exhausted: it fails) and the breaker re-opens everywhere."""
    sim.llm.default = QUOTA
    began = time.time()
    await workers[0].session(sim, "sk-probe", cooldown=0.5)
    await all_see(workers, sim, "sk-probe", opened=True, since=began)
    await asyncio.sleep(0.6)
    before = len(sim.requests)

    async def three(w: Worker) -> None:
        for _ in range(3):
            await w.session(sim, "sk-probe", cooldown=30.0)
            await asyncio.sleep(0.1)

    await asyncio.gather(*(three(w) for w in workers))
    assert billed(sim, before) == ["llm"]
    await all_see(workers, sim, "sk-probe", opened=True)


async def test_every_cool_down_gets_its_probe(workers: list[Worker], sim: GatewaySimulator) -> None:
    """A failed probe re-opens the breaker and gives its lease back with it: after the
    next cool-down (here shorter than the 15 s lease) the fleet probes again, once."""
    sim.llm.default = QUOTA
    since = time.time()
    await workers[0].session(sim, "sk-reprobe", cooldown=0.5)
    await all_see(workers, sim, "sk-reprobe", opened=True, since=since)
    for _ in range(2):  # two cool-downs, two failing probes
        await asyncio.sleep(0.6)
        before, since = len(sim.requests), time.time()
        for _ in range(10):
            await asyncio.gather(*(w.session(sim, "sk-reprobe", cooldown=0.5) for w in workers))
            if billed(sim, before):
                break
        assert billed(sim, before) == ["llm"]
        # Re-opened everywhere: a cool-down ending after this round began.
        await all_see(workers, sim, "sk-reprobe", opened=True, since=since)


async def test_no_lease_for_an_opening_already_replaced(redis_server: RedisServer) -> None:
    """A process that has not yet heard of a re-opening (its cache still holds the old,
    cooled-down opening) cannot take the probe lease: the new cool-down is not over."""
    prefix = "agent_guard:test-stale"
    store = RedisStore(redis_server.url, prefix=prefix)
    breaker = FleetBreaker("stale", store)
    breaker.start()
    client = Redis.from_url(redis_server.url)
    try:

        async def connected() -> bool:
            return store.connected

        await until(connected)
        acct = account("127.0.0.1:1", "http://127.0.0.1:1/v1", "sk-stale", key=b"k")
        quota = Verdict(
            kind=Kind.LLM, category=Category.QUOTA_EXHAUSTED, terminal=True, counts=True
        )
        breaker.failed(acct, quota, cooldown=0.01)
        stale = breaker.states[acct.id]
        breaker.failed(acct, quota, cooldown=30.0)  # re-opened: a new cool-down, a new token
        current = breaker.states[acct.id]
        assert current.token != stale.token
        opened = f"{prefix}:open:{acct.id}".encode()

        async def stored() -> bool:
            return current.token.encode() in (await client.get(opened) or b"")

        await until(stored)
        probe = f"{prefix}:probe:{acct.id}"
        store.want_probe(acct.id, stale)
        await asyncio.sleep(0.3)
        assert await client.get(probe) is None
        store._acquiring.clear()  # its one-attempt-a-second throttle, not under test
        store.want_probe(acct.id, current)  # the control: the opening in Redis gets it
        await until(lambda: client.exists(probe))
    finally:
        store.stop()
        await client.aclose()


async def test_recovery_closes_everywhere(workers: list[Worker], sim: GatewaySimulator) -> None:
    sim.llm.default = QUOTA
    began = time.time()
    await workers[0].session(sim, "sk-recovers", cooldown=0.5)
    # Opened since the session began: the 0.5 s cool-down may be over before every
    # worker has been asked.
    await all_see(workers, sim, "sk-recovers", opened=True, since=began)
    sim.llm.default = Reply("Back in business.")
    await asyncio.sleep(0.6)

    served = 0
    for _ in range(10):
        results = await asyncio.gather(*(w.session(sim, "sk-recovers") for w in workers))
        served = sum(not r["decided"] for r in results)
        if served:
            break
    assert served
    await all_see(workers, sim, "sk-recovers", opened=False)
    results = await asyncio.gather(*(w.session(sim, "sk-recovers") for w in workers))
    assert not any(r["decided"] for r in results)


async def test_another_key_is_not_blocked(workers: list[Worker], sim: GatewaySimulator) -> None:
    sim.llm.default = QUOTA
    await workers[0].session(sim, "sk-exhausted")
    await all_see(workers, sim, "sk-exhausted", opened=True)
    sim.llm.default = Reply("Hello.")
    before = len(sim.requests)
    refused = await workers[1].session(sim, "sk-exhausted")
    assert refused["refused"] and billed(sim, before) == []
    served = await workers[1].session(sim, "sk-healthy")
    assert not served["decided"] and billed(sim, before) == ["llm"]


async def test_redis_killed_then_restarted(
    workers: list[Worker], sim: GatewaySimulator, redis_server: RedisServer
) -> None:
    """Redis dies: sessions keep deciding on in-process state, each worker logs the
    outage once; Redis comes back: workers reconnect and share what they learned."""
    sim.llm.default = QUOTA
    await workers[0].session(sim, "sk-before-outage")
    await all_see(workers, sim, "sk-before-outage", opened=True)

    redis_server.stop()

    async def disconnected() -> bool:
        return not any([(await w.call(cmd="state"))["connected"] for w in workers])

    await until(disconnected, within=8)
    before = len(sim.requests)
    kept = await workers[1].session(sim, "sk-before-outage")
    assert kept["refused"] and billed(sim, before) == []
    # Learned during the outage, in one process only.
    during = await workers[2].session(sim, "sk-during-outage")
    assert during["closed"] == "error" and not during["refused"]
    for w in workers:
        assert (await w.call(cmd="state"))["events"].get("agent_guard.fleet_store_unavailable") == 1

    redis_server.start()

    async def reconnected() -> bool:
        return all([(await w.call(cmd="state"))["connected"] for w in workers])

    await until(reconnected, within=8)
    # Worker 2 republished what it learned during the outage.
    await all_see(workers, sim, "sk-during-outage", opened=True)
    before = len(sim.requests)
    shared = await workers[0].session(sim, "sk-during-outage")
    assert shared["refused"] and billed(sim, before) == []
    for w in workers:
        events = (await w.call(cmd="state"))["events"]
        assert events.get("agent_guard.fleet_store_restored") == 1
        assert events.get("agent_guard.fleet_store_unavailable") == 1
