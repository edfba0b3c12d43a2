# Every target is a verb. `make run` and `make test` work on a fresh Debian
# machine: the first run installs the OS packages and the virtualenv.

PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
OS_TOOLS   := haproxy memcached git ss pg_ctlcluster sshd ssh cc
OS_PKGS    := haproxy memcached git iproute2 postgresql openssh-server openssh-client gcc libc6-dev libnss-wrapper
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
export HOSTD_DATA ?= $(CURDIR)/var

BENCH_TOOLS := nginx fcgiwrap wrk
BENCH_PKGS  := nginx fcgiwrap wrk
# The browser tests (tests/web) drive Debian's chromium through its chromedriver.
BROWSER_TOOLS := chromium chromedriver
BROWSER_PKGS  := chromium chromium-driver fonts-dejavu-core

.PHONY: install test-deps os-deps bench-deps browser-deps run up down test test-external-db check-routes bench lint clean reload chaos soak attack cluster cluster-down cluster-check cluster-measure
MINUTES    ?= 5

install: os-deps $(STAMP)

# $(call ensure-packages,COMMANDS,PACKAGES,SERVICES): install PACKAGES with
# apt-get when one of COMMANDS is missing, then stop and disable the
# SERVICES the packages start (hostd runs its own instances on its own ports).
define ensure-packages
@missing=""; for t in $(1); do command -v $$t >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
    echo "installing OS packages:$$missing"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null || exit 1; \
    for s in $(3); do systemctl disable --now $$s >/dev/null 2>&1 || service $$s stop >/dev/null 2>&1 || true; done; \
  else \
    echo "missing:$$missing. Install them with your package manager (Debian: sudo apt-get install $(2)) and rerun." >&2; exit 1; \
  fi; \
fi
endef

# sshd is only ever hostd's own (hostd/ops/sshd.py): a freshly installed
# openssh-server's system service is stopped like the others.
os-deps:
	$(call ensure-packages,$(OS_TOOLS),$(OS_PKGS),haproxy memcached postgresql ssh)
	@ls /usr/lib/*/libnss_wrapper.so >/dev/null 2>&1 || { echo "installing OS packages: libnss-wrapper"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnss-wrapper >/dev/null; }

# Only `make bench` needs the reference servers (nginx, fcgiwrap) and wrk.
bench-deps:
	$(call ensure-packages,$(BENCH_TOOLS),$(BENCH_PKGS),nginx fcgiwrap.socket fcgiwrap)

# Only the whole suite needs a browser (tests/web), never the runtime.
browser-deps:
	$(call ensure-packages,$(BROWSER_TOOLS),$(BROWSER_PKGS),)

# The runtime (`make run`, `make up`) installs hostd and what it runs with,
# no more; the targets that test, lint or measure add the test extra
# (pyproject.toml) on top, once, with a stamp of their own.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

test-deps: install $(TEST_STAMP)

$(TEST_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: install
	$(PY) -m hostd.ops.stack run

up: install
	$(PY) -m hostd.ops.stack up

down:
	@test -x $(PY) && $(PY) -m hostd.ops.stack down || true

reload: install
	$(PY) -m hostd.ops.stack reload

# The whole suite, as two pytest sessions side by side (tests/split.py): the
# stack tests, and everything else with singlemalt's coverage required.
test: test-deps browser-deps lint
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" HOSTD_SOAK_SECONDS=10 $(PY) -m tests.split --coverage -q

# The whole suite again, with every database (the stacks' too) on a
# PostgreSQL given by HOSTD_DATABASE_URL, as an operator's would be: CI runs
# this after `make test`.
test-external-db: test-deps browser-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" HOSTD_SOAK_SECONDS=10 $(PY) -m tests.external_db -- $(PY) -m tests.split -q

chaos: test-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" HOSTD_CHAOS_ALL=1 $(PY) -m pytest -q -s tests/chaos/test_faults.py tests/chaos/test_database_outage.py tests/chaos/test_memcached_cluster.py

soak: test-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" HOSTD_SOAK_SECONDS=$$(( $(MINUTES) * 60 )) $(PY) -m pytest -q -s tests/chaos/test_soak.py

# Hostile load against a real stack while 16 clients clone, fetch and push;
# HOSTD_ATTACK_SECONDS per phase (default 60). Exits 0 only if the targets are met.
attack: test-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" $(PY) -m tests.chaos.attack

# The multi-host lab (tests/cluster/lab.py): two load balancers, three shard
# hosts, a web host, PostgreSQL and three memcached nodes, each in its own
# network namespace (root only). cluster-check builds it when it is not up,
# runs every check of tests/cluster/check.py, and removes what it built.
cluster: test-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" $(PY) -m tests.cluster up

cluster-down:
	@test -x $(PY) && PATH="$$PATH:/usr/sbin" $(PY) -m tests.cluster down || true

cluster-check: test-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" $(PY) -m tests.cluster check

# What one request costs each host of the lab (the README's capacity model).
cluster-measure: test-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" $(PY) -m tests.cluster measure

check-routes: test-deps
	PATH="$$PATH:/usr/sbin" $(PY) -m pytest -q tests/haproxy/test_routes.py

bench: test-deps bench-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin" $(PY) -m tests.bench

lint: test-deps
	$(VENV)/bin/ruff check singlemalt hostd tests
	$(VENV)/bin/mypy singlemalt hostd tests/bench tests/cluster
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache .coverage
