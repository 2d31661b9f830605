# pam-twofa: build, lint and test entry points.  `make test` is what CI runs (.ci/run):
# it installs everything it needs on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

# The test interpreter: `python3` on PATH (pyenv on these machines).  The PAM module
# itself runs in Debian's /usr/bin/python3 inside pam_python, whatever this says.
PYTHON ?= python3

APT_PACKAGES := \
	libpam-python libpam-wrapper libnss-wrapper libuid-wrapper python3-pypamtest \
	pamtester openssh-server openssh-client oathtool zbar-tools \
	libpam-google-authenticator libpam-oath \
	python3-pyotp python3-yaml python3-qrcode python3-ntplib python3-click \
	chrony faketime systemd lintian debhelper dh-python pybuild-plugin-pyproject \
	python3-all python3-setuptools fail2ban python3-systemd man-db iproute2 scdoc build-essential \
	libpam0g-dev libpython3.11-dev sudo \
	postgresql-15 postgresql-client-15 python3-psycopg2

# Used only while there is no pyproject.toml; otherwise pyproject's `test` extra rules.
PIP_FALLBACK := pytest hypothesis ruff mypy types-PyYAML paramiko aiosmtpd trustme pyotp qrcode \
	pypng ntplib PyYAML click pexpect psycopg2-binary
PIP := $(PYTHON) -m pip --disable-pip-version-check
PIP_INSTALL := $(PIP) install --root-user-action=ignore --progress-bar off

# Stamps for the pip steps, outside the tree (nothing to ignore in git), one per checkout.
# PIP_LOCK serialises pip runs of all checkouts: they install into the same interpreter.
DEPS_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pam-twofa
CHECKOUT_KEY := $(firstword $(shell printf '%s' '$(CURDIR)' | sha256sum))
PIP_STAMP := $(DEPS_CACHE)/pip-$(CHECKOUT_KEY)
TEST_PIP_STAMP := $(DEPS_CACHE)/pip-test-$(CHECKOUT_KEY)
PIP_LOCK := $(DEPS_CACHE)/pip.lock

# What the package and its `test` extra require, one per line (PIP_FALLBACK without
# pyproject.toml): the test step installs these, never the package itself.
REQUIREMENTS := if [ -f pyproject.toml ]; then $(PYTHON) -c 'import tomllib; \
	    p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	    print("\n".join(p["dependencies"] + p["optional-dependencies"]["test"]))'; \
	  else printf '%s\n' $(PIP_FALLBACK); fi

.PHONY: deps deps-apt deps-pip deps-test-pip lint pyc guard test clean demo bench deb man

deps: deps-apt deps-pip

# apt: a dpkg-query check (~0.1 s); `apt-get update` + install only when something is missing.
deps-apt:
	@missing="$$(comm -13 \
	    <(dpkg-query -W -f='$${Package} $${db:Status-Abbrev}\n' $(APT_PACKAGES) 2>/dev/null \
	      | awk '$$2 == "ii" {print $$1}' | sort -u || true) \
	    <(printf '%s\n' $(APT_PACKAGES) | sort -u))"; \
	if [ -z "$$missing" ]; then \
	  echo "deps-apt: all $(words $(APT_PACKAGES)) Debian packages installed"; \
	else \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "deps-apt: missing (run as root to install):" $$missing >&2; exit 1; \
	  fi; \
	  echo "deps-apt: installing:" $$missing; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# pip: `pip install -e '.[test]'` into $(PYTHON); skipped while pyproject.toml, this
# checkout's path and the interpreter are unchanged and pam_twofa still resolves here
# (another checkout's editable install, e.g. CI's clone, repoints it).
deps-pip:
	@key="$$( { if [ -f pyproject.toml ]; then cat pyproject.toml; else echo '$(PIP_FALLBACK)'; fi; \
	            echo '$(CURDIR)'; \
	            $(PYTHON) -c 'import sys; print(sys.executable, sys.version)'; } | sha256sum)"; \
	origin=""; \
	if [ -f pyproject.toml ]; then \
	  origin="$$(cd / && $(PYTHON) -c 'import importlib.util as u; \
	    s = u.find_spec("pam_twofa"); print(s.origin if s else "")' 2>/dev/null || true)"; \
	fi; \
	if [ -f '$(PIP_STAMP)' ] && [ "$$(cat '$(PIP_STAMP)')" = "$$key" ] \
	   && { [ ! -f pyproject.toml ] || [ "$$origin" = '$(CURDIR)/pam_twofa/__init__.py' ]; }; then \
	  echo "deps-pip: up to date ($(PYTHON))"; \
	else \
	  echo "deps-pip: installing into $$($(PYTHON) -c 'import sys; print(sys.executable)')"; \
	  rm -f '$(PIP_STAMP)'; \
	  mkdir -p '$(DEPS_CACHE)'; \
	  if [ -f pyproject.toml ]; then \
	    flock '$(PIP_LOCK)' $(PIP_INSTALL) -e '.[test]'; \
	  else \
	    flock '$(PIP_LOCK)' $(PIP_INSTALL) $(PIP_FALLBACK); \
	  fi; \
	  printf '%s\n' "$$key" > '$(PIP_STAMP)'; \
	fi

