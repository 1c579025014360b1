# The two commands of the README: `make demo` and `make test`. Both create the virtualenv and
# install envleads into it when needed, so they work on a fresh clone with only Python 3.11 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-envleads
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/envleads demo

test: $(STAMP)
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# Long reliability runs (not part of `make test`): bench/soak.py through `envleads batch --engine rounds`
# (default 1,000,000 complaints) and through `envleads stream` on the embedded broker (200,000),
# peak RSS, events/s, complaints lost (must be 0). Smaller: make soak SOAK_COUNT=100000 SOAK_STREAM_COUNT=20000
SOAK_COUNT ?= 1000000
SOAK_STREAM_COUNT ?= 200000
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python bench/soak.py --count $(SOAK_COUNT)
	$(BIN)/python bench/soak.py --stream --count $(SOAK_STREAM_COUNT)
