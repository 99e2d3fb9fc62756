# Engage: `make run` starts the embedded platform; `make test` runs the suite on PostgreSQL + Redis.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Tests and benchmarks run on the real services (see .ci/services.sh).
TEST_ENV := DEBUG=1 \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/engage} \
	CELERY_BROKER_URL=$${TEST_BROKER_URL:-redis://127.0.0.1:6379/15}
# Benchmarks run as production does: DEBUG off (with it on, Django keeps every query's SQL).
# The secrets key is fixed (bench gateways are kept from one run to the next) and bench-only.
BENCH_ENV := DEBUG=0 ENGAGE_PUSH_ALLOW_LOOPBACK=1 ENGAGE_WEBHOOK_ALLOW_PRIVATE=1 SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(64))') \
	ENGAGE_SECRETS_KEY=$${BENCH_SECRETS_KEY:-xRk_mN83I_HWgU0AaFPSCqw5LpBdncfMupQVOfgI7Ks=} \
	DATABASE_URL=$${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/engage_bench} \
	CELERY_BROKER_URL=$${BENCH_BROKER_URL:-redis://127.0.0.1:6379/14}

# The fault suite (issue 10) runs as the benchmarks do, on a database and a Redis db of its own.
CHAOS_ENV := DEBUG=0 ENGAGE_PUSH_ALLOW_LOOPBACK=1 ENGAGE_WEBHOOK_ALLOW_PRIVATE=1 SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(64))') \
	ENGAGE_SECRETS_KEY=$${CHAOS_SECRETS_KEY:-xRk_mN83I_HWgU0AaFPSCqw5LpBdncfMupQVOfgI7Ks=} \
	DATABASE_URL=$${CHAOS_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/engage_chaos} \
	CELERY_BROKER_URL=$${CHAOS_BROKER_URL:-redis://127.0.0.1:6379/13}

.PHONY: run test bench services install lint clean messages
.PHONY: chaos

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

services:
	bash .ci/services.sh

# The services, and Debian's Chromium for the Playwright tests.
test: install
	bash .ci/services.sh --browser
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

# The member pages' translations: extract, fill from locale/ru.json, compile (GNU gettext).
messages: install
	DEBUG=1 $(BIN)/python manage.py makemessages -l ru --ignore=.venv --ignore=var \
	  --ignore='tests/*' --ignore='bench/*' --no-obsolete
	$(BIN)/python locale/translate.py ru
	DEBUG=1 $(BIN)/python manage.py compilemessages -l ru --ignore=.venv

lint: install
	$(BIN)/ruff check .
	$(BIN)/bandit -c pyproject.toml -q -r config members loyalty campaigns communications manage.py --severity-level medium

bench: install
	bash .ci/services.sh --bench
	$(BENCH_ENV) $(BIN)/python -m bench $(if $(ONLY),--only $(ONLY)) $(BENCH_ARGS)

# `make chaos [ONLY=worker_killed] [SIZE=small]`: one JSON line per scenario; fails on any
# duplicate or lost message.
chaos: install
	bash .ci/services.sh
	$(CHAOS_ENV) $(BIN)/python -m bench.chaos $(if $(ONLY),--only $(ONLY)) --size $(or $(SIZE),full)

# The embedded default: SQLite, kombu's filesystem queue, one worker with its scheduler,
# demo data, and a gateway that writes .eml files to var/sent-mail/.
run: install
	@DEBUG=1 $(BIN)/python manage.py migrate --no-input -v0
	@DEBUG=1 $(BIN)/python manage.py demo_setup
	@bash -c 'set -m; trap "kill 0" EXIT INT TERM; \
	  DEBUG=1 $(BIN)/celery --quiet -A config worker --beat --pool=solo --loglevel=WARNING \
	    --schedule=var/celerybeat-schedule & \
	  DEBUG=1 $(BIN)/python manage.py runserver 127.0.0.1:8000'

clean:
	rm -rf var