# pip for `make test` (and CI): the requirements only. The tests import pam_twofa from
# this checkout (conftest puts its root first on sys.path; subprocesses run `python -m`
# with cwd = the root; pam_python loads pam_entry.py by path), so the test step does not
# need an installed pam_twofa, and does not re-point the interpreter's one: two checkouts
# can run `make test` at once. Skipped while the requirements and the interpreter are
# unchanged; with all of them present, pip writes nothing anyway.
deps-test-pip:
	@mapfile -t reqs < <($(REQUIREMENTS)); \
	key="$$( { printf '%s\n' "$${reqs[@]}"; \
	            $(PYTHON) -c 'import sys; print(sys.executable, sys.version)'; } | sha256sum)"; \
	if [ -f '$(TEST_PIP_STAMP)' ] && [ "$$(cat '$(TEST_PIP_STAMP)')" = "$$key" ]; then \
	  echo "deps-test-pip: up to date ($(PYTHON))"; \
	else \
	  echo "deps-test-pip: installing the requirements into $$($(PYTHON) -c 'import sys; print(sys.executable)')"; \
	  mkdir -p '$(DEPS_CACHE)'; \
	  flock '$(PIP_LOCK)' $(PIP_INSTALL) "$${reqs[@]}"; \
	  printf '%s\n' "$$key" > '$(TEST_PIP_STAMP).tmp'; \
	  mv '$(TEST_PIP_STAMP).tmp' '$(TEST_PIP_STAMP)'; \
	fi

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy pam_twofa

# pam_python never writes .pyc files, so a source checkout would compile every
# module on every login (~10 ms): compile them once with the interpreter it embeds.
pyc:
	/usr/bin/python3 -m compileall -q pam_twofa

# pam_twofa_guard.so (guard/pam_twofa_guard.c; README "Security notes"): a PAM module in C
# linked with Debian's libpython3.11 (the one pam_python embeds, not a pyenv one on PATH).
# -z nodelete: the interpreter it starts is never finalised, so its code must never be unmapped.
# Flags are expanded when the recipe runs (=, not :=): on a fresh machine deps-apt installs
# python3.11-config in the same make run.
GUARD := build/pam_twofa_guard.so
CC := $(if $(filter default,$(origin CC)),gcc,$(CC))
PY_CONFIG := /usr/bin/python3.11-config
GUARD_CFLAGS = -O2 -g -fPIC -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror \
	$(shell $(PY_CONFIG) --includes)
GUARD_LDFLAGS = -shared -Wl,-z,relro,-z,now,-z,nodelete,--as-needed \
	$(shell $(PY_CONFIG) --ldflags --embed) -lpam

guard: $(GUARD)

$(GUARD): guard/pam_twofa_guard.c Makefile
	@mkdir -p build
	$(CC) $(CPPFLAGS) $(GUARD_CFLAGS) $(CFLAGS) -o '$@.tmp' '$<' $(LDFLAGS) $(GUARD_LDFLAGS)
	mv '$@.tmp' '$@'


# Safe to run from two checkouts at once (README "Development"): no shared install is
# changed, and each pytest run keeps its temp files in a run dir of its own.
test: deps-apt deps-test-pip pyc guard
	@$(MAKE) --no-print-directory lint
	$(PYTHON) -m pytest -q -p no:cacheprovider

# Man pages: every doc/man/NAME.SECTION.scd -> $(MAN_DIR)/NAME.SECTION with scdoc.
MAN_DIR ?= build/man
MAN_PAGES := $(patsubst doc/man/%.scd,$(MAN_DIR)/%,$(wildcard doc/man/*.scd))

man: $(MAN_PAGES)

$(MAN_DIR)/%: doc/man/%.scd
	@mkdir -p '$(MAN_DIR)'
	scdoc < '$<' > '$@.tmp' || { rm -f '$@.tmp'; exit 1; }
	mv '$@.tmp' '$@'

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache build dist ./*.egg-info '$(PIP_STAMP)' \
	  '$(TEST_PIP_STAMP)'
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# pam-twofa against its peers (bench/, README "Performance and reliability"); as root.
# Not part of `make test`.  Results in bench/results/ (JSON, PNG; git-ignored).
# BENCH_ARGS, e.g. BENCH_ARGS='-n 50 --only pam'.
BENCH_ARGS ?=
bench: deps-apt deps-test-pip pyc guard
	@$(PYTHON) -c 'import matplotlib' 2>/dev/null || $(PIP_INSTALL) matplotlib
	$(PYTHON) -m bench $(BENCH_ARGS)

# A sandboxed sshd on 127.0.0.1 with an enrolled demo user (tools/demo.py); all in a temp
# dir, removed on exit.  DEMO_CHECK=1: log in once with ssh + an oathtool code, run
# 'twofa-admin doctor' on the sandbox, then exit.  Its PAM stack has the guard line.
DEMO_CHECK ?=
demo: deps-apt deps-test-pip pyc guard
	$(PYTHON) tools/demo.py $(if $(filter 1 yes true,$(DEMO_CHECK)),--check)

# The .deb (dpkg-buildpackage -us -uc -b on a copy of the tree) into debian-build/.
deb: deps-apt
	tools/build-deb.sh '$(CURDIR)/debian-build'
