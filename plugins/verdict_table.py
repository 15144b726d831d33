"""Print the Markdown table of every plugin fixture and the Verdict it gets (for the README).

Each fixture's exception is built the way its livekit plugin raises it and classified
with that plugin's classifiers in front of the core chain, exactly as a user composes
them. Run from the repository root::

    .venv/bin/python plugins/verdict_table.py
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

from agent_guard import DEFAULT_CLASSIFIERS, Classifier, Kind, classify

PROVIDERS = ("openai", "anthropic", "google", "elevenlabs", "cartesia", "deepgram")


class _Fixture(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> Kind: ...
    @property
    def label(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    def error(self) -> BaseException: ...


def rows() -> list[tuple[str, str, str, str, str, str]]:
    """One row per fixture: provider, fixture id, status, category, terminal, counts."""
    table = []
    for provider in PROVIDERS:
        plugin = importlib.import_module(f"agent_guard_{provider}")
        fixtures: Sequence[_Fixture] = importlib.import_module(
            f"agent_guard_{provider}.fixtures"
        ).FIXTURES
        chain: tuple[Classifier, ...] = (*plugin.CLASSIFIERS, *DEFAULT_CLASSIFIERS)
        for fx in fixtures:
            verdict = classify(fx.error(), kind=fx.kind, classifiers=chain, label=fx.label)
            table.append(
                (
                    provider,
                    f"`{fx.id}`",
                    "—" if fx.status is None else str(fx.status),
                    f"`{verdict.category.value}`",
                    "yes" if verdict.terminal else "no",
                    "yes" if verdict.counts else "no",
                )
            )
    return table


def main() -> None:
    header = ("provider", "fixture", "status", "category", "terminal", "counts")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows():
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
