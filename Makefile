# Makefile: entry points to build, test and run moviestream.
#   make up / make down   whole system on this machine (scripts/up.sh, down.sh)
#   make build            bin/gateway, bin/inventory, bin/billing
#   make test             test-setup, fmt-check, vet, shellcheck, unit, e2e
#   make bench            benchmarks of every module
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

test: test-setup fmt-check vet shellcheck unit e2e

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
	shellcheck -x scripts/*.sh .ci/run

unit:
	@failed=; \
	for m in $(MODULES); do \
	  echo "go test -race -count=1 ./... ($$m)"; \
	  (cd $$m && $(GO) test -race -count=1 ./...) || failed="$$failed $$m"; \
	done; \
	if [ -n "$$failed" ]; then echo "go test failed in:$$failed"; exit 1; fi

e2e:
	@if [ -d e2e ]; then \
	  echo "go test -race -count=1 -tags e2e ./... (e2e)"; \
	  cd e2e && $(GO) test -race -count=1 -tags e2e ./...; \
	else \
	  echo "e2e: no e2e/ module yet, nothing to run"; \
	fi

bench:
	@failed=; \
	for m in $(MODULES); do \
	  echo "go test -run '^$$' -bench . -benchmem ./... ($$m)"; \
	  (cd $$m && $(GO) test -run '^$$' -bench . -benchmem ./...) || failed="$$failed $$m"; \
	done; \
	if [ -n "$$failed" ]; then echo "go test -bench failed in:$$failed"; exit 1; fi
