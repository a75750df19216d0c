# Developer targets. CI runs .ci/run; the short chaos test is part of its `go test -race ./...`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= go
# Where `make loadtest` builds the telephone binary it compares with the in-process client.
TELEPHONE_BIN ?= $(or $(TMPDIR),/tmp)/telephone-loadtest/telephone
# Extra flags for the harness, e.g. LOADTEST_FLAGS='--scenario steady --duration 30s --json'.
LOADTEST_FLAGS ?=

# Version and commit stamped into the binary; they work with -buildvcs=false (CI's setting).
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS ?= -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: build bench loadtest loadtest-ci loadtest-scale soak

# A static binary in bin/telephone with version and commit (telephone version prints them).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/telephone ./cmd/telephone

# Every Go benchmark, six runs each, in benchstat's input format (benchstat old.txt bench.txt).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.txt

# Every scenario but soak and scale-out (each has its own target below), in-process and with the
# built binary side by side (a few minutes).
# Add another build to compare: LOADTEST_FLAGS='--binary orig=/path/to/original/telephone'.
loadtest:
	mkdir -p $(dir $(TELEPHONE_BIN))
	$(GO) build -o $(TELEPHONE_BIN) ./cmd/telephone
	$(GO) run ./internal/cmd/loadtest --binary ours=$(TELEPHONE_BIN) $(LOADTEST_FLAGS)

# The short chaos run that CI also runs as part of go test (about 30 s under -race).
loadtest-ci:
	$(GO) test -race -count=1 -run 'TestChaosShort' -v ./internal/cmd/loadtest

# Three replicas from one service-account key, 60 s tokens, 3 minutes of load, each restarted
# once, in-process and with the built binary (CI runs a short form: TestScaleOutShort).
loadtest-scale:
	mkdir -p $(dir $(TELEPHONE_BIN))
	$(GO) build -o $(TELEPHONE_BIN) ./cmd/telephone
	$(GO) run ./internal/cmd/loadtest --scenario scale-out --binary ours=$(TELEPHONE_BIN) $(LOADTEST_FLAGS)

# The one-hour soak (not run in CI).
soak:
	$(GO) run ./internal/cmd/loadtest --scenario soak --duration 1h $(LOADTEST_FLAGS)
