"""examples/agent.py is a real livekit worker: it starts, and it runs in console text mode.

Neither run reaches a provider: ``--help`` contacts nothing, and console mode is pointed
at the bundled simulator (``LIVEKIT_INFERENCE_URL``) with dummy LiveKit credentials.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_guard.testing import GatewaySimulator, QuotaExceeded, Reply

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "examples" / "agent.py"

# Nothing may reach a real provider: unroutable proxies and dummy credentials.
OFFLINE_ENV = {
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "devsecret-devsecret-devsecret-00",
    "LIVEKIT_URL": "ws://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "COLUMNS": "120",
}

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _portaudio() -> bool:
    # livekit's console imports sounddevice even in text mode; it needs libportaudio.
    try:
        importlib.import_module("sounddevice")
    except (ImportError, OSError):
        return False
    return True


class TestWorker:
    """The example starts like any livekit worker."""

    def test_help_lists_the_worker_commands(self) -> None:
        """`python examples/agent.py --help` exits 0 and offers console, dev and start."""
        done = subprocess.run(
            [sys.executable, str(AGENT), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**os.environ, **OFFLINE_ENV},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for command in ("console", "dev", "start"):
            assert re.search(rf"\b{command}\b", done.stdout), done.stdout

    @pytest.mark.skipif(not _portaudio(), reason="livekit's console needs PortAudio")
    async def test_console_text_mode(self) -> None:
        """Typed turns get the LLM's reply; out of credits, the call ends by itself.

        The close is the guard's (terminal, logged at ERROR with the job's fields), both
        models of the FallbackLLM were asked once, and the worker exits (the example ends
        the job when the session closes).
        """
        async with GatewaySimulator() as sim:
            sim.llm.script(Reply("Hello! Table for how many?"))
            sim.llm.default = QuotaExceeded()
            console = _Console({**OFFLINE_ENV, "LIVEKIT_INFERENCE_URL": sim.base_url})
            await console.start()
            try:
                await console.type("hi")
                await console.expect("Table for how many?")
                await console.type("A table for two, please.")
                code = await console.exited(within=60.0)
            finally:
                await console.stop()
            output = console.text
            assert code == 0, output[-3000:]
            assert "agent_guard.closing" in output
            closing = output[output.index("agent_guard.closing") :]
            assert re.search(r"ERROR\s+agent_guard\s+agent_guard\.closing", output), output
            assert '"category": "quota_exhausted"' in closing
            assert '"job_id":' in closing
            # The backup model is on the same gateway account: the fleet breaker, opened by
            # the primary's out-of-credits answer, refuses it without a request.
            assert [r.status for r in sim.requests_for("llm")] == [200, 429]


class _Console:
    """``examples/agent.py console --text`` on a pseudo-terminal (its prompt reads keys)."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = {**os.environ, **env}
        self._output = bytearray()
        self._master = -1
        self._proc: asyncio.subprocess.Process | None = None
        self._seen = 0

    @property
    def text(self) -> str:
        return _ANSI.sub(b"", bytes(self._output)).decode(errors="replace")

    async def start(self) -> None:
        master, slave = pty.openpty()
        self._master = master
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(AGENT),
            "console",
            "--text",
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=self._env,
            start_new_session=True,
        )
        os.close(slave)
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            self._output.extend(os.read(self._master, 65536))
        except OSError:  # the child closed the terminal
            asyncio.get_running_loop().remove_reader(self._master)

    async def expect(self, text: str, *, within: float = 60.0) -> None:
        """Wait until ``text`` appears after what earlier calls matched."""
        deadline = time.monotonic() + within
        while (found := self.text.find(text, self._seen)) < 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared:\n{self.text[-3000:]}")
            await asyncio.sleep(0.05)
        self._seen = found + len(text)

    async def type(self, line: str) -> None:
        """Type ``line`` at the next prompt, a key at a time, then Enter."""
        await self.expect("Type to talk")
        # The prompt switches the terminal to raw mode when it starts reading, which
        # discards keys sent before: wait for it, then type as a person would.
        await asyncio.sleep(1.0)
        for ch in line:
            os.write(self._master, ch.encode())
            await asyncio.sleep(0.02)
        await self.expect(line)
        os.write(self._master, b"\r")

    async def exited(self, *, within: float) -> int:
        assert self._proc is not None
        async with asyncio.timeout(within):
            return await self._proc.wait()

    async def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
