"""One breaker per process and store: what ``GuardPolicy(fleet=...)`` resolves to."""

from __future__ import annotations

import threading
from typing import Any

from agent_guard._errors import PolicyError
from agent_guard.fleet._account import FLEET_KEY_ENV, deployment_key
from agent_guard.fleet._breaker import FleetBreaker
from agent_guard.fleet._redis import RedisStore

__all__ = ["REDIS_SCHEMES", "FleetSpec", "active_breakers", "breaker_for", "check_spec"]

FleetSpec = str | FleetBreaker | Any | None
"""``"memory"``, a Redis URL, a ``redis.asyncio.Redis`` client, a FleetBreaker, or None."""

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

_LOCK = threading.Lock()
_BREAKERS: dict[object, FleetBreaker] = {}

# The connection settings copied from a user's client: its connections belong to the
# user's event loop, and the store runs on its own.
_CLIENT_SETTINGS = frozenset(
    [
        "host",
        "port",
        "db",
        "username",
        "password",
        "path",
        "ssl",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
    ]
)


def check_spec(spec: object) -> None:
    """Raise :class:`PolicyError` unless ``spec`` is a valid ``GuardPolicy.fleet``."""
    if spec is None or spec == "memory" or isinstance(spec, FleetBreaker):
        return
    if isinstance(spec, str):
        if not spec.startswith(REDIS_SCHEMES):
            raise PolicyError(
                f"fleet must be 'memory', a redis:// URL, a redis.asyncio client, a "
                f"FleetBreaker or None, got {spec!r}"
            )
    elif _client_settings(spec) is None:
        raise PolicyError(
            "fleet must be 'memory', a redis:// URL, a redis.asyncio client, a FleetBreaker "
            f"or None, got {type(spec).__name__}"
        )
    if deployment_key() is None:
        # Without one secret shared by every worker, each fingerprints credentials with
        # its own key, and nothing would ever be shared.
        raise PolicyError(
            f"a Redis fleet needs {FLEET_KEY_ENV}: the same secret on every worker "
            "(it keys the credential fingerprints)"
        )


def breaker_for(spec: FleetSpec) -> FleetBreaker | None:
    """The process's breaker for ``spec`` (created on first use; ``None`` for None)."""
    if spec is None:
        return None
    if isinstance(spec, FleetBreaker):
        return spec
    settings: dict[str, Any] | None = None
    if isinstance(spec, str):
        key: object = spec
    else:
        settings = _client_settings(spec)
        if settings is None:
            return None
        key = tuple(sorted(settings.items(), key=lambda kv: kv[0]))
    with _LOCK:
        breaker = _BREAKERS.get(key)
        if breaker is None:
            if spec == "memory":
                breaker = FleetBreaker("memory")
            elif isinstance(spec, str):
                store = RedisStore(spec)
                breaker = FleetBreaker(store.name, store)
            else:
                store = RedisStore(connection_kwargs=settings)
                breaker = FleetBreaker(store.name, store)
            _BREAKERS[key] = breaker
        return breaker


def active_breakers() -> tuple[FleetBreaker, ...]:
    """Every breaker this process has created for a policy."""
    with _LOCK:
        return tuple(_BREAKERS.values())


def _client_settings(client: object) -> dict[str, Any] | None:
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return None
    return {k: v for k, v in kwargs.items() if k in _CLIENT_SETTINGS and v is not None}


def reset() -> None:
    """Forget every breaker of this process, stopping their stores (tests only)."""
    with _LOCK:
        breakers = list(_BREAKERS.values())
        _BREAKERS.clear()
    for breaker in breakers:
        stop = getattr(breaker._store, "stop", None)
        if callable(stop):
            stop()
