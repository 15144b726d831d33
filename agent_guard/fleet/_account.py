"""Which provider account a model bills: provider, endpoint, and a keyed credential fingerprint.

Credits and keys belong to an account, not to a session or a model: the LiveKit gateway
bills one project for LLM, TTS and STT alike, OpenAI one organisation per key. An
:class:`Account` therefore names the endpoint and the credential, never the model.

The credential itself never leaves the model object it came from: an Account holds only
``HMAC-SHA256(fleet key, credential)``. The fleet key is per deployment
(``AGENT_GUARD_FLEET_KEY``, the same secret on every worker sharing a Redis) or, without
it, a random per-process key, which is enough for the in-process breaker but shares
nothing across processes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from agent_guard._verdict import Category

__all__ = ["ACCOUNT_CATEGORIES", "FLEET_KEY_ENV", "Account", "account", "deployment_key"]

#: Terminal categories that belong to the account, not to a request or a model: every
#: request of every session on that account fails the same way until billing or the key
#: changes. (``permission`` is left out: it is often one model or feature, not the account.)
ACCOUNT_CATEGORIES: frozenset[Category] = frozenset(
    {Category.QUOTA_EXHAUSTED, Category.PAYMENT_REQUIRED, Category.AUTH}
)

#: The environment variable holding the per-deployment fingerprint key.
FLEET_KEY_ENV = "AGENT_GUARD_FLEET_KEY"

# Without a deployment key: fingerprints are comparable within this process only.
_PROCESS_KEY = secrets.token_bytes(32)


def deployment_key() -> bytes | None:
    """The per-deployment key from :data:`FLEET_KEY_ENV`, if set (and non-blank)."""
    value = os.environ.get(FLEET_KEY_ENV, "").strip()
    return value.encode() if value else None


@dataclass(frozen=True, slots=True)
class Account:
    """A provider account: what a breaker opens and closes.

    Attributes:
        provider: The provider's name as livekit reports it (for the openai plugin, the
            endpoint's host), for logs.
        endpoint: The normalised base URL requests go to.
        fingerprint: ``HMAC-SHA256(fleet key, credential)``, hex; never the credential.
    """

    provider: str
    endpoint: str
    fingerprint: str

    @property
    def id(self) -> str:
        """A stable, non-secret identifier: the key for stores, channels and logs."""
        digest = hashlib.sha256(
            f"{self.provider}\0{self.endpoint}\0{self.fingerprint}".encode()
        ).hexdigest()
        return digest[:32]

    def __repr__(self) -> str:
        return f"Account(provider={self.provider!r}, id={self.id[:12]!r})"


def account(provider: str, endpoint: str, credential: str, *, key: bytes | None = None) -> Account:
    """The Account of ``credential`` at ``endpoint``.

    ``key`` defaults to the deployment key, else this process's random key.
    """
    secret = key if key is not None else (deployment_key() or _PROCESS_KEY)
    fingerprint = hmac.new(secret, credential.encode(), hashlib.sha256).hexdigest()
    return Account(provider=provider, endpoint=_normalise(endpoint), fingerprint=fingerprint)


def _normalise(url: str) -> str:
    """Scheme and host in lower case, no trailing slash, no query, no user info."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))
