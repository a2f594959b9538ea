# Two commands on a fresh clone: `make run` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run demo test lint bench clean secret-key ui

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

# On every `make run`: unless ADDON_SECRET_KEY has a value (in the environment or in .env), append a new key to
# .env (creating it if needed). A key already there is never replaced, and the rest of .env is kept.
define ENSURE_SECRET_KEY
import os
from pathlib import Path
from cryptography.fernet import Fernet
from dotenv import dotenv_values
env = Path(".env")
if not os.environ.get("ADDON_SECRET_KEY") and not (env.is_file() and dotenv_values(env).get("ADDON_SECRET_KEY")):
    text = env.read_text() if env.is_file() else ""
    with env.open("a") as out:
        out.write(("" if text.endswith("\n") or not text else "\n") + f"ADDON_SECRET_KEY={Fernet.generate_key().decode()}\n")
    print("generated a new ADDON_SECRET_KEY into .env")
endef
export ENSURE_SECRET_KEY

secret-key: $(VENV)/.installed
	@$(BIN)/python -c "$$ENSURE_SECRET_KEY"

run: $(VENV)/.installed secret-key ui
	PORT=$(PORT) $(BIN)/addon serve --port $(PORT)

# The add-on with a demo Jira site, its own receiver and database (instance/demo.sqlite), in one process: it prints
# the URL to open (docs/demo.md). DEMO_PORT=0 picks any free port.
DEMO_PORT ?= 8765

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed-demo secret-key ui
	$(BIN)/addon demo --port $(DEMO_PORT)

# The admin page's bundle (into the add-on's static folder and forge/static/admin) and Atlassian's manifest
# validator, from ui/'s lock file. npm ci runs
# again only when the lock or package.json changed; --ignore-scripts: no package needs its install script here
# (esbuild's binary comes as an optional dependency). The build is quick, so it always runs.
UI_INSTALLED := ui/node_modules/.installed

$(UI_INSTALLED): ui/package.json ui/package-lock.json
	npm ci --prefix ui --ignore-scripts --no-audit --no-fund
	touch $@

ui: $(UI_INSTALLED)
	node ui/scripts/build.mjs

test: $(VENV)/.installed-test ui
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) instance ui/node_modules forge/static
