"""Sharing breaker state through Redis, off every session's path.

A daemon thread with its own event loop owns the Redis connections: sessions (on any loop,
in any thread) only read the breaker's local cache, and hand the rare writes (an opening,
a probe's outcome) to the thread without waiting. The thread subscribes to one channel,
loads the open breakers on every (re)connect, and applies what others publish.

Keys (``prefix`` defaults to ``agent_guard:fleet``; ids are :attr:`Account.id`):

* ``{prefix}:open:{id}``: the :class:`OpenState` as JSON, expiring an hour after its
  cool-down (a breaker nobody probes again does not linger for ever);
* ``{prefix}:probe:{id}``: the probe lease, ``SET NX PX`` (exactly one holder fleet-wide),
  granted only for the opening stored under ``open`` (not for one it has replaced), and
  removed by every opening (a failed probe's re-opening starts a new cool-down, which
  gets a probe of its own);
* channel ``{prefix}:events``: ``{"op": "open" | "close", ...}``.

If Redis is unreachable, every process keeps deciding on its own state (logged once per
outage), reconnects in the background with backoff, and on reconnect publishes the
openings made meanwhile and loads the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from agent_guard._log import log
from agent_guard.fleet._breaker import PROBE_LEASE, OpenState

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from agent_guard.fleet._breaker import FleetBreaker

__all__ = ["RedisStore", "redacted_url"]

_LINGER = 3600.0
_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)
# Compare-and-delete: only the opening (or lease) named by ARGV[1] is removed.
_CLOSE = """
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
return redis.call('PUBLISH', KEYS[3], ARGV[2])
"""
# The probe lease, granted only for the opening the caller saw cool down (ARGV[2]): a
# process that has not yet heard of a re-opening must not probe the new cool-down.
_ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if v and not string.find(v, ARGV[2], 1, true) then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def redacted_url(url: str) -> str:
    """``url`` without its password (for names and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + netloc, parts.path, parts.query, ""))


class RedisStore:
    """The Redis side of a :class:`FleetBreaker` (see the module docstring)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        connection_kwargs: Mapping[str, Any] | None = None,
        prefix: str = "agent_guard:fleet",
    ) -> None:
        if (url is None) == (connection_kwargs is None):
            raise ValueError("give either a redis URL or connection_kwargs")
        self._url = url
        self._kwargs = dict(connection_kwargs or {})
        if url is not None:
            self.name = redacted_url(url)
        else:
            self.name = "redis://{}:{}/{}".format(
                self._kwargs.get("host", "localhost"),
                self._kwargs.get("port", 6379),
                self._kwargs.get("db", 0),
            )
        self._prefix = prefix
        self._channel = f"{prefix}:events"
        self._me = secrets.token_hex(8)
        self._breaker: FleetBreaker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Redis | None = None
        self._connected = False
        self._ever_connected = False
        self._outage_logged = False
        self._acquiring: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._main: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    # -- called from session threads: never block, never raise ------------------------------

    def start(self, breaker: FleetBreaker) -> None:
        self._breaker = breaker
        self._thread = threading.Thread(
            target=self._thread_main, name=f"agent_guard.fleet[{self.name}]", daemon=True
        )
        self._thread.start()

    def opened(self, account_id: str, state: OpenState) -> None:
        self._submit(self._publish_open(account_id, state))

    def closed(self, account_id: str, token: str) -> None:
        self._submit(self._publish_close(account_id, token))

    def want_probe(self, account_id: str, state: OpenState) -> None:
        now = time.monotonic()
        if self._acquiring.get(account_id, 0.0) > now:
            return  # one attempt at a time, at most one a second per account
        self._acquiring[account_id] = now + 1.0
        self._submit(self._acquire(account_id, state.token))

    def release_probe(self, account_id: str) -> None:
        self._submit(self._release(account_id))

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the background thread (tests, benchmarks; workers just exit)."""
        self._stop.set()
        loop, main = self._loop, self._main
        if loop is not None and main is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(main.cancel)
        if self._thread is not None:
            self._thread.join(timeout)

    def _submit(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or not self._connected:
            # Offline: the breaker already holds the state; a reconnect republishes it.
            coro.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop is closing
            coro.close()

    # -- the store's own thread -------------------------------------------------------------

    def _thread_main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        attempt = 0
        while not self._stop.is_set():
            try:
                await self._session()
                attempt = 0
            except asyncio.CancelledError:
                break
            except Exception as e:
                self._lost(e)
            finally:
                self._connected = False
                await self._drop_client()
            if self._stop.is_set():
                break
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
            attempt += 1

    async def _session(self) -> None:
        """One connection's life: subscribe, sync, apply events until it breaks."""
        from redis.asyncio import Redis

        # Short timeouts: a dead server must be noticed in seconds, not minutes.
        if self._url is not None:
            client = Redis.from_url(self._url, socket_connect_timeout=1.0, socket_timeout=2.0)
        else:
            kwargs = {**self._kwargs, "socket_connect_timeout": 1.0, "socket_timeout": 2.0}
            client = Redis(**kwargs)
        self._client = client
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            await self._sync(client)
            self._connected = True
            if self._outage_logged:
                log.warning("agent_guard.fleet_store_restored", fleet=self.name)
            self._outage_logged = False
            self._ever_connected = True
            last_ping = time.monotonic()
            while not self._stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if message is not None and message.get("type") == "message":
                    self._apply(message.get("data"))
                if time.monotonic() - last_ping > 2.0:
                    # A silent channel hides a dead server: ask it, so the outage is
                    # noticed (and logged) before anyone needs the store.
                    await pubsub.ping()
                    last_ping = time.monotonic()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _sync(self, client: Redis) -> None:
        """After (re)connecting: load the fleet's openings and publish ours it lacks."""
        breaker = self._breaker
        assert breaker is not None
        remote: dict[str, OpenState] = {}
        async for name in client.scan_iter(match=f"{self._prefix}:open:*", count=100):
            raw = await client.get(name)
            state = _state(raw)
            if state is not None:
                text = name.decode() if isinstance(name, bytes) else str(name)
                key = text.removeprefix(f"{self._prefix}:open:")
                remote[key] = state
                breaker.remote_opened(key, state)
        now = time.time()
        for key, state in breaker.snapshot().items():
            # Openings made while Redis was away, still cooling down: the fleet needs
            # them. (One past its cool-down may have been closed meanwhile: not re-pushed.)
            if key not in remote and state.until > now:
                await self._publish_open(key, state, client=client)

    def _apply(self, data: object) -> None:
        breaker = self._breaker
        try:
            message = json.loads(data) if isinstance(data, bytes | str) else None
            if not isinstance(message, dict) or breaker is None:
                return
            key = str(message["id"])
            if message.get("op") == "open":
                breaker.remote_opened(key, OpenState.from_dict(message["state"]))
            elif message.get("op") == "close":
                breaker.remote_closed(key, str(message["token"]))
        except Exception as e:
            log.warning("agent_guard.fleet_message_invalid", error_type=type(e).__name__)

    async def _publish_open(
        self, key: str, state: OpenState, *, client: Redis | None = None
    ) -> None:
        client = client or self._client
        if client is None:
            return
        ttl = max(1, int((state.until - time.time() + _LINGER) * 1000))
        payload = json.dumps(state.as_dict())
        # One transaction: the lease of the probe that just failed (if any) must not
        # outlive the opening it caused, nor be taken again for the old one.
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(f"{self._prefix}:open:{key}", payload, px=ttl)
            pipe.delete(f"{self._prefix}:probe:{key}")
            await pipe.execute()
        await client.publish(
            self._channel, json.dumps({"op": "open", "id": key, "state": state.as_dict()})
        )

    async def _publish_close(self, key: str, token: str) -> None:
        if (client := self._client) is None:
            return
        message = json.dumps({"op": "close", "id": key, "token": token})
        keys = [f"{self._prefix}:open:{key}", f"{self._prefix}:probe:{key}", self._channel]
        await client.eval(_CLOSE, 3, *keys, token, message)

    async def _acquire(self, key: str, token: str) -> None:
        if (client := self._client) is None or self._breaker is None:
            return
        keys = [f"{self._prefix}:open:{key}", f"{self._prefix}:probe:{key}"]
        won = await client.eval(_ACQUIRE, 2, *keys, self._me, token, str(int(PROBE_LEASE * 1000)))
        if won:
            self._breaker.lease_won(key, PROBE_LEASE - 1.0)

    async def _release(self, key: str) -> None:
        if (client := self._client) is None:
            return
        await client.eval(_RELEASE, 1, f"{self._prefix}:probe:{key}", self._me)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _lost(self, error: BaseException) -> None:
        if not self._outage_logged:
            self._outage_logged = True
            log.error(
                "agent_guard.fleet_store_unavailable",
                fleet=self.name,
                error_type=type(error).__name__,
                fallback="in-process",
            )


def _state(raw: object) -> OpenState | None:
    try:
        data = json.loads(raw) if isinstance(raw, bytes | str) else None
        return OpenState.from_dict(data) if isinstance(data, dict) else None
    except Exception:
        return None
