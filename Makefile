# Prewarm. `make demo` runs the main job, `make test` every test; both install
# what they need (apt packages, Go tools) first. Run as root on Debian 12.

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
# The version reaches every binary's `version` (prewarm-imds's main.version;
# the agent's agent.Version, also in its reports); the commit shared/cli's.
LDFLAGS   := -s -w -X github.com/prewarm/prewarm/agent.Version=$(VERSION) -X main.version=$(VERSION) -X github.com/prewarm/prewarm/shared/cli.Commit=$(COMMIT)
# make demo installs only what it runs: its lab's network namespaces
# (iproute2; nsenter and unshare are util-linux's), dnsmasq, a DHCP client,
# and what the agent in its guest runs (passwd's useradd and chpasswd,
# tzdata's zones). The tests' packages (APT_PACKAGES) come with make deps,
# which the test targets run; neither starts or leaves enabled a service
# (.ci/apt-install.sh).
DEMO_PACKAGES := iproute2 util-linux dnsmasq-base isc-dhcp-client passwd tzdata
APT_PACKAGES := $(DEMO_PACKAGES) busybox-static dhcpcd-base \
	sudo wrk netcat-openbsd debootstrap systemd-container \
	qemu-system-x86 cpio msitools wixl osslsigncode lintian etcd-server etcd-client \
	cloud-init curl wine wine64 binutils-mingw-w64-x86-64 iptables
# The fleet page's browser test drives Debian's Chromium (make test-browser;
# make unit skips that test without it).
APT_PACKAGES += chromium
GOTEST_FLAGS ?= -count=1 -timeout 20m
# The pool's end-to-end tests, benchmark and demo (issue 16): libvirt and
# QEMU run inside a private namespace (e2e/virtlab); the golden image is
# built with debootstrap, e2fsprogs and qemu-utils; guests are checked over SSH.
POOL_PACKAGES := libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils \
	debootstrap e2fsprogs zstd jq cpio busybox-static openssh-client
APT_PACKAGES += $(POOL_PACKAGES)

.PHONY: all build deps deps-demo test-browser test unit fuzz e2e e2e-vm windows-test package-test bench bench-claim bench-idle demo package lint fmt clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./agent/cmd/prewarm-agent ./imds/cmd/prewarm-imds ./pool/cmd/prewarm-pool
	# --store etcd is served by prewarm-imds-etcd, which prewarm-imds execs: only it links the etcd client (docs/etcd.md).
	CGO_ENABLED=0 $(GO) build -tags etcd -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/prewarm-imds-etcd ./imds/cmd/prewarm-imds

# deps installs the Debian packages the tests drive for real (DHCP servers
# and clients, namespaces tooling, wrk, QEMU, MSI tools, etcd, Chromium).
# cloud-init is installed only to drive it against the dialects inside test
# namespaces: the marker file keeps it from ever running at this machine's boot.
deps:
	@mkdir -p /etc/cloud && [ -e /etc/cloud/cloud-init.disabled ] || touch /etc/cloud/cloud-init.disabled
	@bash .ci/apt-install.sh deps $(APT_PACKAGES)
	@$(GO) mod download

# deps-demo installs what make demo runs and nothing else (it says what).
deps-demo:
	@bash .ci/apt-install.sh demo $(DEMO_PACKAGES)

# test-browser runs the fleet page's test in headless Chromium.
test-browser:
	@bash .ci/apt-install.sh test-browser chromium
	$(GO) test -count=1 -v -run 'InBrowser' ./imds/server/

test: deps lint unit fuzz e2e windows-test package-test

unit:
	$(GO) test $(GOTEST_FLAGS) ./shared/... ./imds/... ./agent/... ./linux/... ./windows/...

e2e: deps build image
	$(GO) test $(GOTEST_FLAGS) -v ./e2e/...

# fuzz runs every fuzz target for FUZZTIME (default 20s) each, seeded with the
# crashers found so far (issue 13's among them).
fuzz:
	bash .ci/fuzz.sh

# e2e-vm runs the full QEMU scenario (five short NIC bounces, a slow one, a
# renewDhcp renewal); make e2e runs its reduced form.
e2e-vm: deps build
	PREWARM_E2E_VM=full $(GO) test $(GOTEST_FLAGS) -v -run VM ./e2e/

bench: deps build
	bash imds/bench/run.sh
	bash agent/bench/run.sh
	$(GO) test -run XXX -bench . -benchtime 200x ./shared/... ./imds/... ./agent/...
	$(GO) test -count=1 -run '^$$' -bench 'HostLinkUpToLease' -benchtime 20x ./linux/dhcp/
	$(GO) test -count=1 -run '^$$' -bench 'FlapStorm' -benchtime 1x -v ./linux/dhcp/
	$(GO) test -count=5 -run 'TestScenario$$' -v ./e2e/ | grep -E 'timing|→|PASS|FAIL'
	bash imds/bench/dialects.sh
	bash imds/bench/writepath.sh
	bash imds/bench/idle.sh
	$(MAKE) bench-claim bench-idle

