"""The fleet breaker: one per process and store, read locally on every request.

States per :class:`~agent_guard.fleet.Account`:

* **closed** (no entry): requests go through; the hot path is one dict lookup.
* **open** until ``until`` (wall-clock seconds, comparable across machines): requests are
  refused without being sent.
* **half-open** once ``until`` has passed: exactly one request, the *probe*, goes through,
  to whoever holds the probe lease (in-process for ``"memory"``, an atomic Redis
  ``SET NX PX`` for Redis); every other request is still refused. The probe's success
  closes the breaker everywhere; an account-scope failure re-opens it for another
  cool-down; anything else (a transient error, a cancelled request) releases the lease
  for the next probe.

What a breaker knows is a local cache (:attr:`FleetBreaker.states`) that a store keeps in
sync in the background; nothing here waits for a store.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from agent_guard._log import log
from agent_guard._verdict import Category, Kind, Verdict
from agent_guard.fleet._account import ACCOUNT_CATEGORIES, Account

__all__ = [
    "MAX_COOLDOWN",
    "PROBE_LEASE",
    "FleetBreaker",
    "OpenState",
    "Store",
    "cooldown_for",
]

#: Longest cool-down taken from a provider's Retry-After / reset headers.
MAX_COOLDOWN = 24 * 3600.0
#: How long a probe may take before another process may probe instead (seconds).
PROBE_LEASE = 15.0


@dataclass(frozen=True, slots=True)
class OpenState:
    """An open breaker, as stored and published (nothing secret in it)."""

    category: Category
    until: float
    """``time.time()`` when the cool-down ends and one probe may go through."""
    token: str
    """Names this opening: a close for an older opening does not close a newer one."""
    provider: str = ""
    scope: str = ""
    """``""``: the whole account; a kind (``"llm"``, ``"tts"``, ...): only that product,
    when the provider said which quota ran out (the LiveKit gateway's ``quota_type``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category.value,
            "until": self.until,
            "token": self.token,
            "provider": self.provider,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenState:
        return cls(
            category=Category(data["category"]),
            until=float(data["until"]),
            token=str(data["token"]),
            provider=str(data.get("provider", "")),
            scope=str(data.get("scope", "")),
        )


class Store(Protocol):
    """Where a breaker's state is shared (the in-process breaker has none)."""

    name: str

    def start(self, breaker: FleetBreaker) -> None:
        """Begin syncing in the background; returns at once."""

    def opened(self, account_id: str, state: OpenState) -> None:
        """Publish an opening (fire and forget)."""

    def closed(self, account_id: str, token: str) -> None:
        """Publish a close of the opening ``token`` (fire and forget)."""

    def want_probe(self, account_id: str, state: OpenState) -> None:
        """Try, in the background, to win the probe lease for ``state``."""

    def release_probe(self, account_id: str) -> None:
        """Give the probe lease back (fire and forget)."""

    @property
    def connected(self) -> bool:
        """Whether the store is reachable now (else the breaker decides in-process)."""


def _scope(verdict: Verdict) -> str:
    quota_type = verdict.quota.quota_type if verdict.quota is not None else None
    return quota_type if quota_type in {k.value for k in Kind} else ""


def _keys(account: Account, kind: str) -> tuple[str, ...]:
    """The state keys that can refuse a ``kind`` request: the account's, its kind's."""
    return (account.id, f"{account.id}:{kind}") if kind else (account.id,)


def cooldown_for(verdict: Verdict, default: float) -> float:
    """The cool-down an opening gets: the provider's Retry-After / reset, else ``default``."""
    retry_after = verdict.quota.retry_after if verdict.quota is not None else None
    if retry_after is not None and retry_after > 0:
        return min(float(retry_after), MAX_COOLDOWN)
    return default


class FleetBreaker:
    """The breaker of every account this process has seen, for one store.

    Thread-safe: guarded sessions may run on several event loops (livekit's thread
    executor), and a Redis store updates the cache from its own thread.
    """

    def __init__(self, name: str, store: Store | None = None) -> None:
        self.name = name
        self._store = store
        self._lock = threading.Lock()
        self._states: dict[str, OpenState] = {}
        # Probes this process may hand out: account id -> monotonic lease deadline.
        self._leases: dict[str, float] = {}
        # Probes handed out and not yet concluded: account id -> monotonic deadline.
        self._probing: dict[str, float] = {}
        self._accounts: dict[str, Account] = {}
        self._started = False

    # -- read side (hot path: local only) ------------------------------------------------

    @property
    def states(self) -> Mapping[str, OpenState]:
        """Open breakers by account id (a snapshot)."""
        with self._lock:
            return MappingProxyType(dict(self._states))

    @property
    def accounts(self) -> tuple[Account, ...]:
        """Every account this breaker has been asked about in this process."""
        with self._lock:
            return tuple(self._accounts.values())

    def register(self, account: Account) -> None:
        """Remember that this process depends on ``account`` (see ``fleet_load``)."""
        if account.id not in self._accounts:
            with self._lock:
                self._accounts.setdefault(account.id, account)

    def check(self, account: Account, kind: str = "") -> OpenState | None:
        """May a ``kind`` request go to ``account`` now? ``None``: yes; else the open state.

        In half-open, the first caller that finds a probe lease held by this process
        gets ``None``: its request is the probe.
        """
        for key in _keys(account, kind):
            if key in self._states and (refused := self._check(key)) is not None:
                return refused
        return None

    def tokens(self, account: Account, kind: str = "") -> frozenset[str]:
        """The openings a ``kind`` request to ``account`` is subject to now (their tokens)."""
        states = self._states
        return frozenset(s.token for key in _keys(account, kind) if (s := states.get(key)))

    def opened_since(self, account: Account, kind: str, seen: frozenset[str]) -> OpenState | None:
        """An opening for a ``kind`` request to ``account`` that is not one of ``seen``.

        A request let through (closed, or as the probe of an opening in ``seen``) must not
        be retried into an opening made since: that retry is not the probe of anything.
        """
        for key in _keys(account, kind):
            state = self._states.get(key)
            if state is not None and state.token not in seen:
                return state
        return None

    def _check(self, key: str) -> OpenState | None:
        state = self._states.get(key)
        if state is None:
            return None
        if time.time() < state.until:
            return state
        now = time.monotonic()
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return None
            if self._probing.get(key, 0.0) > now:
                return state  # the fleet's one probe is under way
            store = self._store
            if store is not None and store.connected:
                lease = self._leases.pop(key, 0.0)
                if lease <= now:
                    store.want_probe(key, state)
                    return state
            # Without a reachable store, this process decides alone.
            self._probing[key] = now + PROBE_LEASE
        log.info("agent_guard.fleet_probe", account=key[:12], provider=state.provider)
        return None

    # -- write side (rare: an account failed, or a probe concluded) -----------------------

    def failed(self, account: Account, verdict: Verdict, *, cooldown: float) -> bool:
        """Record ``verdict`` for ``account``; open (or re-open) if it is account-scope.

        Returns:
            Whether the breaker opened.
        """
        if not verdict.terminal or verdict.category not in ACCOUNT_CATEGORIES:
            if not verdict.recoverable:
                for key in _keys(account, verdict.kind.value):
                    if key in self._probing:
                        self._probe_inconclusive(key)
            return False
        scope = _scope(verdict)
        key = f"{account.id}:{scope}" if scope else account.id
        until = time.time() + cooldown_for(verdict, cooldown)
        with self._lock:
            current = self._states.get(key)
            probing = self._probing.pop(key, None) is not None
            if current is not None and current.until >= until - 1.0 and not probing:
                return False  # already open (other sessions failing on it): nothing new
            state = OpenState(
                category=verdict.category,
                until=until,
                token=secrets.token_hex(8),
                provider=account.provider,
                scope=scope,
            )
            self._states[key] = state
            self._accounts.setdefault(key, account)
        log.warning(
            "agent_guard.fleet_opened",
            account=key[:12],
            provider=account.provider,
            category=verdict.category.value,
            cooldown=round(until - time.time(), 1),
            fleet=self.name,
        )
        if self._store is not None:
            self._store.opened(key, state)
        return True

    def served(self, account: Account, kind: str = "") -> None:
        """A ``kind`` request to ``account`` succeeded: if it was the probe, close everywhere."""
        for key in _keys(account, kind):
            if key in self._states:
                self._served(key, account)

    def _served(self, key: str, account: Account) -> None:
        with self._lock:
            if self._probing.pop(key, None) is None:
                return  # a request started before the opening finished late: not a probe
            state = self._states.pop(key, None)
        if state is None:
            return
        log.warning("agent_guard.fleet_closed", account=key[:12], provider=account.provider)
        if self._store is not None:
            self._store.closed(key, state.token)

    def _probe_inconclusive(self, key: str) -> None:
        with self._lock:
            self._probing.pop(key, None)
        if self._store is not None:
            self._store.release_probe(key)

    # -- store side (called by a store, from any thread) ----------------------------------

    def remote_opened(self, key: str, state: OpenState) -> None:
        with self._lock:
            current = self._states.get(key)
            if current is None or state.until > current.until or state.token == current.token:
                self._states[key] = state
                self._probing.pop(key, None)

    def remote_closed(self, key: str, token: str) -> None:
        with self._lock:
            current = self._states.get(key)
            if current is not None and current.token == token:
                del self._states[key]
                self._probing.pop(key, None)
                self._leases.pop(key, None)

    def lease_won(self, key: str, lease: float) -> None:
        """This process holds the probe lease for ``key`` for ``lease`` seconds."""
        with self._lock:
            if key in self._states:
                self._leases[key] = time.monotonic() + lease

    def snapshot(self) -> dict[str, OpenState]:
        with self._lock:
            return dict(self._states)

    def start(self) -> None:
        """Start the store's background sync (idempotent)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        if self._store is not None:
            self._store.start(self)
