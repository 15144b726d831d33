"""Benchmarks for agent-guard, measured side by side in one process.

``python -m benchmarks`` (``make bench``) runs the failure scenarios (stock livekit-agents
vs an emulation of upstream PR #6012 vs agent-guard), the per-event overhead and memory,
and the scale test, and rewrites ``benchmarks/results/``. Two focused scripts run alone:
``python -m benchmarks.classify_cost`` and ``python -m benchmarks.fallback_requests``.
"""
