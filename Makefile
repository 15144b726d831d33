# Bootstraps its own environment: needs only python3, pip and make.
# .tools/ holds a pinned uv; .venv/ is the locked project environment (uv.lock).
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PROJECT_ENVIRONMENT := .venv
# The interpreter itself, not a shim in front of it (pyenv): uv compares it with the one
# .venv was made from, and would otherwise rebuild .venv at every sync.
export UV_PYTHON := $(shell $(PYTHON) -c "import sys; print(sys.executable)")
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint typecheck unit bench dist-check clean

demo: .venv/.synced ## the side-by-side demo, fully offline
	$(UV) run --frozen --no-sync python -m examples.demo

# Lint takes a second and goes first; then the type check and the tests run side by side
# (the tests mostly wait on real-time audio and timeouts). Each prints its output whole when
# it ends; `make test` fails if any of them failed, after all have run.
test: .venv/.synced ## everything CI runs
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory -j2 -k --output-sync=target typecheck unit

# Worker processes (pytest-xdist), handed one test at a time, the slowest first; tests that
# share a wider fixture (the Redis server and its worker processes) go to one worker
# together: see tests/conftest.py. PYTEST_WORKERS=0 runs everything in this process.
# The plugins are named, not discovered: pytest rewrites the asserts of every module of a
# distribution that registers a plugin, all of hypothesis included (~2.5 s per worker, each
# run when bytecode is not written), and anyio's plugin is not used here.
PYTEST_WORKERS ?= 3
PYTEST_PLUGINS := -p xdist.plugin -p pytest_asyncio.plugin -p _hypothesis_pytestplugin
unit: .venv/.synced
	PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(UV) run --frozen --no-sync pytest $(PYTEST_PLUGINS) \
		-n $(PYTEST_WORKERS) --dist loadgroup

lint: .venv/.synced
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .

# Niced: beside the tests (`make test`), the tests that time the guard get the CPU first.
typecheck: .venv/.synced
	nice -n 10 $(UV) run --frozen --no-sync mypy agent_guard plugins examples tests benchmarks docs

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
	$(UV) sync --frozen --all-packages --compile-bytecode
	@touch $@

clean:
	rm -rf $(TOOLS) .venv .mypy_cache .pytest_cache .ruff_cache dist
