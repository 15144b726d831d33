"""Telling LiveKit dispatch that this worker cannot serve calls right now.

livekit's worker asks ``load_fnc`` every 0.5 s (in a thread) and stops being offered jobs
at ``load_threshold``; ``request_fnc`` accepts or rejects each job offered. Both run in
the worker's main process, while sessions run in job processes: the main process learns
about openings through a shared (Redis) fleet, and learns what it depends on from
:func:`depends_on` (sessions in the same process register their accounts themselves).
"""

from __future__ import annotations

import time
from typing import Any

from agent_guard._log import log
from agent_guard.fleet._breaker import FleetBreaker
from agent_guard.fleet._models import account_of, leaves
from agent_guard.fleet._registry import FleetSpec, active_breakers, breaker_for

__all__ = ["blocked_accounts", "depends_on", "fleet_load", "request_fnc"]


def depends_on(*models: object, fleet: FleetSpec = "memory") -> FleetBreaker | None:
    """Declare the models this worker's sessions use (in the worker's main process).

    Starts the fleet's store (for Redis: subscribes) and registers each model's account
    (a FallbackAdapter's instances each), so :func:`fleet_load` and :func:`request_fnc`
    know which breakers matter. Pass the same ``fleet`` as the policy's.
    """
    breaker = breaker_for(fleet)
    if breaker is None:
        return None
    breaker.start()
    for model in models:
        for leaf in leaves(model):
            if (acct := account_of(leaf)) is not None:
                breaker.register(acct)
    return breaker


def blocked_accounts() -> list[tuple[str, str]]:
    """``(provider, account id)`` of each account this process depends on that is open
    and still cooling down (half-open accounts are not: one call may probe them)."""
    now = time.time()
    out: list[tuple[str, str]] = []
    for breaker in active_breakers():
        states = breaker.states
        for acct in breaker.accounts:
            for key, state in states.items():
                if key.split(":", 1)[0] == acct.id and state.until > now:
                    out.append((acct.provider, acct.id))
                    break
    return out


def fleet_load(worker: object = None) -> float:
    """``WorkerOptions(load_fnc=fleet_load)``: 1.0 while a breaker this worker depends
    on is open (cooling down), else 0.0.

    Combine with livekit's CPU load if you use it:
    ``load_fnc=lambda w: max(fleet_load(), cpu_load(w))``.
    """
    return 1.0 if blocked_accounts() else 0.0


async def request_fnc(request: Any) -> None:
    """``WorkerOptions(request_fnc=request_fnc)``: reject jobs while a breaker this worker
    depends on is open, so LiveKit dispatch offers the call to another worker."""
    blocked = blocked_accounts()
    if blocked:
        log.info("agent_guard.fleet_job_rejected", accounts=[i[:12] for _, i in blocked])
        await request.reject()
        return
    await request.accept()
