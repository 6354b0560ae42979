# hapair: one binary for HAProxy supervision and VRRP.
#
#   make demo    set up this machine (Debian packages), build, run `hapair demo` in a lab
#   make test    set up this machine, run every test (lab tests need root)
#   make chaos   the fault-injection suite: SEED=... DURATION=... (docs/reliability.md)

GO        ?= go
BIN       := bin/hapair
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TEST_TIMEOUT ?= 25m
# The end-to-end tests marked t.Parallel() mostly wait (VRRP timers, HAProxy and FRR starting, a
# systemd booting): 8 of them at once fit the 2-core CI machine (cmd/hapair/e2e_helpers_test.go).
TEST_PARALLEL ?= 8

# Every build is static (no cgo): no libc or dynamic loader mapped into hapair, 0.6 to 2.3 MiB
# less resident memory (docs/performance.md). Users and their groups are looked up through
# getent, the name service (internal/spawn, LookupUser). The tests build the lab's binary so as well, and
# with the same setting here they share its compiled packages.
export CGO_ENABLED := 0

.PHONY: all build deps test test-unit demo bench bench-failover bench-scale bench-soak bench-edge chaos fuzz lint deb clean

all: build

# deps installs the Debian packages the lab, the tests and the demo use, only when missing.
deps:
	@sh .ci/install-deps.sh

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hapair

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -parallel $(TEST_PARALLEL) ./...

# test-unit runs what needs neither root nor the lab.
test-unit:
	$(GO) test -count=1 -short ./...

demo: deps build
	./$(BIN) demo

# bench-failover measures failover side by side with keepalived in the lab (root).
bench-failover: deps
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench 'BenchmarkFailover' -benchtime 1x ./cmd/hapair

# bench-scale runs hapair and keepalived side by side, N in {1, 10, 50, 100, 255} instances at
# advert_int 1s, 100ms and 20ms, a 20 s window per cell (about 12 minutes in all; root).
# HAPAIR_SCALE_N, HAPAIR_SCALE_INTERVALS and HAPAIR_SCALE_WINDOW pick other cells.
bench-scale: deps
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench 'BenchmarkScale$$' -benchtime 1x ./cmd/hapair

# bench-soak: 100 instances each at 20 ms with every core busy for 10 minutes; spurious
# transitions and resident memory at the start and the end (root). Both daemons run at
# vrrp_rt_priority 10, as deploy/examples ship hapair; BENCH_RT=0 runs both at normal priority.
BENCH_RT ?= 10
bench-soak: deps
	HAPAIR_BENCH_RT=$(BENCH_RT) HAPAIR_SCALE_N=100 HAPAIR_SCALE_INTERVALS=20ms HAPAIR_SCALE_WINDOW=10m HAPAIR_SCALE_BURN=1 \
	$(GO) test -count=1 -timeout 30m -run '^$$' -bench 'BenchmarkScale$$' -benchtime 1x ./cmd/hapair

# chaos runs the fault-injection suite (root): two hapair hosts and a keepalived host under
# random faults drawn from SEED, for DURATION; it prints a table per fault and the seed to replay.
# `make test` runs a short seeded run of it (TestChaos, 60 s).
SEED     ?= $(shell date +%s)
DURATION ?= 10m
chaos: deps
	HAPAIR_CHAOS_SEED=$(SEED) HAPAIR_CHAOS_DURATION=$(DURATION) nice $(GO) test -count=1 -timeout 0 -v -run '^TestChaos$$' ./cmd/hapair

# bench-edge: failover at advert_int 20 ms and 10 ms (SIGKILL, cable cut; 20 trials each) and
# the gaps between adverts at 20 ms with every core busy, hapair beside keepalived (root);
# both at vrrp_rt_priority $(BENCH_RT) (BENCH_RT=0: normal priority).
bench-edge: deps
	HAPAIR_BENCH_RT=$(BENCH_RT) $(GO) test -count=1 -timeout 60m -run '^$$' -bench 'BenchmarkEdgeFailover$$' -benchtime 1x ./cmd/hapair

bench:
	$(GO) test -count=1 -run '^$$' -bench . -benchmem ./vrrp/... ./checks/...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s ./vrrp
	$(GO) test -run '^$$' -fuzz '^FuzzParseStatsCSV$$' -fuzztime 60s ./checks

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

deb: build
	sh deploy/package/build-deb.sh $(BIN) $(VERSION)

clean:
	rm -rf bin dist
