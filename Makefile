# OCGate: see README.md. Both entry points install what they need (Debian 12, as root).
PYTHON ?= python3
STATE ?= $(CURDIR)/state
# Every program and library a test runs (tests/prereqs.py fails a test that lacks one):
# the VPN client and the reference server, network and traffic tools, TLS tools, the
# browser, the PROXY/RADIUS peers, OTP, the PAM test module's compiler, the native data
# path's headers (python3-dev, libssl-dev: pip install -e . compiles it), user accounts,
# and the image checks of tests/unit/test_image_static.py.
APT_PACKAGES = openconnect ocserv vpnc-scripts iproute2 iputils-ping nftables iperf3 procps \
	gnutls-bin libgnutls30 openssl ca-certificates chromium libseccomp2 \
	haproxy freeradius libradcli4 oathtool gcc libc6-dev libpam0g libpam0g-dev libpam-modules libcrypt1 \
	passwd util-linux mount systemd genimage mtools dosfstools fdisk e2fsprogs \
	python3-pip python3-dev libssl-dev bind9 bind9-utils bind9-dnsutils pebble miniupnpd-nftables coturn conntrack curl \
	rauc squashfs-tools dbus
STAMP = .deps.stamp

.PHONY: run test deps apt-deps unit e2e lint bench clean

# Checked on every run, not only when the stamp is stale: a package removed since
# (iputils-ping, say) is put back. dpkg-query's "ii" is "installed"; a package removed
# with its conffiles left ("rc") counts as missing, which `dpkg -s` would not notice.
apt-deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing missing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null || exit 1; \
		rm -f $(STAMP); \
	fi

$(STAMP): pyproject.toml Makefile setup.py appliance/vpn/native/_fastpath.c
	@# the packaged ocserv must never run as a service: we only use it as a reference
	@-systemctl disable --now ocserv.service >/dev/null 2>&1; true
	@# nor haproxy: the PROXY protocol tests start their own in a namespace
	@-systemctl disable --now haproxy.service >/dev/null 2>&1; true
	@# nor freeradius: the RADIUS tests run their own in the server's namespace
	@-systemctl disable --now freeradius.service >/dev/null 2>&1; true
	@# nor bind9, coturn or miniupnpd: the reachability tests run their own in namespaces
	@-systemctl disable --now named.service coturn.service miniupnpd.service >/dev/null 2>&1; true
	@# Debian 12's own python3 is "externally managed"; this appliance's root installs into it
	PIP_BREAK_SYSTEM_PACKAGES=1 $(PYTHON) -m pip install -q --disable-pip-version-check \
		-e '.[test]'
	@touch $(STAMP)

deps: apt-deps
	@$(MAKE) --no-print-directory $(STAMP)

# issue 21: the .po files in git -> .mo next to them (not committed; the image build
# compiles them too). `make catalog` re-extracts the marked strings into every language.
.PHONY: translations catalog
translations: deps
	$(PYTHON) -m appliance.web.catalogs compile

catalog: deps
	$(PYTHON) -m appliance.web.catalogs update

run: deps translations
	$(PYTHON) -m appliance.devrun --state $(STATE)

test: deps translations
	$(PYTHON) -m ruff check appliance tests bench image
	$(PYTHON) -m mypy appliance bench
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

unit: deps translations
	$(PYTHON) -m pytest -q tests/unit

e2e: deps
	$(PYTHON) -m pytest -q tests/e2e

lint: deps
	$(PYTHON) -m ruff check appliance tests bench image

bench: deps
	$(PYTHON) -m bench.compare --modes "dtls tls" --rounds 3 --seconds 8
	$(PYTHON) -m bench.memory --sessions 50 --breakdown
	$(PYTHON) -m bench.many --sessions 100 --seconds 10

