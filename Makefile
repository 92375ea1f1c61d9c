# Two commands a new user needs (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit clean

$(STAMP): pyproject.toml requirements.lock scripts/install-system-deps.sh
	./scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[train,dev,triton,postgres]'
	# tritonserver for the Triton tests: the wheel pins numpy<2 for its Python API, which is not used.
	$(BIN)/python -m pip install -q --no-deps nvidia-pytriton==0.7.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/triage demo --out demo-out

lint: $(STAMP)
	$(BIN)/ruff check triage training tests benchmarks
	$(BIN)/ruff format --check triage training tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) demo-out triage-out work
