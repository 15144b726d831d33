"""Micro-benchmarks for agent-guard (run each module with ``python -m benchmarks.<name>``)."""
