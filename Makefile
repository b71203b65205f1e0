# Synapse — the two commands: `make run` (quick start) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := .synapse
SYNAPSE_PORT ?= 8080
SYNAPSE_WORKERS ?= 2
# The PostgreSQL pass runs with two roles, as production does: the owner (DATABASE_ADMIN_URL)
# creates, migrates and empties the test database; the tests and the servers they start work as
# the serving role (DATABASE_URL), which owns nothing (tests/roles.py). A DATABASE_URL given
# alone runs everything as that one role.
ifdef DATABASE_URL
TEST_DATABASE_URL := $(DATABASE_URL)
TEST_DATABASE_ADMIN_URL := $(DATABASE_ADMIN_URL)
else
TEST_DATABASE_URL := postgres://synapse_serving@127.0.0.1:5432/synapse_test
TEST_DATABASE_ADMIN_URL := $(or $(DATABASE_ADMIN_URL),postgres://postgres@127.0.0.1:5432/synapse_test)
endif

export SYNAPSE_PORT SYNAPSE_WORKERS

.PHONY: run test coverage lint bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# A per-checkout secret, generated once, so the quick start never runs on the development secret.
$(STATE)/secret_key:
	@mkdir -p $(STATE)
	@$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	@chmod 600 $@

run: $(VENV)/.runtime $(STATE)/secret_key
	@export SYNAPSE_SECRET_KEY="$${SYNAPSE_SECRET_KEY:-$$(cat $(STATE)/secret_key)}"; \
	$(BIN)/python manage.py migrate --no-input -v 0 && \
	$(BIN)/python manage.py collectstatic --no-input -v 0 && \
	$(BIN)/python manage.py seed_demo --port $(SYNAPSE_PORT) && \
	echo "Synapse on http://127.0.0.1:$(SYNAPSE_PORT)/v1 — admin at http://127.0.0.1:$(SYNAPSE_PORT)/admin/" && \
	exec $(BIN)/gunicorn synapse.asgi:application -c synapse/gunicorn_conf.py

# The console's browser tests drive the distribution's Chromium (never a downloaded browser);
# installed here only when it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

test: $(VENV)/.dev chromium
	@DATABASE_URL=$(TEST_DATABASE_URL) DATABASE_ADMIN_URL=$(TEST_DATABASE_ADMIN_URL) $(BIN)/python tests/ensure_postgres.py
	DATABASE_URL=$(TEST_DATABASE_URL) DATABASE_ADMIN_URL=$(TEST_DATABASE_ADMIN_URL) $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	@mkdir -p $(STATE)
	DATABASE_URL=sqlite:///$(CURDIR)/$(STATE)/test.sqlite3 DATABASE_ADMIN_URL= $(BIN)/pytest -q -m sqlite -p no:cacheprovider

# The PostgreSQL pass with a line-coverage report: tracing every line makes the in-process tests
# about twice as slow, so `make test` (CI) runs without it.
coverage: $(VENV)/.dev
	$(MAKE) test PYTEST_ARGS="--cov --cov-report=term:skip-covered"

# mypy imports the settings, which refuse the development secret: a lint-only key, never served.
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	SYNAPSE_SECRET_KEY=lint-only-not-a-secret $(BIN)/mypy

# The peer benchmark loads the servers with wrk when it can (else a slower httpx loop).
bench: $(VENV)/.dev
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq wrk) || echo "wrk not installed: the peer benchmark uses an httpx load loop"
	@for script in bench/*_bench.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(STATE) db.sqlite3 db.sqlite3-* .coverage .pytest_cache .ruff_cache