# bench-claim is issue 15's claim benchmark in the QEMU guest: the final
# document published while the NIC bounces (publish first, bounce first,
# together), PREWARM_VM_CLAIMS claims (default 12), p50/p90 of claim →
# provisioned with its phases, and the same VM's cold boot → provisioned;
# first with the agent's built-in DHCP client (as the golden image ships),
# then with the guest's busybox udhcpc.
bench-claim: deps build
	PREWARM_VM_DHCP=builtin PREWARM_VM_CLAIMS=$${PREWARM_VM_CLAIMS:-12} $(GO) test -count=1 -timeout 30m -run 'TestVMClaimBench$$' -v ./e2e/
	PREWARM_VM_DHCP=udhcpc PREWARM_VM_CLAIMS=$${PREWARM_VM_CLAIMS:-12} $(GO) test -count=1 -timeout 30m -run 'TestVMClaimBench$$' -v ./e2e/

# bench-idle: the parked agent's wake-ups and RSS over PREWARM_IDLE_WINDOW
# (default 10m).
bench-idle: build
	bash agent/bench/idle.sh

# windows-test runs the Windows unit tests (windows/, agent/, shared/,
# internal/: what the Windows CI's unit job runs, less the Wine-only
# failures windows/wine-test.sh lists) under Wine and builds, signs and
# checks the MSI.
windows-test: deps
	bash windows/wine-test.sh
	bash packaging/windows/build-msi.sh
	bash packaging/windows/test-msi.sh

# package-test builds the .deb, bakes it into a debootstrapped Debian root and
# boots that with systemd-nspawn: the golden image must provision itself.
package-test: deps build
	bash packaging/test-image.sh

# demo narrates the agent and the IMDS end to end on network namespaces: it
# installs only what it runs and takes well under a minute once the Go
# modules are cached. The pool's demo boots real VMs from a golden image
# (libvirt, QEMU, debootstrap: minutes and a few hundred MB), so it is its
# own target, demo-pool, which demo names at its end.
demo: deps-demo build
	bash e2e/demo.sh
	@echo "demo: next, the pool of warm VMs on libvirt claimed in seconds: sudo make demo-pool"

# deps-pool installs what the pool's image, tests, benchmark and demo run.
deps-pool:
	@bash .ci/apt-install.sh pool $(POOL_PACKAGES)

.PHONY: image e2e-pool bench-pool demo-pool deps-pool

# image builds the golden image of prewarm-pool (packaging/image/build.sh):
# Debian 12 + the prewarm-agent .deb as qcow2, and its kernel and initrd, in
# .cache/image/ (git-ignored), keyed by its inputs: a rerun with the same
# inputs does nothing.
image: deps-pool
	bash packaging/image/build.sh

# e2e-pool runs only the pool's end-to-end tests (make e2e runs them too).
e2e-pool: deps-pool build image
	$(GO) test $(GOTEST_FLAGS) -v ./e2e/virtlab/ ./e2e/pool/

# bench-pool is issue 16's headline benchmark: cold boot → provisioned
# against warm claim → provisioned (N=$${PREWARM_POOL_N:-5} each,
# sequential) and a burst of 4 concurrent claims, on the golden image in a
# private libvirt. Figures in pool-bench.json (git-ignored); the last line
# is the summary.
bench-pool: deps-pool build image
	@rm -f pool-bench.json
	-PREWARM_POOL_BENCH=1 $(GO) test -count=1 -timeout 90m -run 'TestPoolBench$$' -v ./e2e/pool/ 2>&1 | \
		grep -vE 'ethtool ioctl|^=== ' | tee .cache/pool-bench.log
	@test -s pool-bench.json || { echo "bench-pool: no pool-bench.json (see .cache/pool-bench.log)"; exit 1; }
	@jq -r .summary pool-bench.json

# demo-pool shows the pool at work: warm VMs booting, a claim with its
# timing breakdown, the refill.
demo-pool: deps-pool build image
	@PREWARM_POOL_DEMO=1 $(GO) test -count=1 -timeout 30m -run 'TestPoolDemo$$' -v ./e2e/pool/ 2>&1 | \
		sed -n 's/^ *demo_linux_test.go:[0-9]*: //p; /^--- /p'

package: build
	bash packaging/build.sh
	bash packaging/windows/build-msi.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	$(GO) run .ci/logkeys.go ./...
	$(GO) run .ci/logkeys.go -goos windows ./...
	$(GO) tool staticcheck ./...
	GOOS=windows $(GO) build ./...
	GOOS=windows GOARCH=arm64 $(GO) build ./...
	GOOS=windows $(GO) test -exec=true -count=1 ./... >/dev/null
	$(GO) run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 .github/workflows/*.yml

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) dist
