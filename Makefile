# OCGate: see README.md. Both entry points install what they need (Debian 12, as root).
PYTHON ?= python3
STATE ?= $(CURDIR)/state
APT_PACKAGES = openconnect iperf3 ocserv vpnc-scripts iproute2 nftables gnutls-bin chromium libseccomp2
STAMP = .deps.stamp

.PHONY: run test deps unit e2e lint bench clean

$(STAMP): pyproject.toml
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	@# the packaged ocserv must never run as a service: we only use it as a reference
	@-systemctl disable --now ocserv.service >/dev/null 2>&1; true
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

deps: $(STAMP)

run: deps
	$(PYTHON) -m appliance.devrun --state $(STATE)

test: deps
	$(PYTHON) -m ruff check appliance tests bench
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

unit: deps
	$(PYTHON) -m pytest -q tests/unit

e2e: deps
	$(PYTHON) -m pytest -q tests/e2e

lint: deps
	$(PYTHON) -m ruff check appliance tests bench

bench: deps
	$(PYTHON) -m bench.compare

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache
