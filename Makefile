# tokenkeeper — every target a newcomer needs. Tools are built from Go modules into bin/.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN ?= $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

# Pinned tool versions (no @latest here: the module proxy does not serve it).
CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v3.22.0
KUBECONFORM_VERSION ?= v0.8.0
# Prometheus v3.x.y is Go module version v0.30x.y; promtool tests the chart's alert rules.
PROMTOOL_VERSION ?= v0.316.0
# The validators `make bench-peers` measures tokenkeeper against (built from Go modules).
OATHKEEPER_VERSION ?= v0.40.9
OAUTH2_PROXY_VERSION ?= v7.6.0
# `make bench-grpc`: ghz, the gRPC load generator, and the gRPC ext_authz peers: OPA's Rego engine
# behind Envoy's Check (test/peers/opaextauthz; the OPA-Envoy plugin's module is not served)
GHZ_VERSION ?= v0.93.0
OPA_VERSION ?= v1.22.4
# and Kuadrant Authorino, the second gRPC ext_authz peer (its AuthConfig CRD is copied from its module).
AUTHORINO_VERSION ?= v0.22.0

CONTROLLER_GEN ?= $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT ?= $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM ?= $(BIN)/helm-$(HELM_VERSION)
PROMTOOL ?= $(BIN)/promtool-$(PROMTOOL_VERSION)
OATHKEEPER ?= $(BIN)/oathkeeper-$(OATHKEEPER_VERSION)
OAUTH2_PROXY ?= $(BIN)/oauth2-proxy-$(OAUTH2_PROXY_VERSION)
GHZ ?= $(BIN)/ghz-$(GHZ_VERSION)
OPA_EXT_AUTHZ ?= $(BIN)/opa-ext-authz-$(OPA_VERSION)
AUTHORINO ?= $(BIN)/authorino-$(AUTHORINO_VERSION)
AUTHORINO_CRD ?= $(BIN)/authorino-$(AUTHORINO_VERSION).crd.yaml

# go test flags; FUZZTIME bounds each fuzz target in `make test` (longer in `make fuzz`). It is a
# count, not a duration: a duration is a wall-clock deadline that Go 1.26's coordinator can report
# as a failure on a starved machine (go.dev/issue/75804); a count only runs slower there.
TEST_FLAGS ?= -count=1
FUZZTIME ?= 20000x

# VERSION is stamped into the manager (its User-Agent) and the plugin (kubectl tokenkeeper --version).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all
all: build

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC under config/.
	$(CONTROLLER_GEN) crd rbac:roleName=tokenkeeper-manager webhook paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook
	hack/sync-manifests.sh
	go run ./hack/chart-readme
	go run ./hack/api-docs

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet (the end-to-end suite too).
	go vet -tags e2e ./...

