# debchunk: `make demo` builds two images of an embedded sample and reports the
# update between them (demo-output/), `make test` runs every check.
# Both install what they need (Debian packages, a venv) by themselves.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt
# Debian packages the code, tests and benches use (DESIGN.md): every program
# they run that is not `Priority: required` in Debian 12 (python3, git and pigz
# are not on every machine; qemu-user runs the compressors under emulated CPUs);
# tests/test_makefile.py checks this list.
APT_PACKAGES := python3 ostree gir1.2-ostree-1.0 python3-gi python3-apt python3-venv \
	skopeo umoci docker-registry podman buildah mmdebstrap chromium git pigz zstd qemu-user golang-go e2fsprogs gpg gpg-agent gpgconf

.PHONY: all demo test lint typecheck pytest bench bench-short clean package

all: test

# Re-checked whenever this list changes.
$(APT_STAMP): Makefile
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml constraints.txt $(APT_STAMP)
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

demo: $(STAMP)
	$(PY) -m tests.demo --output demo-output

lint: $(STAMP)
	$(VENV)/bin/ruff check mapping chunker encapsulate benches tests
	$(VENV)/bin/ruff format --check mapping chunker encapsulate benches tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest

# The short benchmark profile: ratios against peers measured in the same run;
# fails only on a clear regression (benches/suite.py).
bench-short: $(STAMP)
	$(PY) -m benches.suite --profile short --json bench-results.json

test: lint typecheck pytest bench-short

# The Debian package, built by dpkg-buildpackage in a trixie chroot (cached,
# tests/debpackage.py) and checked by lintian there, copied into dist/;
# tests/test_package_deb.py builds it the same way.
package: $(STAMP)
	$(PY) -m tests.debpackage --output dist

bench: $(STAMP)
	$(PY) -m pytest -q benches/test_mapping_bench.py
	$(PY) -m benches.suite --profile full --json bench-results.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache demo-output dist
