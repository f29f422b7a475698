# The two commands of the README: `make run` and `make test`. Each installs what it needs, and only that:
# `make run` the runtime and its local stand-ins, `make test` the test and benchmark tools on top. Both install the
# locked versions, every file checked against its hash (requirements*.lock, made by `make lock`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
RUN_STAMP := $(VENV)/.run-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
DEV_STAMP := $(VENV)/.dev-$(shell cat requirements.lock requirements-dev.lock pyproject.toml | sha256sum | cut -c1-12)
# checkov lives in a virtualenv of its own (its pins conflict with the test tools'), from its own hashed lock.
CHECKOV_VENV := $(VENV)/tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.lock-$(shell cat requirements-checkov.lock | sha256sum | cut -c1-12)
# The locks resolve against the package index as it stood at LOCK_DATE (uv's --exclude-newer, written into each lock's
# header), so the same requirement files always give the same lock, whatever the index publishes later.
LOCK_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 --exclude-newer $(LOCK_DATE)

.PHONY: run demo test lint install clean bench chromium python-version lock

python-version:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vy-finance-payments needs Python 3.11 or newer; $(PYTHON) is " + sys.version.split()[0])'

$(RUN_STAMP): requirements.lock pyproject.toml | python-version
	@echo "== installing what running needs into $(VENV): requirements.lock (runtime and stand-ins, hashes checked)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements.lock
	$(PIP) --no-deps -e .
	rm -f $(VENV)/.run-* && touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.lock
	@echo "== installing the test and benchmark tools into $(VENV): requirements-dev.lock (hashes checked)"
	$(PIP) --require-hashes -r requirements-dev.lock
	rm -f $(VENV)/.dev-* && touch $(DEV_STAMP)

$(CHECKOV_STAMP): requirements-checkov.lock | python-version
	@echo "== installing checkov into $(CHECKOV_VENV): requirements-checkov.lock (hashes checked)"
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-checkov.lock
	rm -f $(CHECKOV_VENV)/.lock-* && touch $(CHECKOV_STAMP)

# After a change to requirements*.txt (or to take newer releases on purpose): resolve afresh as of now and write the
# locks with every file's hash. The old locks are removed first so that uv does not prefer their versions.
lock: $(DEV_STAMP)
	rm -f requirements.lock requirements-dev.lock requirements-checkov.lock
	$(LOCK) requirements.txt requirements-local.txt -o requirements.lock
	$(LOCK) requirements-dev.txt -o requirements-dev.lock
	$(LOCK) requirements-checkov.txt -o requirements-checkov.lock

install: $(DEV_STAMP) $(CHECKOV_STAMP)

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The browser tests drive Debian's Chromium (no browser download at run time).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

test: $(DEV_STAMP) $(CHECKOV_STAMP) lint chromium
	$(PY) -m pytest

run: $(RUN_STAMP)
	$(PY) -m stand_ins.run

demo: $(RUN_STAMP)
	$(PY) -m stand_ins.demo


clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

.PHONY: bench
bench: $(DEV_STAMP)
	$(PY) -m bench

# Reliability drills (issue 7), full sizes; `make test` runs their fast subset.
.PHONY: drills
drills: $(DEV_STAMP)
	DRILLS_FULL=1 $(PY) -m pytest tests/drills -s
