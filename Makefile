# Eunomia — `make run` and `make test` are all you need (as root, on Debian/Ubuntu).
SYSTEM_PYTHON ?= /usr/bin/python3
VENV          ?= .venv
PY            := $(VENV)/bin/python
STAMP         := $(VENV)/.installed
PYTEST_ARGS   ?=
# `make install` (see docs/operations.md): DESTDIR stages the files for packaging without touching the host
DESTDIR       ?=
PREFIX        ?= /opt/eunomia
BINDIR        ?= /usr/local/bin
UNITDIR       ?= /etc/systemd/system
PURGE         ?= 0
INSTALL_ENV   = DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" BINDIR="$(BINDIR)" UNITDIR="$(UNITDIR)" \
                SYSTEM_PYTHON="$(SYSTEM_PYTHON)" PURGE="$(PURGE)"

.PHONY: setup host run test unit bench bench-deps lint clean install uninstall

setup: host $(STAMP)

host:
	@bash systemd/prepare-host.sh

# bcc's Python bindings live in the system Python's dist-packages: the venv must see them.
$(STAMP): pyproject.toml
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -c "import bcc" || { echo "bcc bindings not visible in $(VENV)"; exit 1; }
	@touch $(STAMP)

run: setup
	$(VENV)/bin/eunomiactl run

test: setup
	$(PY) -m pytest $(PYTEST_ARGS) tests

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

bench: setup bench-deps
	$(PY) bench/run.py
	$(PY) bench/syscount_overhead.py
	$(PY) bench/sched_overhead.py
	$(PY) bench/export_path.py
	$(PY) bench/bpf_stats.py

# peers measured beside Eunomia (not needed to run or test it)
bench-deps:
	@command -v bpftrace >/dev/null && command -v syscount-bpfcc >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bpfcc-tools bpftrace gcc; }

# the agent as a systemd service: code + its own venv in $(PREFIX), unit, default config (never overwritten)
install:
	$(if $(DESTDIR),,@bash systemd/prepare-host.sh)
	@$(INSTALL_ENV) bash systemd/install.sh install

# keeps /var/lib/eunomia and an edited /etc/eunomia/eunomia.yaml unless PURGE=1
uninstall:
	@$(INSTALL_ENV) bash systemd/install.sh uninstall

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
