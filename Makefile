# Makefile: entry points to build, test and run moviestream.
#   make up / make down   whole system on this machine (scripts/up.sh, down.sh)
#   make build            bin/gateway, bin/inventory, bin/billing
#   make test             test-setup, fmt-check, vet, shellcheck, promtool,
#                         vagrant-validate, unit, fuzz, test-fault, e2e, openapi-lint,
#                         newman, docs-test, test-topology
#   make promtool         check and unit-test the alert rules (deploy/prometheus/)
#   make fuzz             each fuzz target for FUZZTIME (5s); crashers stay in testdata/
#   make test-fault       fault tests on private PostgreSQL/RabbitMQ (e2e/fault)
#   make test-cluster     only the three-node RabbitMQ cluster fault test (part of test-fault)
#   make openapi-lint     lint openapi.yaml with Redocly CLI (npm)
#   make newman           run postman/ against the running stack (npm's newman)
#   make docs-test        /docs in headless Chromium, screenshot in build/docs.png
#   make e2e-all          e2e (which runs `make up`), then newman and docs-test
#   make vagrant-validate  check the Vagrantfile (installs Debian's vagrant if missing)
#   make test-topology    the three-VM topology in network namespaces (root)
#   make bench            benchmarks of every module
#   make loadtest         load test of the running stack, one table vs references
#                         measured in the same run (scripts/loadtest.sh, root)
#   make dlq-list         billing's dead letters grouped by reason (docs/dlq.md)
#   make dlq-replay       move dead letters back: REASON=, ID=, MAX=, DRY_RUN=1
# go.work makes the repository root a workspace, not a module: `go test ./...`
# at the root matches nothing, so the Go targets loop over MODULES.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
# The steps of `make test` run in the order listed, even with -j.
.NOTPARALLEL:

MODULES  := pkg services/gateway services/inventory services/billing
SERVICES := gateway inventory billing
GO       ?= go

# scripts/provision-common.sh installs Go in /usr/local/go (same rule as scripts/lib.sh).
ifneq ($(wildcard /usr/local/go/bin/go),)
export PATH := /usr/local/go/bin:$(PATH)
endif

# Services and tests read their configuration from this file; a variable set
# in the environment (ENV_FILE included) wins.
export ENV_FILE ?= $(CURDIR)/.env

.PHONY: up down build test test-setup fmt-check vet shellcheck unit e2e bench
.PHONY: fuzz test-fault test-cluster
.PHONY: vagrant-validate test-topology
.PHONY: promtool
.PHONY: openapi-lint newman docs-test e2e-all

up:
	bash scripts/up.sh

down:
	bash scripts/down.sh

build:
	@mkdir -p bin
	@for s in $(SERVICES); do \
	  echo "$(GO) build -o bin/$$s ./services/$$s"; \
	  $(GO) build -o bin/$$s ./services/$$s; \
	done

test: test-setup fmt-check vet shellcheck promtool vagrant-validate unit fuzz test-fault e2e openapi-lint newman docs-test test-topology

test-setup:
	bash scripts/test-setup.sh

fmt-check:
	@unformatted=$$(git ls-files -z --cached --others --exclude-standard -- '*.go' | xargs -0 -r gofmt -l); \
	if [ -n "$$unformatted" ]; then \
	  echo "gofmt: these files are not formatted (run gofmt -w on them):"; \
	  echo "$$unformatted"; \
	  exit 1; \
	fi; \
	echo "gofmt: ok"

# vet, unit and bench run every module even after a failure, then fail
# naming the modules that failed.
vet:
	@failed=; \
	for m in $(MODULES); do \
	  echo "go vet ./... ($$m)"; \
	  (cd $$m && $(GO) vet ./...) || failed="$$failed $$m"; \
	done; \
	if [ -n "$$failed" ]; then echo "go vet failed in:$$failed"; exit 1; fi

