# The two commands of the README: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements*.txt pyproject.toml | sha256sum | cut -c1-12)

.PHONY: run demo test lint install clean bench chromium

$(STAMP): requirements.txt requirements-dev.txt requirements-local.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .

	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

# The browser tests drive Debian's Chromium (no browser download at run time).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

test: $(STAMP) lint chromium
	$(PY) -m pytest

run: $(STAMP)
	$(PY) -m stand_ins.run

demo: $(STAMP)
	$(PY) -m stand_ins.demo


clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

.PHONY: bench
bench: $(STAMP)
	$(PY) -m bench

# Reliability drills (issue 7), full sizes; `make test` runs their fast subset.
.PHONY: drills
drills: $(STAMP)
	DRILLS_FULL=1 $(PY) -m pytest tests/drills -s
