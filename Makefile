# sandbox-runner. `make help` lists the targets.

PREFIX  ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
# systemd reads units from /usr/local/lib/systemd/system too.
UNITDIR ?= $(PREFIX)/lib/systemd/system
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
CC      ?= cc
BIN     := bin/sandbox-runner
LDFLAGS := -s -w -X main.version=$(VERSION)
# Debian packages the runner, its tests and the demo need: gcc and libc6-dev
# for the static init, the registry
# the pull tests push to, debootstrap for the runtime test image, and
# systemd for systemd-analyze, which checks the units, docker.io for
# the tests that run next to Docker, nats-server for the fleet's, and
# prometheus for promtool, which checks and unit-tests contrib/prometheus;
# crun, the OCI runtime tasks run under by default where it works;
# nodejs for the npm package piston-client, which the Piston API's tests
# drive (see PISTON_CLIENT_DIR).
DEB_PACKAGES := gcc libc6-dev containerd runc crun busybox-static docker-registry debootstrap systemd docker.io nats-server prometheus nodejs
# The Piston client the integration tests run, pinned with its
# dependencies in package-lock.json and installed there by `make deps`
# with npm: Debian's npm package, unless the installed nodejs brings its
# own (NodeSource's does, and conflicts with Debian's).
PISTON_CLIENT_DIR := integration/piston
# The OCI runtimes `make test` runs the whole integration suite under,
# each on the system's containerd and on containerd 2.x.
OCI_RUNTIMES ?= crun runc
# What `make demo` alone needs: gcc and libc6-dev for the init, containerd
# and runc to run tasks, debootstrap to build the runtime images from the
# host's apt mirror.
DEMO_PACKAGES := gcc libc6-dev containerd runc debootstrap
# Where images build keeps what it built and downloaded (the integration
# tests use the same cache, so one build serves both).
IMAGE_CACHE ?= /var/cache/sandbox-runner
# The containerd 2.x daemon the integration suite also runs against: the
# containerd/v2 version go.mod pins, built in the helper module
# integration/ctrd2 (so the daemon's dependencies stay out of ours) and
# cached under bin/.
CTRD2_VERSION := $(shell awk '$$1 == "github.com/containerd/containerd/v2" {print $$2; exit}' go.mod)
CTRD2_DIR     := bin/containerd-$(CTRD2_VERSION)

# gVisor: runsc and its containerd shim, containerd-shim-runsc-v1, built
# from the release of gVisor's Go module that integration/gvisor/go.mod
# pins (Debian's runsc packages, bookworm's and backports', ship no
# shim, and containerd's runc shim cannot drive runsc), into bin/gvisor/.
# `make test` puts them on PATH, where containerd finds the shim.
GVISOR_VERSION := $(shell awk '$$1 == "gvisor.dev/gvisor" {print $$2; exit}' integration/gvisor/go.mod)
GVISOR_DIR     := bin/gvisor
# The integration tests that apply to gVisor, which `make test` runs once
# more with runsc as the suite's OCI runtime (README, "gVisor"): the
# hardening, verdict, output and leak tests. Left out, as not applicable:
# TestMemoryLimitNoSwap and TestPidsLimit (they read the limits from the
# cgroup files inside the sandbox, which are gVisor's own: its memory has
# no swap, and the pids limit is the host's, on the whole sandbox),
# TestMaskedAndReadOnlyProcPaths (gVisor's /proc is its own and has none
# of the host's files the masks hide), and the tests of the service, the
# fleet, the pool, Docker, registries and crash recovery, which do not
# depend on the OCI runtime.
GVISOR_TESTS := ^Test(GVisor.*|HelloWorld|ExitCodePassthrough|StdinReachesTask|ArgsReachTask|FilesStagedInCode|RootfsReadOnly|CodeReadOnly|TmpWritable|TmpSizeLimit|NetworkOnlyLoopback|HostNetworkUnreachable|NoCapabilities|NoNewPrivileges|SeccompFilter|NamespacesAndMountsRefused|NonRootUser|MemoryHogOOMKilled|ForkBombStopsAtPidsLimit|CPUQuota|TimeoutKills|TimeoutKillsEvasiveTask|OutputTruncated|OutputStreamedToWriters|Cancellation|NoRunMount|Hostname|WorkingDirIsTmp|Environment|StdinLeftOpenDoesNotBlock|TimeoutWhileFloodingOutput|OOMInChildReported|ConcurrentTasks|ExplicitTaskID|RuntimeMissingFromImage|CompileStageSharesTmp|CompileFailed|LargeStdin|OutputAtLimitNotTruncated|UsageReported|CompileTimeout|CLIExecTimeout|CLIExecOOM)$$