# issue 11: 50 real openconnect clients x 20 login/traffic/logout cycles (docs/reliability.md)
SOAK_CLIENTS ?= 50
SOAK_CYCLES ?= 20
.PHONY: soak
soak: deps
	$(PYTHON) -m tests.soak.driver --clients $(SOAK_CLIENTS) --cycles $(SOAK_CYCLES)

# Long fuzz run of every parser (docs/fuzzing.md): 1e6 inputs per target by default,
# capped at FUZZ_SECONDS per target; then a coverage-guided atheris pass, if installed.
FUZZ_COUNT ?= 1000000
FUZZ_SECONDS ?= 300
FUZZ_ATHERIS_SECONDS ?= 30
FUZZ_JOBS ?= 2
.PHONY: fuzz
fuzz: deps
	$(PYTHON) -m tests.fuzz --engine mutational --count $(FUZZ_COUNT) \
		--seconds $(FUZZ_SECONDS) --jobs $(FUZZ_JOBS)
	@if $(PYTHON) -c 'import atheris' 2>/dev/null; then \
		$(PYTHON) -m tests.fuzz --engine atheris --count $(FUZZ_COUNT) \
			--seconds $(FUZZ_ATHERIS_SECONDS) --jobs $(FUZZ_JOBS) \
			--json build/fuzz-last-atheris-run.json; fi

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache

# ---- appliance image (issue 8; docs/image.md). Not part of `make test`: minutes of CPU.
ARCH ?= arm64
IMAGE_OUT ?= $(CURDIR)/build/image
IMAGE_CACHE ?= $(CURDIR)/build/cache
# the update signing CA and key (made by the first build; outside the tree, survives clean)
IMAGE_KEYS ?= $(HOME)/.local/share/ocgate/image-signing
# the release version written into the image and the bundle (default: pyproject's)
RELEASE ?=
IMAGE_ARGS = --arch $(ARCH) --out $(IMAGE_OUT) --cache $(IMAGE_CACHE) --keys $(IMAGE_KEYS) \
	$(if $(RELEASE),--release $(RELEASE))
IMAGE_APT = mmdebstrap qemu-user-static binfmt-support qemu-system-arm qemu-system-x86 \
	genimage mtools dosfstools e2fsprogs fdisk xz-utils zstd arch-test rauc squashfs-tools \
	u-boot-qemu u-boot-tools
IMAGE_STAMP = build/.image-deps.stamp

.PHONY: image bundle image-test image-deps buildroot-lint

$(IMAGE_STAMP):
	@if ! dpkg -s $(IMAGE_APT) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(IMAGE_APT) >/dev/null; \
	fi
	$(PYTHON) -m pip install -q --disable-pip-version-check kconfiglib==14.1.0
	@mkdir -p build && touch $(IMAGE_STAMP)

image-deps: $(IMAGE_STAMP)

image: deps image-deps
	$(PYTHON) image/mkimage.py $(IMAGE_ARGS)

# the signed RAUC update bundle of the same root file system (docs/image.md, A/B updates)
bundle: deps image-deps
	$(PYTHON) image/mkimage.py $(IMAGE_ARGS) --stage bundle

# the A/B test installs this release over the image's (tests/image/test_update.py)
NEXT_RELEASE ?= next
image-test: deps image-deps
	@test -f $(IMAGE_OUT)/ocgate-$(ARCH).img || $(MAKE) image
	@test -f $(IMAGE_OUT)/ocgate-$(ARCH)-$(NEXT_RELEASE).raucb || \
		$(MAKE) bundle RELEASE=$(NEXT_RELEASE)
	OCGATE_IMAGE_TEST=1 OCGATE_IMAGE_DIR=$(IMAGE_OUT) OCGATE_IMAGE_ARCH=$(ARCH) \
		OCGATE_IMAGE_KEYS=$(IMAGE_KEYS) \
		$(PYTHON) -m pytest -q -s -p no:cacheprovider tests/image

buildroot-lint: deps image-deps
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit/test_image_static.py
