# Bootstraps its own environment: needs only python3, pip and make.
# .tools/ holds a pinned uv; .venv/ is the locked project environment (uv.lock).
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PROJECT_ENVIRONMENT := .venv
export UV_PYTHON := $(shell command -v $(PYTHON))
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint typecheck unit bench dist-check clean

demo: .venv/.synced ## the side-by-side demo, fully offline
	$(UV) run --frozen --no-sync python -m examples.demo

test: lint typecheck unit ## everything CI runs

unit: .venv/.synced
	$(UV) run --frozen --no-sync pytest

lint: .venv/.synced
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .

typecheck: .venv/.synced
	$(UV) run --frozen --no-sync mypy agent_guard plugins examples tests benchmarks docs

bench: .venv/.synced
	$(UV) run --frozen --no-sync python -m benchmarks

# Wheels and sdists of every distribution, installed into a clean venv (locked versions,
# from uv's cache when it has them): the public modules and plugins import from there, and
# the demo runs against the installed package.
dist-check: .venv/.synced
	$(PYTHON) .ci/dist_check.py --uv $(UV)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-packages
	@touch $@

clean:
	rm -rf $(TOOLS) .venv .mypy_cache .pytest_cache .ruff_cache dist