# go-judge, the peer `make bench` compares with, built from the release
# integration/gojudge/go.mod pins, in a module of its own so its
# dependencies stay out of ours, into bin/gojudge/. Only the bench uses it.
GOJUDGE_VERSION := $(shell awk '$$1 == "github.com/criyle/go-judge" {print $$2; exit}' integration/gojudge/go.mod)
GOJUDGE_DIR     := bin/gojudge

.PHONY: help build deps host-prep demo test fuzz unit integration integration-ctrd2 integration-gvisor containerd2 gvisor gojudge bench bench-runs lint install clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/sandbox-runner (version stamped), bin/sandbox-runner-init, PID 1 of every sandbox, and bin/sandbox-runner-shim, the shim containerd runs for them (static C)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sandbox-runner
	$(CC) -static -O2 -Wall -Werror -s -o $(BIN)-init cmd/sandbox-runner-init/init.c
	$(CC) -static -O2 -Wall -Werror -s -o $(BIN)-shim cmd/sandbox-runner-shim/shim.c

deps: ## install DEB_PACKAGES (containerd, runc, crun, busybox-static, ...) when missing (root), and the Piston test client into integration/piston/node_modules (npm ci); changes nothing else on the host
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@if [ -n "$(filter nodejs,$(DEB_PACKAGES))" ]; then \
		command -v npm >/dev/null || { echo "installing: npm"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; } && \
		cd $(PISTON_CLIENT_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	fi

demo: build ## install what the demo needs, build the runtime images (cached), run real programs in each language (root)
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(DEMO_PACKAGES)"
	$(BIN) images build --cache-dir $(IMAGE_CACHE)
	contrib/demo/run.sh $(BIN)

# host-prep changes the host, so nothing runs it unasked: on a hybrid
# cgroup host (v1 and v2 side by side) crun refuses to run while the
# cgroup2 hierarchy holds a controller (hugetlb on Debian 12), so each
# such controller is mounted as a cgroup v1 hierarchy instead. A pure v1
# or v2 host needs nothing. Do it before any cgroup uses the controller.
host-prep: ## prepare this host for crun (root): on a hybrid cgroup host, move the controllers cgroup2 holds to cgroup v1
	@set -e; v2=$$(awk '/ - cgroup2 / {print $$5; exit}' /proc/self/mountinfo); \
	if [ -z "$$v2" ] || ! grep -q ' - cgroup cgroup ' /proc/self/mountinfo; then \
		echo "host-prep: not a hybrid cgroup host; nothing to do"; exit 0; \
	fi; \
	base=$$(dirname "$$v2"); moved=""; \
	for c in $$(cat "$$v2/cgroup.controllers"); do \
		mkdir -p "$$base/$$c" && mount -t cgroup -o "$$c" cgroup "$$base/$$c"; moved="$$moved $$c"; \
	done; \
	if [ -n "$$moved" ]; then echo "host-prep: moved cgroup controller(s)$$moved from $$v2 to cgroup v1 under $$base"; \
	else echo "host-prep: $$v2 holds no controller; nothing to do"; fi

test: gvisor ## lint, unit tests, the privileged integration suite under each of OCI_RUNTIMES on the system's containerd and on 2.x, its gVisor tests under runsc (root; they fail rather than skip), then a short fuzz run
	$(MAKE) --no-print-directory lint
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/integration$$')
	@set -e; export PATH="$(CURDIR)/$(GVISOR_DIR):$$PATH"; for rt in $(OCI_RUNTIMES); do \
		echo "integration suite under $$rt, on the system's containerd"; \
		SANDBOX_RUNNER_OCI_RUNTIME=$$rt SANDBOX_RUNNER_INTEGRATION=1 $(GO) test -count=1 -timeout 40m ./integration/; \
		echo "integration suite under $$rt, on containerd $(CTRD2_VERSION)"; \
		SANDBOX_RUNNER_OCI_RUNTIME=$$rt $(MAKE) --no-print-directory integration-ctrd2; \
	done
	$(MAKE) --no-print-directory integration-gvisor
	$(MAKE) --no-print-directory fuzz

# A count of inputs, not a duration: with a duration, Go's fuzzing
# coordinator can fail a target with a bare "context deadline exceeded"
# and no failing input when the deadline meets a busy worker (a race in
# the toolchain, golang/go#75804, fixed in Go 1.27). 20000 inputs take
# 2-5 s per target here.
FUZZTIME ?= 20000x
fuzz: ## run every fuzz target on FUZZTIME inputs (default 20000x; a duration such as 30s works too) each
	@set -e; pkgs=$$($(GO) list ./...) || exit 1; for pkg in $$pkgs; do \
		list=$$($(GO) test -list '^Fuzz' $$pkg) || exit 1; \
		for target in $$(echo "$$list" | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			out=$$($(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) || \
				{ echo "$$out" | { grep -v '^fuzz: elapsed' >&2 || true; }; \
				  echo "fuzz target $$target in $$pkg failed; the failing input is under $$($(GO) list -f '{{.Dir}}' $$pkg)/testdata/fuzz/$$target;" \
				       "rerun: go test -run '^$$target$$' $$pkg"; exit 1; }; \
		done; \
	done

unit: ## unit tests only (no root needed)
	$(GO) test -count=1 ./oci/... ./images/... ./runner/... ./cmd/... ./integration/testimage/... ./integration/cmd/...

integration: ## the privileged integration tests only (root), under $$SANDBOX_RUNNER_OCI_RUNTIME (default: the fastest usable)
	SANDBOX_RUNNER_INTEGRATION=1 $(GO) test -count=1 -timeout 40m -v ./integration/

integration-gvisor: gvisor ## the integration tests that apply to gVisor (GVISOR_TESTS), with runsc as the suite's OCI runtime, on the system's containerd (root)
	@echo "integration tests that apply to gVisor, under runsc ($(GVISOR_VERSION)), on the system's containerd"
	PATH="$(CURDIR)/$(GVISOR_DIR):$$PATH" SANDBOX_RUNNER_OCI_RUNTIME=runsc SANDBOX_RUNNER_INTEGRATION=1 \
		$(GO) test -count=1 -timeout 20m -run '$(GVISOR_TESTS)' ./integration/

integration-ctrd2: containerd2 ## the privileged integration tests again, against the containerd 2.x go.mod pins (root)
	SANDBOX_RUNNER_INTEGRATION=1 SANDBOX_RUNNER_CONTAINERD_BIN=$(CURDIR)/$(CTRD2_DIR)/containerd \
		SANDBOX_RUNNER_EXPECT_CONTAINERD=$(CTRD2_VERSION) $(GO) test -count=1 -timeout 40m ./integration/

containerd2: $(CTRD2_DIR)/containerd ## build containerd and containerd-shim-runc-v2 at the containerd/v2 version go.mod pins, into bin/

$(CTRD2_DIR)/containerd: integration/ctrd2/go.mod integration/ctrd2/go.sum
	@pinned=$$(awk '$$1 == "github.com/containerd/containerd/v2" {print $$2; exit}' integration/ctrd2/go.mod); \
	if [ "$$pinned" != "$(CTRD2_VERSION)" ]; then \
		echo "integration/ctrd2/go.mod pins containerd $$pinned, go.mod $(CTRD2_VERSION); to follow go.mod:"; \
		echo "  cd integration/ctrd2 && go get github.com/containerd/containerd/v2@$(CTRD2_VERSION) && go mod tidy"; \
		exit 1; \
	fi
	rm -rf $(CTRD2_DIR).tmp
	cd integration/ctrd2 && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
		-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$(CTRD2_VERSION)" \
		-o $(CURDIR)/$(CTRD2_DIR).tmp/ \
		github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
	rm -rf $(CTRD2_DIR) && mv $(CTRD2_DIR).tmp $(CTRD2_DIR)

gvisor: $(GVISOR_DIR)/runsc ## build gVisor's runsc and containerd-shim-runsc-v1 at the release integration/gvisor/go.mod pins, into bin/gvisor/

$(GVISOR_DIR)/runsc: integration/gvisor/go.mod integration/gvisor/go.sum integration/gvisor/containerd-shim-runsc-v1/main.go
	rm -rf $(GVISOR_DIR).tmp
	cd integration/gvisor && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "-s -w -X gvisor.dev/gvisor/runsc/version.version=$(GVISOR_VERSION)" \
		-o $(CURDIR)/$(GVISOR_DIR).tmp/ gvisor.dev/gvisor/runsc ./containerd-shim-runsc-v1
	rm -rf $(GVISOR_DIR) && mv $(GVISOR_DIR).tmp $(GVISOR_DIR)

gojudge: $(GOJUDGE_DIR)/go-judge ## build go-judge, the bench's peer, at the release integration/gojudge/go.mod pins, into bin/gojudge/

$(GOJUDGE_DIR)/go-judge: integration/gojudge/go.mod integration/gojudge/go.sum
	rm -rf $(GOJUDGE_DIR).tmp
	cd integration/gojudge && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" \
		-o $(CURDIR)/$(GOJUDGE_DIR).tmp/ github.com/criyle/go-judge/cmd/go-judge
	rm -rf $(GOJUDGE_DIR) && mv $(GOJUDGE_DIR).tmp $(GOJUDGE_DIR)

BENCH_ITERATIONS ?= 40
# BENCH_GVISOR_POOL is the runsc service's warm pool size (0: its tasks
# take the cold path through the service).
BENCH_GVISOR_POOL ?= 4
bench: build gvisor gojudge ## compare exec, the warm service (crun, runc, runsc), ctr run, docker run and go-judge on a private containerd (root); writes bin/bench.json
	PATH="$(CURDIR)/$(GVISOR_DIR):$$PATH" $(GO) run ./integration/cmd/bench --cli $(BIN) --init $(BIN)-init \
		--iterations $(BENCH_ITERATIONS) --gvisor-pool $(BENCH_GVISOR_POOL) --gojudge $(GOJUDGE_DIR)/go-judge --json bin/bench.json

BENCH_RUNS ?= 20
bench-runs: build ## one C++ program on BENCH_RUNS inputs: one request with "runs" (1 compile) against as many requests, through the service on a private containerd (root; the cpp image from IMAGE_CACHE); writes bin/bench-runs.json
	$(GO) run ./integration/cmd/benchruns --cli $(BIN) --init $(BIN)-init --runs $(BENCH_RUNS) --cache-dir $(IMAGE_CACHE) --json bin/bench-runs.json

# The packages a client on any OS imports, and the example client that
# proves it: `make lint` builds them for darwin, where nothing
# Linux-only (nor containerd's client) may sneak in.
CLIENT_PACKAGES := ./runner/api/ ./runner/service/client/ ./runner/fleet/client/ ./contrib/examples/client/ ./images/

lint: ## gofmt, go vet, and the packages a client on any OS imports (CLIENT_PACKAGES) built for darwin
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin $(GO) build -o /dev/null $(CLIENT_PACKAGES)

install: build ## install the binary, the systemd units and the example config under DESTDIR/PREFIX
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/sandbox-runner
	install -D -m 0755 $(BIN)-init $(DESTDIR)$(PREFIX)/libexec/sandbox-runner/sandbox-runner-init
	install -D -m 0755 $(BIN)-shim $(DESTDIR)$(PREFIX)/libexec/sandbox-runner/sandbox-runner-shim
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/share/sandbox-runner
	@# The units name the binary and the config where PREFIX and SYSCONFDIR put them.
	for unit in sandbox-runner.service sandbox-runner-worker.service; do \
		sed -e 's|/usr/local/bin/sandbox-runner|$(PREFIX)/bin/sandbox-runner|' \
			-e 's|/etc/sandbox-runner/|$(SYSCONFDIR)/sandbox-runner/|g' \
			contrib/systemd/$$unit > $(DESTDIR)$(UNITDIR)/$$unit || exit 1; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$unit || exit 1; \
	done
	install -m 0644 contrib/systemd/sandbox-runner.socket $(DESTDIR)$(UNITDIR)/sandbox-runner.socket
	install -m 0644 contrib/systemd/config.toml $(DESTDIR)$(PREFIX)/share/sandbox-runner/config.toml.example
	@# An existing config is the operator's: never overwritten.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/sandbox-runner/config.toml ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/sandbox-runner/config.toml; the example is $(PREFIX)/share/sandbox-runner/config.toml.example"; \
	else \
		install -D -m 0644 contrib/systemd/config.toml $(DESTDIR)$(SYSCONFDIR)/sandbox-runner/config.toml; \
	fi

clean: ## remove build output
	rm -rf bin $(PISTON_CLIENT_DIR)/node_modules
