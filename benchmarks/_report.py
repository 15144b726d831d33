"""Markdown output shared by the benchmark sections: tables and the environment header."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["RESULTS", "environment", "percentile", "table", "write"]

RESULTS = Path(__file__).parent / "results"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def environment(*, repeat: str) -> str:
    """The header every results file starts with: when, where, what, how often."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count() or 0
    try:
        # Cores this process may actually use (a container's CPU set can be smaller).
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cores
    return "\n".join(
        [
            f"- date: {now}",
            f"- machine: {platform.machine()}, {cores} cores ({usable} usable), "
            f"{platform.system()} {platform.release()}",
            f"- python: {sys.version.split()[0]}",
            f"- livekit-agents: {_version('livekit-agents')}, "
            f"livekit-plugins-openai: {_version('livekit-plugins-openai')}, "
            f"agent-guard: {_version('livekit-agent-guard')}",
            f"- repeat: {repeat}",
        ]
    )


def table(rows: Sequence[Sequence[str]], *, align_right_from: int = 1) -> str:
    """A Markdown table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            rule = ["-" * w + (":" if i >= align_right_from else "-") for i, w in enumerate(widths)]
            lines.append("|" + "|".join(f"-{r}" for r in rule) + "|")
    return "\n".join(lines)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear interpolation; needs at least one value."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(int(p) - 1, 0)]


def write(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return path
