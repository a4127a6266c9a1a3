# kapal — set-up, checks and benchmarks. `make up` and `make test` are all a fresh Debian machine needs.
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
KUBECTL_VERSIONS ?= 1.27 1.30 1.33
KUBECTL_VERSIONS_FULL ?= 1.27 1.28 1.29 1.30 1.31 1.32 1.33
PYTEST_ARGS ?=

# Debian packages the project, its tests and its benchmarks call.
APT_PACKAGES := runc crun podman conmon busybox-static docker-registry skopeo umoci lxcfs \
	containernetworking-plugins iptables etcd-server openssl curl iproute2 kmod procps \
	libseccomp2 hyperfine tini

.PHONY: deps apt-deps venv lint test test-full bench up down clean

deps: apt-deps venv

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.deps-stamp $(VENV)/bin/kapal-runtime $(VENV)/bin/kapal

$(VENV)/.deps-stamp: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# The runtime is started once per container: a launcher that skips site-packages
# (-S), the environment (-E) and the script's directory on sys.path (-P) saves
# ~10 ms per call over the pip wrapper. It needs only the stdlib, so it prefers
# the distro's interpreter of the same version when there is one (Debian's is
# built with more modules in the binary and starts ~1 ms faster than a pyenv
# build), else the venv's.
$(VENV)/bin/kapal-runtime: $(VENV)/.deps-stamp Makefile
	@v=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	py=/usr/bin/python$$v; [ -x $$py ] || py=$$(readlink -f $(PY)); \
	printf '#!%s -SEP\nimport sys\nsys.path.insert(0, %s)\nfrom kapal.cli.runtime import main\nsys.exit(main())\n' \
		"$$py" "'$(ROOT)/src'" > $@.tmp && chmod 755 $@.tmp && mv $@.tmp $@

# `kapal` starts on every `kapal run`: a launcher of the same kind (-SP) on the venv's interpreter. The docker
# verbs need only the stdlib; kapal/cli/main.py loads site-packages for the others. It writes its bytecode
# even under PYTHONDONTWRITEBYTECODE: a stale cache costs ~15 ms of compiling on every call.
$(VENV)/bin/kapal: $(VENV)/.deps-stamp Makefile
	@printf '#!%s -SP\nimport sys\nsys.dont_write_bytecode = False\nsys.path.insert(0, %s)\nfrom kapal.cli.main import launch\nlaunch()\n' \
		"$(PY)" "'$(ROOT)/src'" > $@.tmp && chmod 755 $@.tmp && mv $@.tmp $@

lint: venv
	$(VENV)/bin/ruff check src tests bench
	cd $(ROOT) && $(VENV)/bin/lint-imports

test: venv
	KAPAL_KUBECTL_VERSIONS="$(KUBECTL_VERSIONS)" $(VENV)/bin/pytest -m "not full" $(PYTEST_ARGS)

test-full: venv
	KAPAL_KUBECTL_VERSIONS="$(KUBECTL_VERSIONS_FULL)" $(VENV)/bin/pytest $(PYTEST_ARGS)

bench: venv
	@for b in bench/*/run; do echo "== $$b"; $$b || exit 1; done

up: deps
	$(VENV)/bin/kapal up

down: venv
	$(VENV)/bin/kapal down

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
