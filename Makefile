# Two commands do all set-up on a fresh machine (Python 3.11 with pip):
#   make demo   — install, then run the main job on the embedded model
#   make test   — install, then run the test suite (fast tests and the real-model ones)
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

# llama.cpp is compiled from source. GGML_NATIVE=OFF: a native build on CPUs that advertise
# AMX (as this machine's Xeons do) crashes in ggml's AMX kernels (ggml-org/llama.cpp#20824);
# the portable AVX2 build runs everywhere. --no-cache-dir keeps pip from reusing a wheel built
# with other flags, since pip's wheel cache does not key on CMAKE_ARGS.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install demo test lint

$(BIN)/promptopt: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --no-cache-dir "llama-cpp-python[server]==0.3.36"
	$(BIN)/pip install -e ".[dev]"
	touch $(BIN)/promptopt

install: $(BIN)/promptopt

demo: install
	$(BIN)/promptopt run

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
