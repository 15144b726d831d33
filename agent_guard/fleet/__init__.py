"""The fleet breaker: when a provider account is exhausted, every guarded session knows.

Credits and keys belong to an account, not a session. Without this, every new session of
every worker rediscovers an exhausted account with a paid, failing request. With
``GuardPolicy(fleet="memory")`` (the default) the sessions of one process share what they
learn; with ``fleet="redis://..."`` every process and machine sharing that Redis does.

* A terminal, account-scope verdict (:data:`ACCOUNT_CATEGORIES`: quota exhausted,
  payment required, auth) opens the breaker for that account: provider, endpoint and an
  HMAC fingerprint of the credential (:class:`Account`).
* While it is open, no request is sent to the account: the model's ``chat()`` /
  ``synthesize()`` fail at once with :class:`FleetOpenError`, so a guarded session plays
  its farewell at the first reply, and a FallbackAdapter skips that instance.
* After the cool-down (the provider's Retry-After, else ``GuardPolicy.fleet_cooldown``)
  exactly one request fleet-wide probes; its success closes the breaker everywhere.
* :func:`fleet_load` and :func:`request_fnc` let a livekit worker stop taking calls it
  cannot serve.
"""

from __future__ import annotations

from agent_guard.fleet._account import ACCOUNT_CATEGORIES, FLEET_KEY_ENV, Account, account
from agent_guard.fleet._breaker import FleetBreaker, OpenState
from agent_guard.fleet._gate import REFUSED, FleetOpenError, attach, is_refusal, refused
from agent_guard.fleet._models import account_of
from agent_guard.fleet._redis import RedisStore
from agent_guard.fleet._registry import breaker_for
from agent_guard.fleet._worker import blocked_accounts, depends_on, fleet_load, request_fnc

__all__ = [
    "ACCOUNT_CATEGORIES",
    "FLEET_KEY_ENV",
    "REFUSED",
    "Account",
    "FleetBreaker",
    "FleetOpenError",
    "OpenState",
    "RedisStore",
    "account",
    "account_of",
    "attach",
    "blocked_accounts",
    "breaker_for",
    "depends_on",
    "fleet_load",
    "is_refusal",
    "refused",
    "request_fnc",
]
