# The two commands a newcomer needs: `make run` and `make test`. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test setup migrate bench lint screenshots clean

# Re-install only when pyproject.toml changed (the stamp is older than it).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	@touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(BIN)/dispatch db upgrade

run: migrate
	$(BIN)/dispatch demo --if-empty
	$(BIN)/dispatch

test: migrate
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/ssh.py

lint: setup
	$(BIN)/ruff check app tests benchmarks migrations
	$(BIN)/mypy app

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
