# Two commands do all set-up on a fresh machine (Python 3.11 with pip):
#   make demo   — install, then run the main job on the embedded model
#   make test   — install, then run the test suite (fast tests and the real-model ones)
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

# The embedded model is served by llama.cpp's own llama-server, compiled from pinned source
# (scripts/build_llama_server.sh says how and why; about 6-10 minutes on 2 cores, once).

.PHONY: install demo test lint bench-tools schema

$(BIN)/promptopt: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install -e ".[dev]"
	touch $(BIN)/promptopt

$(BIN)/llama-server: scripts/build_llama_server.sh | $(BIN)/promptopt
	scripts/build_llama_server.sh $(VENV) llama-server

install: $(BIN)/promptopt $(BIN)/llama-server

# llama.cpp's bench tools, for benchmarks/model_throughput.py
bench-tools: install
	scripts/build_llama_server.sh $(VENV) llama-bench llama-batched-bench

demo: install
	$(BIN)/promptopt run

# Three workers on two cores: tests wait on subprocesses and servers part of the time. (Each
# embedded-model test counts only the llama.cpp servers of its own PROMPTOPT_HOME, so they may run
# side by side.)
TEST_WORKERS ?= 3
test: install
	$(BIN)/pytest -n $(TEST_WORKERS)

lint: install
	$(BIN)/ruff check .

# The JSON report's schema, exported from promptopt.results (a test checks it is current)
schema: install
	$(BIN)/python -c "import sys, promptopt.results as r; sys.stdout.write(r.schema_json())" > docs/report.schema.json