shellcheck:
	@command -v shellcheck >/dev/null || bash -c '. scripts/lib.sh && apt_install shellcheck'
	shellcheck -x scripts/*.sh .ci/run

# Alert rules: syntax, then their unit tests with synthetic series. promtool
# comes with Debian's prometheus package.
promtool:
	@command -v promtool >/dev/null || bash -c '. scripts/lib.sh && apt_install prometheus'
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml

vagrant-validate:
	bash scripts/vagrant-validate.sh

test-topology:
	bash scripts/test-topology.sh

unit:
	@failed=; \
	for m in $(MODULES); do \
	  echo "go test -race -count=1 ./... ($$m)"; \
	  (cd $$m && $(GO) test -race -count=1 ./...) || failed="$$failed $$m"; \
	done; \
	if [ -n "$$failed" ]; then echo "go test failed in:$$failed"; exit 1; fi

# Fuzzing: each target runs FUZZTIME. An input that fails is written to the
# package's testdata/fuzz/<Target>/ and from then on runs as a regression
# case in every `go test`: commit it with the fix.
FUZZTIME ?= 5s
fuzz:
	cd pkg && $(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./billingmsg
	cd services/inventory && $(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime $(FUZZTIME) ./internal/movie

# Fault tests (e2e/fault, build tag fault): each test starts a private
# PostgreSQL cluster and RabbitMQ node on free ports (never the shared
# 5432/5672 nor the `make up` ports), builds the services once, and stops,
# kills and restarts them under load. Root (or the postgres and rabbitmq
# accounts) needed. FAULT_ORDERS sets the load (default 2400); FAULT_RACE=1
# builds the services with the race detector.
test-fault:
	cd e2e && $(GO) vet -tags fault ./fault/ ./testinfra/
	cd e2e && $(GO) test -race -count=1 -timeout 20m -tags fault -v ./fault/

# The cluster fault test alone (e2e/fault/cluster_test.go, also run by
# test-fault): a private three-node RabbitMQ cluster, the gateway and two
# billing processes, 3,000 orders while the queue's leader node is killed,
# another node stopped and a billing process killed; about 2 minutes.
test-cluster:
	cd e2e && $(GO) vet -tags fault ./fault/ ./testinfra/
	cd e2e && $(GO) test -race -count=1 -timeout 8m -tags fault -v -run '^TestClusterNodeFailures$$' ./fault/

e2e:
	cd e2e && $(GO) test -race -count=1 -timeout 20m -tags e2e ./...

# Load test (scripts/loadtest.sh): against the `make up` stack (started
# first if it is not up), wrk and nginx from Debian, 2 to 6 minutes, one
# table; README, Performance.
.PHONY: loadtest
loadtest:
	bash scripts/loadtest.sh

bench:
	@failed=; \
	for m in $(MODULES); do \
	  echo "go test -run '^$$' -bench . -benchmem ./... ($$m)"; \
	  (cd $$m && $(GO) test -run '^$$' -bench . -benchmem ./...) || failed="$$failed $$m"; \
	done; \
	if [ -n "$$failed" ]; then echo "go test -bench failed in:$$failed"; exit 1; fi

# API docs and the Postman collection. The npm tools run through npx at the
# pinned versions; newman and docs-test talk to the stack that `make up`
# (or e2e) started.
REDOCLY_CLI_VERSION := 2.77.0
NEWMAN_VERSION      := 6.2.2

openapi-lint:
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
	  npx --yes @redocly/cli@$(REDOCLY_CLI_VERSION) lint openapi.yaml

newman:
	npx --yes newman@$(NEWMAN_VERSION) run postman/moviestream.postman_collection.json \
	  -e postman/local.postman_environment.json

docs-test:
	cd e2e && $(GO) test -count=1 -tags docs ./apidocs/

e2e-all: e2e newman docs-test

# Dead-letter queue (docs/dlq.md): `make dlq-list` groups billing_queue.dlq
# by reason and leaves it as it is; `make dlq-replay` moves messages back to
# billing_queue, filtered by REASON (substring), ID (comma-separated
# message ids), MAX; DRY_RUN=1 only prints what would move. The variables
# reach the recipe through the environment, so quotes in a reason are safe.
.PHONY: dlq-list dlq-replay

dlq-list:
	$(GO) run ./services/billing/cmd/dlq list

dlq-replay:
	@args=(replay); \
	if [ -n "$${REASON:-}" ]; then args+=(-reason "$$REASON"); fi; \
	if [ -n "$${ID:-}" ]; then args+=(-id "$$ID"); fi; \
	if [ -n "$${MAX:-}" ]; then args+=(-max "$$MAX"); fi; \
	if [ -n "$${DRY_RUN:-}" ] && [ "$$DRY_RUN" != 0 ]; then args+=(-dry-run); fi; \
	echo "$(GO) run ./services/billing/cmd/dlq $${args[*]}"; \
	$(GO) run ./services/billing/cmd/dlq "$${args[@]}"