.PHONY: lint
lint: vet $(GOLANGCI_LINT) ## Run gofmt check, go vet and golangci-lint.
	@out=$$(gofmt -s -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd from Go modules into bin/k8s (once).
	hack/envtest-assets.sh >/dev/null

.PHONY: test
test: manifests generate envtest-assets $(HELM) $(PROMTOOL) ## Run every test against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" HELM="$(HELM)" PROMTOOL="$(PROMTOOL)" go test $(TEST_FLAGS) ./...
	hack/fuzz.sh $(FUZZTIME) ./internal/issuer ./internal/tmpl ./internal/egress ./internal/names ./internal/policy

# The packages whose tests need no API server: every package whose tests import neither
# internal/testenv nor envtest. (The envtest suites skip themselves without KUBEBUILDER_ASSETS.)
UNIT_PKGS = $(shell go list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... \
	| grep -v -e /internal/testenv -e /pkg/envtest | cut -d' ' -f1)

.PHONY: test-unit
test-unit: ## Run the tests that need no API server (no kube-apiserver build; under a minute warm).
	go test $(TEST_FLAGS) $(UNIT_PKGS)
	@echo "test-unit: the envtest suites (controllers, CLI, CRDs, chart, manager, chaos) run with make test"

.PHONY: e2e
e2e: $(HELM) ## Run test/e2e on a fresh local single-node cluster (as root: installs containerd etc. if missing).
	HELM="$(HELM)" hack/e2e.sh

.PHONY: chaos
chaos: manifests generate envtest-assets ## Kill the manager and restart the API server for CHAOS_DURATION (default 1h); see test/chaos.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" CHAOS_DURATION=$${CHAOS_DURATION:-1h} \
		go test -count=1 -timeout=0 -run TestChaos -v ./test/chaos/

.PHONY: fuzz
fuzz: ## Run every fuzz target (issuer parsing, templates, egress, names, issuer URLs, Authorization headers, tokens) for longer (1m each).
	hack/fuzz.sh $(if $(filter 20000x,$(FUZZTIME)),1m,$(FUZZTIME))

.PHONY: helm-lint
helm-lint: $(HELM) ## Lint the Helm chart and render it with every option.
	$(HELM) lint --strict charts/tokenkeeper
	$(HELM) lint --strict charts/tokenkeeper --set certificates.mode=cert-manager --set metrics.serviceMonitor.enabled=true \
		--set metrics.prometheusRule.enabled=true --set defaultPolicy.enabled=true --set networkPolicy.enabled=true \
		--set metrics.dashboard.enabled=true --set metrics.readers[0].name=prometheus --set metrics.readers[0].namespace=monitoring
	$(HELM) template tokenkeeper charts/tokenkeeper -n tokenkeeper-system >/dev/null

.PHONY: bench
bench: envtest-assets $(OATHKEEPER) $(OAUTH2_PROXY) $(GHZ) $(OPA_EXT_AUTHZ) $(AUTHORINO) $(AUTHORINO_CRD) ## Benchmark token validation (medians of 5 runs), against Oathkeeper and oauth2-proxy, ext_authz over gRPC, then the manager at scale (test/scale, about 50 min).
	hack/bench.sh
	$(MAKE) --no-print-directory bench-peers
	$(MAKE) --no-print-directory bench-grpc
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" go test -tags bench -count=1 -timeout=2h -run 'TestScale' -v ./test/scale/ | grep -v '^=== RUN'

.PHONY: bench-peers
bench-peers: $(OATHKEEPER) $(OAUTH2_PROXY) ## Only validation against Ory Oathkeeper and oauth2-proxy (test/peers, about 7 min): BENCH_PEER_ROUNDS, BENCH_PEER_ROUND, BENCH_PEER_TOKENS.
	BENCH_OATHKEEPER="$(OATHKEEPER)" BENCH_OAUTH2_PROXY="$(OAUTH2_PROXY)" \
		go test -tags bench -count=1 -timeout=1h -run TestPeers -v ./test/peers/ | grep -v '^=== RUN'

.PHONY: bench-grpc
bench-grpc: envtest-assets $(GHZ) $(OPA_EXT_AUTHZ) $(AUTHORINO) $(AUTHORINO_CRD) ## Only ext_authz over gRPC against the HTTP path, Authorino and OPA (test/peers, ghz; about 13 min on 2 cores, plus the peers' first build): BENCH_GRPC_ROUNDS, BENCH_GRPC_ROUND, BENCH_GRPC_TOKENS, BENCH_GRPC_CLIENTS, BENCH_GRPC_CONNECTIONS.
	BENCH_GHZ="$(GHZ)" BENCH_OPA_EXT_AUTHZ="$(OPA_EXT_AUTHZ)" BENCH_AUTHORINO="$(AUTHORINO)" BENCH_AUTHORINO_CRD="$(AUTHORINO_CRD)" \
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" \
		go test -tags bench -count=1 -timeout=1h -run TestGRPC -v ./test/peers/ | grep -v '^=== RUN'

.PHONY: bench-scale
bench-scale: envtest-assets ## Only the manager at scale: BENCH_CREDENTIALS, BENCH_UNRELATED, BENCH_ROTATING, BENCH_ROTATING_FOR, BENCH_FLAGS.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" go test -tags bench -count=1 -timeout=2h -run 'TestScale' -v ./test/scale/ | grep -v '^=== RUN'

.PHONY: verify
verify: generate manifests lint helm-lint ## Fail when generated code or manifests are stale, or lint fails.
	@if [ -n "$$(git status --porcelain -- api config charts docs/reference)" ]; then \
		echo "generated files are stale; run 'make generate manifests' and commit:"; \
		git status --porcelain -- api config charts docs/reference; git diff --stat -- api config charts docs/reference; exit 1; fi

##@ Documentation

MKDOCS ?= mkdocs

.PHONY: docs-tools
docs-tools: # Install Debian's mkdocs and mkdocs-material when mkdocs is missing (as root).
	@command -v $(MKDOCS) >/dev/null 2>&1 || { apt-get update && apt-get install -y mkdocs mkdocs-material; }

.PHONY: docs
docs: docs-tools ## Serve the documentation site at http://127.0.0.1:8000 with live reload (mkdocs serve).
	$(MKDOCS) serve

.PHONY: docs-build
docs-build: docs-tools ## Build the documentation site into bin/site; any warning (a broken link, say) fails.
	$(MKDOCS) build --strict --site-dir bin/site

##@ Build

.PHONY: build
build: generate ## Build the manager binary and the kubectl plugin (bin/kubectl-tokenkeeper).
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/tokenkeeper/tokenkeeper/internal/version.Version=$(VERSION)" -o $(BIN)/manager ./cmd
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/tokenkeeper/tokenkeeper/internal/version.Version=$(VERSION)" -o $(BIN)/kubectl-tokenkeeper ./cmd/kubectl-tokenkeeper

.PHONY: krew
krew: ## Build kubectl-tokenkeeper archives for five platforms and their krew manifest into bin/krew/.
	VERSION=$(VERSION) hack/krew.sh

IMAGE ?= docker.io/local/tokenkeeper:dev

# Platforms of the image index; PUSH=registry/repo:tag also pushes it (auth from the Docker config).
PLATFORMS ?= linux/amd64,linux/arm64
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
PUSH ?=

.PHONY: image
image: generate ## Build the manager image (an index over PLATFORMS) as an OCI layout tar in bin/, no Docker needed; PUSH=ref pushes it.
	@set -e; for p in $$(echo "$(PLATFORMS)" | tr , ' '); do \
		echo "building the manager for $$p"; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} go build -trimpath \
			-ldflags "-s -w -X github.com/tokenkeeper/tokenkeeper/internal/version.Version=$(VERSION)" -o $(BIN)/manager-$${p%/*}-$${p#*/} ./cmd; \
	done
	go run ./hack/ociimage -ref $(IMAGE) -platforms $(PLATFORMS) $(if $(PUSH),-push $(PUSH)) \
		-label org.opencontainers.image.source=https://github.com/tokenkeeper/tokenkeeper \
		-label org.opencontainers.image.revision=$(REVISION) -label org.opencontainers.image.version=$(VERSION) \
		-out $(BIN)/tokenkeeper-image.tar '$(BIN)/manager-{os}-{arch}:/manager'
	@echo "import with: ctr -n k8s.io image import $(BIN)/tokenkeeper-image.tar"

