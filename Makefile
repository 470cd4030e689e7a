# incidentbot — the front door. `make help` lists the targets.
GO        ?= go
BIN       ?= bin/incidentbot
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DATA_DIR  ?= data
LISTEN    ?= 127.0.0.1:8080
BENCHTIME ?= 2s
TRIALS    ?= 20
OUTAGE    ?= 40s
# make memory: cumulative open-incident counts measured in one run
MEMORY_STEPS ?= 2000,10000
# kube-apiserver for the Kubernetes action tests (internal/testenv), built
# from k8s.io/kubernetes at the version tools/kube/go.mod requires, into the
# user cache dir (Go's os.UserCacheDir), where the tests look by default.
KUBE_VERSION   := $(shell awk '$$1 == "require" && $$2 == "k8s.io/kubernetes" {print $$3}' tools/kube/go.mod)
TOOLS_CACHE    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/incidentbot-tools
KUBE_APISERVER ?= $(TOOLS_CACHE)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver

.PHONY: help run build image kube-apiserver test test-short test-runbooks crash-trials sink-outage memory soak-latency lint bench fuzz check-runbooks clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

# run builds, then execs the binary in place of the recipe's shell: make
# passes SIGTERM (and Ctrl-C) to its child, which is then the bot itself.
# `go run` would leave the bot running, reparented, when make is killed.
run: build ## run the bot on its embedded default (in-process NATS under ./data, shipped runbooks, console sinks, on 127.0.0.1:8080; DATA_DIR=, LISTEN= change them)
	exec $(BIN) serve --data-dir $(DATA_DIR) --listen $(LISTEN)

build: ## build bin/incidentbot
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/incidentbot

image: ## build the container image incidentbot:$(VERSION) (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) -t incidentbot:$(VERSION) .

kube-apiserver: ## build kube-apiserver for the Kubernetes action tests into KUBE_APISERVER (cold: about 20 CPU-minutes, 10 to 30 min on two cores; nothing to do when it is there at KUBE_VERSION)
	@if [ -x "$(KUBE_APISERVER)" ] && $(GO) version -m "$(KUBE_APISERVER)" | grep -Eq "k8s.io/kubernetes[[:space:]]+$(KUBE_VERSION)([[:space:]]|$$)"; then \
		echo "$(KUBE_APISERVER): k8s.io/kubernetes $(KUBE_VERSION), up to date"; \
	else \
		mkdir -p "$(dir $(KUBE_APISERVER))" && cd tools/kube && \
		$(GO) build -trimpath -ldflags "-s -w" -o "$(KUBE_APISERVER).tmp" k8s.io/kubernetes/cmd/kube-apiserver && \
		mv "$(KUBE_APISERVER).tmp" "$(KUBE_APISERVER)" && echo "built $(KUBE_APISERVER)"; \
	fi

test: ## run every test (needs prometheus-alertmanager, redis-server, etcd-server and `make kube-apiserver`; .ci/run provides them), the shipped runbook tests included
	$(GO) vet ./...
	KUBE_APISERVER_BIN="$${KUBE_APISERVER_BIN:-$(KUBE_APISERVER)}" $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) test-runbooks

test-runbooks: ## run the runbook tests shipped for every shipped runbook (runbooks/tests; TESTS= for your own)
	$(GO) run ./cmd/incidentbot test runbooks/tests $(TESTS)

test-short: ## fast unit tests only
	$(GO) test -short -count=1 ./...

crash-trials: ## kill -9 the built bot at a random moment of a 200-alert burst, restart, count cards and pages (TRIALS=20)
	E2E_CRASH_TRIALS=$(TRIALS) $(GO) test -count=1 -timeout 60m -run '^TestCrashTrials$$' -v ./e2e/

sink-outage: ## one sink down for OUTAGE (40s) while 100 critical alerts arrive: delays of the other sink's deliveries
	E2E_SINK_OUTAGE=$(OUTAGE) $(GO) test -count=1 -timeout 30m -run '^TestOneSinkDownDoesNotDelayTheOther$$' -v ./e2e/

lint: ## gofmt and go vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: ## benchmarks: webhook ingest vs decode-only, runbook matching at 10/100/1000, the engine's apply, bus publish, Slack channel gate
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./handlers/alertmanager/ ./rules/ ./engine/ ./bus/
	$(GO) test -run '^$$' -bench Gate -benchmem -benchtime $(BENCHTIME) ./notify/slack/

memory: ## soak: open distinct incidents in steps (N=2000,10000) through the built bot; report RSS, Go heap and disk per open incident, and idle memory after a restart
	E2E_MEMORY=$(or $(N),$(MEMORY_STEPS)) E2E_MEMORY_LIMIT=$(LIMIT) $(GO) test -tags soak -count=1 -timeout 30m -run '^TestMemoryPerOpenIncident$$' -v ./e2e/

soak-latency: ## soak: webhook → Slack card latency (p50/p99) at 250 and 1,000 alerts/s (SOAK_SECONDS=10 each), and the most new incidents/s (SOAK_MAX=5000 alerts at once), sinks answering at once
	E2E_SOAK_SECONDS=$(or $(SOAK_SECONDS),10) E2E_SOAK_MAX=$(or $(SOAK_MAX),5000) $(GO) test -tags soak -count=1 -timeout 30m -run '^TestSoakLatency$$' -v ./e2e/

fuzz: ## run each fuzz target for 30s
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./handlers/alertmanager/
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 30s ./runbooks/
	$(GO) test -run '^$$' -fuzz FuzzLoadTest -fuzztime 30s ./runbooks/runbooktest/
	$(GO) test -run '^$$' -fuzz FuzzParseMatchers -fuzztime 30s ./rules/
	$(GO) test -run '^$$' -fuzz FuzzDecodeProgramData -fuzztime 30s ./watchers/solana/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./handlers/pagerduty/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./handlers/slack/
	$(GO) test -run '^$$' -fuzz FuzzDecodeUpgradeTransaction -fuzztime 30s ./internal/loaderv3/
	$(GO) test -run '^$$' -fuzz FuzzDecodeTransaction -fuzztime 30s ./internal/loaderv3/
	$(GO) test -run '^$$' -fuzz FuzzSendTransaction -fuzztime 30s ./watchers/solana/solanatest/

check-runbooks: ## validate the shipped runbooks (and RUNBOOKS=dir if given)
	$(GO) run ./cmd/incidentbot check $(RUNBOOKS)

clean: ## remove build output and the local data dir
	rm -rf bin $(DATA_DIR)
