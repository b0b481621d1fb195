# `make run` installs everything and opens mixtui on the bundled model; `make test` installs
# everything and runs the whole suite. Needs only python3 >= 3.11, make and a C toolchain:
# uv is used from PATH, or bootstrapped into .tools/ on first use.

UV_SYSTEM := $(shell command -v uv 2>/dev/null)
UV := $(if $(UV_SYSTEM),$(UV_SYSTEM),.tools/venv/bin/uv)
PYTEST_ARGS ?=
# The suite runs in two worker processes, each test file in one of them (pytest-xdist):
# most tests wait on an engine process or a subprocess, so two at a time take about 55 % of
# the time on two cores. PYTEST_WORKERS=0 runs it in this process alone.
PYTEST_WORKERS ?= 2

.PHONY: run test install lint bench clean

run: install
	$(UV) run --frozen mixtui --model nano

test: install
	$(UV) run --frozen pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

install: $(UV)
	$(UV) sync --frozen

lint: install
	$(UV) run --frozen ruff check mixtui tests benchmarks scripts
	$(UV) run --frozen mypy mixtui
	$(UV) run --frozen lint-imports

bench: install
	$(UV) run --frozen python benchmarks/capture_overhead.py

# A venv where python3 has the venv module; else (Debian without python3-venv) pip --target.
.tools/venv/bin/uv:
	python3 -m venv .tools/venv && .tools/venv/bin/python -m pip install --quiet uv || { \
	  rm -rf .tools/venv .tools/pip && python3 -m pip install --quiet --target .tools/pip uv && \
	  mkdir -p .tools/venv/bin && ln -sf ../../pip/bin/uv .tools/venv/bin/uv; }

clean:
	rm -rf .tools .venv .pytest_cache .mypy_cache .ruff_cache