# make run keeps its webhook certificate here, not in the /tmp directory every manager shares.
RUN_CERT_DIR ?= $(BIN)/run/serving-certs
# Addresses make run may reach although the egress check refuses them (--allow-egress-cidrs),
# such as 127.0.0.0/8 for issuers on this machine's loopback.
RUN_ALLOW_EGRESS ?=

.PHONY: run
run: manifests generate ## Run the manager outside the cluster against the current kubeconfig (the CRDs applied); RUN_ARGS adds flags.
	@args="--webhook-cert-dir=$(RUN_CERT_DIR)"; allow="$(RUN_ALLOW_EGRESS)"; \
	node_ip=$$(hack/local-cluster.sh node-ip 2>/dev/null || true); \
	for kc in $$(echo "$${KUBECONFIG:-$$HOME/.kube/config}" | tr : ' '); do \
		if [ -n "$$node_ip" ] && grep -qsF "https://$$node_ip:6443" "$$kc"; then \
			echo "make run: $$kc is the local cluster's (hack/local-cluster.sh, make demo); its issuers listen on the node address $$node_ip, one of this machine's own: allowing it"; \
			allow="$$node_ip/32$${allow:+,$$allow}"; break; \
		fi; \
	done; \
	if [ -n "$$allow" ]; then args="$$args --allow-egress-cidrs=$$allow"; fi; \
	set -x; go run -ldflags "-X github.com/tokenkeeper/tokenkeeper/internal/version.Version=$(VERSION)" ./cmd $$args $(RUN_ARGS)

.PHONY: demo
demo: $(HELM) ## Run tokenkeeper on a local single-node cluster with demo issuers and an app (Ctrl-C stops).
	HELM="$(HELM)" hack/demo.sh up

.PHONY: demo-down
demo-down: ## Stop everything make demo started.
	hack/demo.sh down

.PHONY: demo-smoke
demo-smoke: $(HELM) ## make demo, bounded (CI): every Credential Ready, the app's first 200s, then down and nothing left behind.
	HELM="$(HELM)" hack/demo-smoke.sh

.PHONY: measure-refresh
measure-refresh: ## Time from a Secret update to the new file in a running container, without and with the pod refresh, on the local cluster (kubelet defaults; about 8 min, as root).
	hack/measure-refresh.sh

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(BIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/controller-gen $@

$(HELM):
	GOBIN=$(BIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/helm $@

.PHONY: promtool
promtool: $(PROMTOOL) ## Build promtool (CI starts it in the background beside make verify).

$(PROMTOOL): # Prometheus's promtool (about 6 minutes cold), for the alert rule tests.
	GOBIN=$(BIN) go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	mv $(BIN)/promtool $@

$(OATHKEEPER):
	hack/build-module.sh github.com/ory/oathkeeper $(OATHKEEPER_VERSION) github.com/ory/oathkeeper $@

$(OAUTH2_PROXY):
	hack/build-module.sh github.com/oauth2-proxy/oauth2-proxy/v7 $(OAUTH2_PROXY_VERSION) github.com/oauth2-proxy/oauth2-proxy/v7 $@

$(GHZ):
	hack/build-module.sh github.com/bojand/ghz/cmd/ghz $(GHZ_VERSION) github.com/bojand/ghz/cmd/ghz $@

$(OPA_EXT_AUTHZ): test/peers/opaextauthz/main.go
	hack/build-opa-ext-authz.sh $(OPA_VERSION) $@

$(AUTHORINO):
	hack/build-module.sh github.com/kuadrant/authorino $(AUTHORINO_VERSION) github.com/kuadrant/authorino $@

# Authorino's AuthConfig CRD, from the same module version (the benchmark installs it in envtest).
$(AUTHORINO_CRD):
	mkdir -p $(BIN)
	cp "$$(go mod download -json github.com/kuadrant/authorino@$(AUTHORINO_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')/install/crd/authorino.kuadrant.io_authconfigs.yaml" $@
	chmod u+w $@

$(GOLANGCI_LINT):
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/golangci-lint $@
